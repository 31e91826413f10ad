package shardlog

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestExpireSealed checks that retention reaches a sealed log's last
// segment: records all older than the cutoff leave an empty log whose trim
// horizon is its end, with the end, raft index and time unchanged, also
// after a reopen; a cutoff that some record of the active segment is not
// below keeps that segment, as DeleteBefore does.
func TestExpireSealed(t *testing.T) {
	tests := []struct {
		ts          int64
		wantDeleted int
		wantTrim    uint64
	}{
		{25, 2, 4},      // the older segments only
		{30, 2, 4},      // the active segment's last record is at 30, not below
		{31, 3, 6},      // every record
		{1 << 40, 3, 6}, // every record
		{5, 0, 0},       // nothing
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.ts), func(t *testing.T) {
			f := newLogFixture(t, 1<<20)
			f.opts.SegmentMaxBytes = 1
			f.reopen()
			// Three segments of two records: at 10, 20 and (active) 30.
			for i := range 3 {
				f.append(int64(10*(i+1)), 2)
				if i < 2 {
					// Roll now: one segment per batch, the last one active
					// and holding records.
					f.l.wmu.Lock()
					_, err := f.l.roll(f.l.active.Load())
					f.l.wmu.Unlock()
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			f.opts.SegmentMaxBytes = 1 << 20
			f.reopen()
			n, err := f.l.ExpireSealed(tt.ts)
			if err != nil || n != tt.wantDeleted {
				t.Fatalf("ExpireSealed = %d, %v; want %d", n, err, tt.wantDeleted)
			}
			for round := range 2 {
				if got := f.l.TrimOffset(); got != tt.wantTrim {
					t.Fatalf("round %d: TrimOffset = %d, want %d", round, got, tt.wantTrim)
				}
				if tt.wantTrim > 0 {
					if _, err := f.l.Read(tt.wantTrim-1, 0, 0); !errors.Is(err, ErrOutOfRange) {
						t.Fatalf("round %d: Read below the trim horizon: %v", round, err)
					}
				}
				f.check() // end, raft index, last time and the records kept
				f.reopen()
			}
		})
	}
}

// TestShardExpireBeforeFrozen checks the frozen shard's retention end to
// end: a sealed replica opened read-only loses every segment once all its
// records are older than the cutoff, and reads at its trim horizon find the
// end of the shard.
func TestShardExpireBeforeFrozen(t *testing.T) {
	dir := t.TempDir()
	s := openTestShard(t, dir)
	acked := appendN(t, s, 3, 10, "rec")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sl, err := s.Seal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFrozen(context.Background(), dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	last := f.Log().LastTimestamp()
	if n, err := f.ExpireBefore(last); err != nil || f.Log().TrimOffset() != 0 {
		t.Fatalf("ExpireBefore(last record's time) deleted %d (%v), trim %d: the last record is not older", n, err, f.Log().TrimOffset())
	}
	checkHolds(t, f.Log(), acked)
	if _, err := f.ExpireBefore(last + 1); err != nil {
		t.Fatal(err)
	}
	if trim, next := f.Log().TrimOffset(), f.Log().NextOffset(); trim != sl.Offset || next != sl.Offset {
		t.Fatalf("after expiry trim %d next %d, want both at the seal's %d", trim, next, sl.Offset)
	}
	if recs, err := f.Log().Read(sl.Offset, 0, 0); err != nil || len(recs) != 0 {
		t.Fatalf("read at the end: %d records, %v", len(recs), err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f, err = OpenFrozen(context.Background(), dir, nil, nil)
	if err != nil {
		t.Fatalf("reopening an expired frozen replica: %v", err)
	}
	if trim, next := f.Log().TrimOffset(), f.Log().NextOffset(); trim != sl.Offset || next != sl.Offset {
		t.Fatalf("reopened: trim %d next %d, want %d", trim, next, sl.Offset)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
