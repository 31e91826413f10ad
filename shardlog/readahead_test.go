package shardlog

import (
	"sync/atomic"
	"testing"
)

// readAhead asks for a stretch only when at least a quarter window of it
// is new, and starts afresh for a reader outside what was asked for.
func TestReadAheadAsksOnlyForNewStretches(t *testing.T) {
	var mark atomic.Int64
	const w = 1000
	steps := []struct {
		end, wantMark int64
	}{
		{0, 1000},    // first read: the whole window
		{100, 1000},  // 100 new bytes, under a quarter: nothing asked
		{300, 1300},  // 300 new: asked for [1000, 1300)
		{5000, 6000}, // a reader past the stretch: afresh
		{200, 1200},  // one far behind it: afresh too
	}
	for _, s := range steps {
		readAhead(nil, &mark, s.end, w)
		if got := mark.Load(); got != s.wantMark {
			t.Fatalf("after a read ending at %d the mark is %d, want %d", s.end, got, s.wantMark)
		}
	}
}
