package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactQuantile is the observation of rank ceil(q*n) of sorted values, the
// definition Histogram.Quantile approximates.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Quantiles must be within 1% of the exact ones over the whole range the
// bench can see, from microseconds to minutes, for skewed and flat data.
func TestHistogramQuantilesMatchExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	distributions := map[string]func() time.Duration{
		"uniform 1µs-1s": func() time.Duration { return time.Microsecond + time.Duration(rng.Int64N(int64(time.Second))) },
		"log-normal around 2ms": func() time.Duration {
			return time.Duration(float64(2*time.Millisecond) * math.Exp(rng.NormFloat64()))
		},
		"log-uniform 1µs-1h": func() time.Duration {
			return time.Duration(math.Exp(rng.Float64()*math.Log(float64(time.Hour/time.Microsecond)))) * time.Microsecond
		},
		"bimodal 300µs and 40ms": func() time.Duration {
			if rng.IntN(100) < 95 {
				return 300*time.Microsecond + time.Duration(rng.Int64N(int64(50*time.Microsecond)))
			}
			return 40*time.Millisecond + time.Duration(rng.Int64N(int64(10*time.Millisecond)))
		},
		"constant 1.5ms": func() time.Duration { return 1500 * time.Microsecond },
		"small integers": func() time.Duration { return time.Duration(rng.IntN(300)) },
	}
	quantiles := []float64{0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 1}
	for name, next := range distributions {
		t.Run(name, func(t *testing.T) {
			var h Histogram
			values := make([]time.Duration, 100_000)
			for i := range values {
				values[i] = next()
				h.Record(values[i])
			}
			slices.Sort(values)
			if h.Count() != uint64(len(values)) {
				t.Errorf("Count = %d, want %d", h.Count(), len(values))
			}
			if h.Max() != values[len(values)-1] {
				t.Errorf("Max = %v, want %v", h.Max(), values[len(values)-1])
			}
			for _, q := range quantiles {
				want := exactQuantile(values, q)
				got := h.Quantile(q)
				if relErr := math.Abs(float64(got-want)) / math.Max(float64(want), 1); relErr > 0.01 {
					t.Errorf("Quantile(%v) = %v, exact %v: relative error %.4f", q, got, want, relErr)
				}
			}
		})
	}
}

// Merging per-worker histograms must give what one histogram of every
// observation gives.
func TestHistogramMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var all, a, b, empty Histogram
	for i := range 10_000 {
		d := time.Duration(rng.Int64N(int64(100 * time.Millisecond)))
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var merged Histogram
	merged.Merge(&empty)
	merged.Merge(&a)
	merged.Merge(&b)
	merged.Merge(&empty)
	if merged != all {
		t.Fatalf("merged histogram differs: count %d max %v, want %d %v", merged.Count(), merged.Max(), all.Count(), all.Max())
	}
}

func TestHistogramEdges(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Max() != 0 || h.Count() != 0 {
		t.Fatal("empty histogram is not zero")
	}
	h.Record(-time.Second)
	if h.Quantile(1) != 0 {
		t.Errorf("negative observation recorded as %v, want 0", h.Quantile(1))
	}
	h.Record(3 * time.Hour)
	if h.Max() != 3*time.Hour || h.Quantile(1) != 3*time.Hour {
		t.Errorf("Max %v, Quantile(1) %v; want the exact 3h", h.Max(), h.Quantile(1))
	}
	h.Record(2 * time.Hour)
	if got := h.Quantile(0.6); got < 59*time.Minute || got > 61*time.Minute {
		t.Errorf("observations over an hour should stand as an hour, got %v", got)
	}
}

// Bucket indexes are contiguous and every value falls in the bucket whose
// midpoint stands for it, within half a bucket.
func TestHistogramBuckets(t *testing.T) {
	if got := histIndex(uint64(time.Hour)); got >= histBuckets {
		t.Fatalf("an hour falls in bucket %d of %d", got, histBuckets)
	}
	if got := histIndex(1<<histMaxBits - 1); got != histBuckets-1 {
		t.Fatalf("largest value in bucket %d, want %d", got, histBuckets-1)
	}
	prev := -1
	for v := uint64(0); v < 1<<20; v++ {
		i := histIndex(v)
		if i != prev && i != prev+1 {
			t.Fatalf("bucket of %d is %d after %d", v, i, prev)
		}
		prev = i
		mid := uint64(histMidpoint(i))
		if diff := math.Abs(float64(mid) - float64(v)); diff > float64(v)/200+0.5 {
			t.Fatalf("value %d in bucket %d of midpoint %d", v, i, mid)
		}
	}
}
