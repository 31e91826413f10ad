package cluster

import (
	"math"
	"sync"
	"time"
)

// Bucket is a token bucket for per-second limits. Kinesis counts its limits
// per second, so the bucket holds one second's worth: a shard left idle may
// take a second of traffic at once, and no more. Tokens refill continuously.
//
// A request of n is admitted when the bucket holds n tokens, or when the
// bucket is full whatever n is: a single record larger than the per-second
// rate still passes, and leaves the bucket in debt until the refill pays it
// back. Charge takes tokens without asking, for reads whose size is known
// only once they are done. A rate of 0 is unlimited. Bucket is safe for
// concurrent use.
type Bucket struct {
	now func() time.Time

	mu     sync.Mutex
	rate   float64 // tokens per second; 0 is unlimited
	tokens float64 // may be negative (debt)
	last   time.Time
}

// NewBucket returns a full bucket of rate tokens per second (0: unlimited).
// now is the clock, time.Now when nil; tests pass a fake one.
func NewBucket(rate int64, now func() time.Time) *Bucket {
	if now == nil {
		now = time.Now
	}
	b := &Bucket{now: now}
	b.SetRate(rate)
	return b
}

// SetRate changes the rate; it takes effect at once. A bucket that was
// unlimited starts full; one that shrinks keeps no more than its new
// capacity.
func (b *Bucket) SetRate(rate int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := float64(max(rate, 0))
	if r == b.rate {
		return
	}
	now := b.now()
	if b.rate == 0 {
		b.tokens = r
	} else {
		b.refillLocked(now)
		b.tokens = min(b.tokens, r)
	}
	b.rate, b.last = r, now
}

// Rate is the current rate; 0 is unlimited.
func (b *Bucket) Rate() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int64(b.rate)
}

// Admit takes n tokens when the bucket holds them or is full. Otherwise it
// takes nothing and returns how long until n would be admitted, the delay
// to send back as RetryInfo. Admit(0) asks whether the bucket is out of
// debt.
func (b *Bucket) Admit(n int64) (ok bool, wait time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rate == 0 {
		return true, 0
	}
	b.refillLocked(b.now())
	if b.fitsLocked(float64(n)) {
		b.tokens -= float64(n)
		return true, 0
	}
	return false, b.waitLocked(float64(n))
}

// Charge takes n tokens whether or not the bucket holds them; the debt is
// paid back by the refill before Admit lets anything through again.
func (b *Bucket) Charge(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rate == 0 {
		return
	}
	b.refillLocked(b.now())
	b.tokens -= float64(n)
}

// Wait is how long until n tokens would be admitted; 0 when they would be
// now.
func (b *Bucket) Wait(n int64) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rate == 0 {
		return 0
	}
	b.refillLocked(b.now())
	if b.fitsLocked(float64(n)) {
		return 0
	}
	return b.waitLocked(float64(n))
}

// Available returns the whole tokens the bucket holds now (negative in
// debt), whether it is full, and whether it is unlimited. Callers that
// admit a prefix of a batch against several buckets look first, then
// Charge what they admit, under a lock of their own.
func (b *Bucket) Available() (tokens int64, full, unlimited bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rate == 0 {
		return math.MaxInt64, true, true
	}
	b.refillLocked(b.now())
	return int64(math.Floor(b.tokens + epsilon)), b.tokens >= b.rate, false
}

func (b *Bucket) refillLocked(now time.Time) {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(b.rate, b.tokens+elapsed.Seconds()*b.rate)
	}
	b.last = now
}

// epsilon absorbs float rounding in the refill, so that a caller that
// waited the time Admit asked for is admitted.
const epsilon = 1e-9

func (b *Bucket) fitsLocked(n float64) bool {
	return b.tokens+epsilon >= n || b.tokens >= b.rate
}

// waitLocked is the time until n tokens are there, or the bucket is full
// when n is more than it holds.
func (b *Bucket) waitLocked(n float64) time.Duration {
	need := min(n, b.rate) - b.tokens
	// Round up, so that a caller that waits this long is admitted.
	return time.Duration(math.Ceil(need / b.rate * float64(time.Second)))
}
