package main

import (
	"math"
	"math/bits"
	"time"
)

// Histogram layout: values below 2^histSubBits nanoseconds have a bucket
// each; every higher power of two is split into 2^histSubBits equal
// buckets, so a bucket is at most 1/128 (0.8%) of the values in it wide.
// Values from 0 up to 2^histMaxBits ns (73 minutes) fit in 4608 buckets.
const (
	histSubBits  = 7
	histSubCount = 1 << histSubBits
	histMaxBits  = 42
	histBuckets  = (histMaxBits - histSubBits + 1) * histSubCount
	// histMax is the largest value recorded as itself; longer ones count
	// as histMax, though Max stays exact.
	histMax = time.Hour
)

// Histogram is a log-linear latency histogram in the manner of
// HdrHistogram: quantiles within 0.4% of the recorded values from 1 ns to
// an hour, in constant memory. The zero value is empty and ready to use. It
// is not safe for concurrent use: give each goroutine its own and Merge
// them.
type Histogram struct {
	counts   [histBuckets]uint64
	count    uint64
	min, max time.Duration
}

// Record adds one observation; a negative one counts as zero.
func (h *Histogram) Record(d time.Duration) {
	d = max(d, 0)
	if h.count == 0 || d < h.min {
		h.min = d
	}
	h.max = max(h.max, d)
	h.count++
	h.counts[histIndex(uint64(min(d, histMax)))]++
}

// Merge adds every observation of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.count == 0 {
		return
	}
	if h.count == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.count += o.count
	for i, n := range o.counts {
		h.counts[i] += n
	}
}

// Count is the number of observations.
func (h *Histogram) Count() uint64 { return h.count }

// Max is the largest observation, exactly.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the value below or at which a fraction q (0 to 1) of the
// observations lie: the observation of rank ceil(q*Count), to within its
// bucket's precision. It is 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.count)))
	rank = min(max(rank, 1), h.count)
	if rank == h.count {
		return h.max
	}
	var seen uint64
	for i, n := range h.counts {
		seen += n
		if seen >= rank {
			return min(max(histMidpoint(i), h.min), h.max)
		}
	}
	return h.max
}

// histIndex is the bucket of v nanoseconds.
func histIndex(v uint64) int {
	if v < histSubCount {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - histSubBits
	return (shift+1)*histSubCount + int(v>>shift) - histSubCount
}

// histMidpoint is the middle of bucket i, the value that stands for it.
func histMidpoint(i int) time.Duration {
	if i < histSubCount {
		return time.Duration(i)
	}
	shift := i/histSubCount - 1
	low := uint64(i%histSubCount+histSubCount) << shift
	return time.Duration(low + (uint64(1)<<shift)/2)
}
