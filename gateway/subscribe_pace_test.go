package gateway

import (
	"testing"
	"time"
)

// TestPacerHoldsTheRate checks the fan-out limit's arithmetic: a reader that
// always has records gets rate*T plus at most one bucket and one record
// over T, and not much less; the bucket admits records larger than itself.
func TestPacerHoldsTheRate(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rate       int64
		recordSize int
	}{
		{"small records", 256 << 10, 1000},
		{"records the size of the quantum", 2 << 20, 64 << 10},
		{"records larger than the bucket", 100 << 10, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			p := newPacer(tc.rate, now)
			const span = 60 * time.Second
			end := now.Add(span)
			sent := 0
			for now.Before(end) {
				maxBytes, wait := p.allow(now, maxEventBytes)
				if wait > 0 {
					now = now.Add(wait)
					continue
				}
				// A read takes whole records up to maxBytes, at least one.
				n := max(1, maxBytes/tc.recordSize) * tc.recordSize
				p.take(n)
				sent += n
			}
			want := float64(tc.rate) * span.Seconds()
			hi := want + float64(tc.rate) + float64(tc.recordSize)
			lo := want - float64(tc.recordSize) - maxPaceQuantum
			if float64(sent) > hi || float64(sent) < lo {
				t.Errorf("sent %d bytes in %v at %d B/s; want within [%.0f, %.0f]", sent, span, tc.rate, lo, hi)
			}
		})
	}
}

// TestPacerUnlimitedAndQuantum checks that a zero rate never waits, and
// that a throttled reader waits for a quantum rather than reading records
// one by one.
func TestPacerUnlimitedAndQuantum(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newPacer(0, now)
	p.take(100 << 20)
	if maxBytes, wait := p.allow(now, maxEventBytes); wait != 0 || maxBytes != maxEventBytes {
		t.Fatalf("unlimited pacer: maxBytes %d wait %v", maxBytes, wait)
	}
	p = newPacer(1<<20, now)
	if maxBytes, wait := p.allow(now, maxEventBytes); wait != 0 || maxBytes != 1<<20 {
		t.Fatalf("full bucket: maxBytes %d wait %v, want the whole bucket at once", maxBytes, wait)
	}
	p.take(1 << 20)
	_, wait := p.allow(now, maxEventBytes)
	if want := time.Second / 16; wait < want-time.Millisecond || wait > want+time.Millisecond {
		t.Fatalf("empty bucket waits %v, want about %v (a 64 KiB quantum at 1 MiB/s)", wait, want)
	}
	now = now.Add(wait)
	if maxBytes, wait := p.allow(now, maxEventBytes); wait != 0 || maxBytes < 64<<10-1 {
		t.Fatalf("after the wait: maxBytes %d wait %v", maxBytes, wait)
	}
}
