//go:build faultsync

package wal

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/riffle-streams/riffle/shardlog/internal/diskfile"
)

// TestWALUnsyncedCrashKeepsAcknowledgedEntries checks contract 1 at the WAL: a
// kill -9 (simulated by dropping every write not fsynced) in the middle
// of concurrent group commits, segment rolls, prefix truncations and the
// checkpoints of an idle group loses no entry whose StoreLogs returned,
// and what each group holds after it is a whole run of its own entries.
func TestWALUnsyncedCrashKeepsAcknowledgedEntries(t *testing.T) {
	dir := t.TempDir()
	w := openTest(t, dir, Options{SegmentBytes: 64 << 10, CheckpointAfter: 2})
	idle := group(t, w, "idle")
	if err := idle.StoreLogs(entries(1, 5, 1, 300)); err != nil {
		t.Fatal(err)
	}
	const groups = 8
	acked := make([]uint64, groups) // last index acknowledged, per group
	var wg sync.WaitGroup
	crash := make(chan struct{})
	// The writers stop at the crash, as a killed process does. A call in
	// flight may still return nil after it: its sync came first, or the
	// writer rolled to a new file after it (a roll follows a whole synced
	// tail), and either way its entries are on disk.
	var crashed atomic.Bool
	for gi := range groups {
		g := group(t, w, fmt.Sprintf("g%d", gi))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); !crashed.Load(); i++ {
				if err := g.StoreLogs(entries(i, i, 1, 700)); err != nil {
					return // the crash
				}
				acked[gi] = i
				if i%50 == 0 {
					if err := g.DeleteRange(1, i-20); err != nil {
						return
					}
				}
				if i == 200 && gi == 0 {
					close(crash)
				}
			}
		}()
	}
	<-crash
	diskfile.CrashUnsynced(dir)
	crashed.Store(true)
	wg.Wait()
	if st := w.Stats(); st.Checkpoints == 0 || st.SegmentsDeleted == 0 {
		t.Fatalf("before the crash: %d checkpoints, %d segments deleted; the test needs both", st.Checkpoints, st.SegmentsDeleted)
	}
	w.Close()

	w = openTest(t, dir, Options{SegmentBytes: 64 << 10, CheckpointAfter: 2})
	expectLog(t, group(t, w, "idle"), 1, 5, term1, 300)
	for gi := range groups {
		g := group(t, w, fmt.Sprintf("g%d", gi))
		last, _ := g.LastIndex()
		if last < acked[gi] {
			t.Fatalf("group g%d holds up to %d after the crash, but %d was acknowledged", gi, last, acked[gi])
		}
		first, _ := g.FirstIndex()
		expectLog(t, g, first, last, term1, 700)
	}
}
