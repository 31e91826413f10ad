package gateway

import (
	"math"
	"time"
)

// pacer holds one subscription to its consumer's fan-out rate on a shard
// (Kinesis: 2 MiB/s per consumer per shard). It is a token bucket of one
// second's worth of bytes, consulted before each read rather than after:
// a full bucket admits one read of any size (so a record larger than the
// bucket still passes) and the bucket goes into debt for what the read
// took beyond its tokens; the reader then waits until the debt is repaid.
// Over any long interval the bytes sent are at most rate*interval plus one
// bucket, whatever the record sizes.
//
// Reads wait for at least a quantum of tokens (an eighth of the bucket, at
// most 64 KiB), so that a throttled subscriber gets a few large events a
// second instead of one per record. A pacer is owned by one subscription's
// loop and is not safe for concurrent use.
type pacer struct {
	rate   float64 // bytes per second; 0 means unlimited
	tokens float64 // may be negative: debt
	last   time.Time
}

// maxPaceQuantum bounds the tokens a throttled read waits for.
const maxPaceQuantum = 64 << 10

func newPacer(rate int64, now time.Time) *pacer {
	p := &pacer{last: now}
	p.setRate(rate)
	p.tokens = p.rate // start full
	return p
}

// setRate changes the rate (the stream's limits may change), keeping the
// tokens within the new bucket.
func (p *pacer) setRate(rate int64) {
	p.rate = float64(max(rate, 0))
	p.tokens = min(p.tokens, p.rate)
}

func (p *pacer) quantum() float64 { return max(1, min(p.rate/8, maxPaceQuantum)) }

// allow returns how many bytes the next read may take (at most limit), or
// how long to wait before reading.
func (p *pacer) allow(now time.Time, limit int) (maxBytes int, wait time.Duration) {
	if p.rate == 0 {
		return limit, 0
	}
	if dt := now.Sub(p.last); dt > 0 {
		p.tokens = min(p.rate, p.tokens+p.rate*dt.Seconds())
		p.last = now
	}
	need := p.quantum()
	if p.tokens >= need-0.5 { // half a byte of slack for float rounding
		return max(1, min(limit, int(p.tokens))), 0
	}
	secs := (need - p.tokens) / p.rate
	return 0, time.Duration(math.Ceil(secs * float64(time.Second)))
}

// take charges n bytes that were read.
func (p *pacer) take(n int) {
	if p.rate > 0 {
		p.tokens -= float64(n)
	}
}
