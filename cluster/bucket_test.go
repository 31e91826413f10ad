package cluster

import (
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// TestBucket checks the token bucket behind the per-shard limits
// (DESIGN.md): one second's worth of burst, continuous refill, admission of
// an oversized request only from a full bucket, debt from Charge, the wait
// returned for RetryInfo (after which the request is admitted), rate 0 as
// unlimited, and rate changes taking effect at once.
func TestBucket(t *testing.T) {
	type step struct {
		advance time.Duration
		op      string // admit, charge, rate, wait
		n       int64
		ok      bool          // admit: admitted
		wait    time.Duration // admit, wait: the wait returned
	}
	const ms = time.Millisecond
	cases := []struct {
		name  string
		rate  int64
		steps []step
	}{
		{"starts full, burst of one second", 1000, []step{
			{op: "admit", n: 600, ok: true},
			{op: "admit", n: 400, ok: true},
			{op: "admit", n: 1, wait: ms},
		}},
		{"refills continuously", 1000, []step{
			{op: "admit", n: 1000, ok: true},
			{advance: 250 * ms, op: "admit", n: 251, wait: ms},
			{op: "admit", n: 250, ok: true},
			{op: "admit", n: 1, wait: ms},
		}},
		{"never holds more than a second's worth", 100, []step{
			{advance: time.Hour, op: "admit", n: 100, ok: true},
			{op: "admit", n: 1, wait: 10 * ms},
		}},
		{"wait is until the tokens are there", 1000, []step{
			{op: "admit", n: 1000, ok: true},
			{op: "admit", n: 300, wait: 300 * ms},
			{advance: 299 * ms, op: "admit", n: 300, wait: ms},
			{advance: ms, op: "admit", n: 300, ok: true},
		}},
		{"oversized request passes a full bucket and leaves debt", 1000, []step{
			{op: "admit", n: 2500, ok: true},
			{op: "admit", n: 0, wait: 1500 * ms},
			{advance: 1500 * ms, op: "admit", n: 1, wait: ms},
			// Not full yet: the oversized request waits for a full bucket.
			{advance: 500 * ms, op: "admit", n: 2500, wait: 500 * ms},
			{advance: 500 * ms, op: "admit", n: 2500, ok: true},
		}},
		{"charge makes debt that blocks admission", 2000, []step{
			{op: "admit", n: 0, ok: true},
			{op: "charge", n: 6000},
			{op: "admit", n: 0, wait: 2 * time.Second},
			{op: "wait", n: 0, wait: 2 * time.Second},
			{advance: 2 * time.Second, op: "admit", n: 0, ok: true},
		}},
		{"zero is unlimited", 0, []step{
			{op: "admit", n: 1 << 40, ok: true},
			{op: "charge", n: 1 << 40},
			{op: "admit", n: 1 << 40, ok: true},
			{op: "wait", n: 1 << 40, wait: 0},
		}},
		{"a lower rate applies at once and caps the tokens", 1000, []step{
			{op: "rate", n: 10},
			{op: "admit", n: 10, ok: true},
			{op: "admit", n: 1, wait: 100 * ms},
		}},
		{"from unlimited to limited starts full", 0, []step{
			{op: "admit", n: 5000, ok: true},
			{op: "rate", n: 5},
			{op: "admit", n: 5, ok: true},
			{op: "admit", n: 1, wait: 200 * ms},
		}},
		{"limited to unlimited admits at once", 5, []step{
			{op: "admit", n: 5, ok: true},
			{op: "rate", n: 0},
			{op: "admit", n: 100, ok: true},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1e9, 0)}
			b := NewBucket(c.rate, clock.now)
			for i, s := range c.steps {
				clock.advance(s.advance)
				switch s.op {
				case "admit":
					ok, wait := b.Admit(s.n)
					if ok != s.ok || wait != s.wait {
						t.Fatalf("step %d: Admit(%d) = %v, %v; want %v, %v", i, s.n, ok, wait, s.ok, s.wait)
					}
				case "charge":
					b.Charge(s.n)
				case "rate":
					b.SetRate(s.n)
				case "wait":
					if got := b.Wait(s.n); got != s.wait {
						t.Fatalf("step %d: Wait(%d) = %v, want %v", i, s.n, got, s.wait)
					}
				}
			}
		})
	}
}

// TestBucketAvailable checks what prefix admission reads: whole tokens,
// fullness, and debt.
func TestBucketAvailable(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	b := NewBucket(1000, clock.now)
	if n, full, unlimited := b.Available(); n != 1000 || !full || unlimited {
		t.Fatalf("new bucket: %d %v %v", n, full, unlimited)
	}
	b.Charge(1500)
	clock.advance(100 * time.Millisecond)
	if n, full, _ := b.Available(); n != -400 || full {
		t.Fatalf("after a charge of 1500 and 100ms: %d %v, want -400 false", n, full)
	}
	if _, _, unlimited := NewBucket(0, clock.now).Available(); !unlimited {
		t.Fatal("rate 0 is not unlimited")
	}
}
