package shardlog

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// sidePath is the path of a segment's file with extension ext.
func sidePath(seg SegmentInfo, ext string) string {
	return strings.TrimSuffix(seg.Path, logExt) + ext
}

func truncateBy(t *testing.T, path string, n int64) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, max(st.Size()-n, 0)); err != nil {
		t.Fatal(err)
	}
}

// Guarantee (issue 6, damaged files of a stopped replica): OpenLog verifies
// every sealed segment, not only the last one, and never serves damage: a
// sealed segment whose .log, .index or .timeindex is flipped or truncated
// is dropped with every segment after it. The log comes back as the intact
// prefix (NextOffset and LastApplied at the last intact batch), every
// record it holds reads back exactly (no ErrCorrupt), and appending goes on
// from there, as it does when the caller fetches or replays the rest.
func TestOpenDropsDamagedSealedSegment(t *testing.T) {
	cases := []struct {
		name     string
		damage   func(t *testing.T, segs []SegmentInfo)
		dropFrom int // index of the first segment that must go
	}{
		{"flipped record byte", func(t *testing.T, segs []SegmentInfo) {
			flipByte(t, segs[2].Path, segs[2].Bytes-3)
		}, 2},
		{"flipped header byte", func(t *testing.T, segs []SegmentInfo) {
			flipByte(t, segs[2].Path, 20)
		}, 2},
		{"truncated log", func(t *testing.T, segs []SegmentInfo) {
			truncateBy(t, segs[2].Path, 5)
		}, 2},
		{"flipped index byte", func(t *testing.T, segs []SegmentInfo) {
			flipByte(t, sidePath(segs[2], indexExt), 13)
		}, 2},
		{"truncated index", func(t *testing.T, segs []SegmentInfo) {
			truncateBy(t, sidePath(segs[2], indexExt), 12)
		}, 2},
		{"flipped time index byte", func(t *testing.T, segs []SegmentInfo) {
			flipByte(t, sidePath(segs[2], timeIndexExt), 2)
		}, 2},
		{"flipped record byte, no checksum sidecar", func(t *testing.T, segs []SegmentInfo) {
			if err := os.Remove(sidePath(segs[2], sumExt)); err != nil {
				t.Fatal(err)
			}
			flipByte(t, segs[2].Path, segs[2].Bytes-3)
		}, 2},
		{"first segment damaged", func(t *testing.T, segs []SegmentInfo) {
			flipByte(t, segs[0].Path, segs[0].Bytes-1)
		}, 0},
		{"segment file deleted", func(t *testing.T, segs []SegmentInfo) {
			// A hole: the segment before it no longer ends where the next begins.
			if err := os.Remove(segs[2].Path); err != nil {
				t.Fatal(err)
			}
		}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newLogFixture(t, 1) // one batch per segment
			for i := range 5 {
				f.append(int64(100*(i+1)), 3)
			}
			segs := f.l.Segments()
			f.l.Close()
			tc.damage(t, segs)
			f.open()
			keep := segs[tc.dropFrom].BaseOffset
			f.forget(keep, keep/3) // batch k holds offsets 3k..3k+2 at raft index k+1
			f.check()
			if got := len(f.l.Segments()); got != max(tc.dropFrom, 1) {
				t.Fatalf("%d segments left, want %d", got, max(tc.dropFrom, 1))
			}
			for i := range 3 {
				f.append(int64(1000+i), 3)
			}
			f.reopen()
			f.check()
		})
	}
}

// Guarantee: damage confined to a sealed segment's checksum sidecar, or a
// segment sealed without one, costs a frame scan and a new sidecar, never
// data.
func TestOpenRescansSegmentWithoutUsableSidecar(t *testing.T) {
	f := newLogFixture(t, 1)
	for i := range 4 {
		f.append(int64(100*(i+1)), 2)
	}
	segs := f.l.Segments()
	f.l.Close()
	flipByte(t, sidePath(segs[0], sumExt), 10)
	if err := os.Remove(sidePath(segs[1], sumExt)); err != nil {
		t.Fatal(err)
	}
	f.open()
	f.check()
	for _, seg := range segs[:2] {
		b, err := os.ReadFile(sidePath(seg, sumExt))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := unmarshalSums(b); !ok {
			t.Fatalf("%s not rewritten", sidePath(seg, sumExt))
		}
	}
	f.reopen()
	f.check()
}

// Guarantee: a read never returns a record whose frame fails its checksum,
// even when the damage happens after the log was opened: it fails with
// ErrCorrupt, returns no records, and the log reports itself Damaged so
// that its owner reopens (and so repairs) it; the reopen drops the damage.
func TestReadOfDamagedRecordMarksLog(t *testing.T) {
	f := newLogFixture(t, 1)
	for i := range 4 {
		f.append(int64(100*(i+1)), 3)
	}
	segs := f.l.Segments()
	if f.l.Damaged() != nil {
		t.Fatal("intact log reports damage")
	}
	flipByte(t, segs[1].Path, segs[1].Bytes-2) // bit rot under the open log
	for _, from := range []uint64{0, 3, 5} {
		if recs, err := f.l.Read(from, 0, 0); !errors.Is(err, ErrCorrupt) || recs != nil {
			t.Fatalf("Read(%d) = %d records, %v; want ErrCorrupt", from, len(recs), err)
		}
	}
	if err := f.l.Damaged(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Damaged() = %v, want ErrCorrupt", err)
	}
	f.reopen()
	f.forget(3, 1)
	f.check()
	if f.l.Damaged() != nil {
		t.Fatal("reopened log still reports damage")
	}
}

// Guarantee (issue 6): a stopped replica whose segment files were flipped or
// truncated (a sealed segment, or the active one) repairs itself when it
// starts: the damage is dropped, the records are fetched again from a peer
// that holds them intact (raft has compacted the entries), and the replica
// ends with exactly the leader's records, every acknowledged one included,
// never having served a damaged one.
func TestShardRepairsDamagedSegmentsFromPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("replicated writes")
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, segs []SegmentInfo)
	}{
		{"flipped sealed segment", func(t *testing.T, segs []SegmentInfo) {
			flipByte(t, segs[1].Path, segs[1].Bytes/2)
		}},
		{"truncated sealed segment", func(t *testing.T, segs []SegmentInfo) {
			truncateBy(t, segs[1].Path, segs[1].Bytes/3)
		}},
		{"flipped active segment", func(t *testing.T, segs []SegmentInfo) {
			last := segs[len(segs)-1]
			if last.Bytes <= headerSize {
				t.Fatal("active segment holds no records")
			}
			flipByte(t, last.Path, headerSize+10)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := &raftTrio{t: t, segmentMaxBytes: 4 << 10}
			g.start()
			peerLogs := make([]*Log, 3)
			fetch := func(ctx context.Context, req FetchRequest, sink func(FetchedChunk) error) error {
				return logFetcher(peerLogs[g.leader()], 50)(ctx, req, sink)
			}
			for i := range 3 {
				peerLogs[i] = g.shards[i].Log()
			}
			l := g.leader()
			acked := appendN(t, g.shards[l], 1, 300, "v")
			down := (l + 1) % 3
			waitFor(t, func() bool { return g.shards[down].Log().NextOffset() == 300 })
			for i, s := range g.shards {
				if err := s.Raft().Snapshot().Error(); err != nil {
					t.Fatalf("snapshot on n%d: %v", i+1, err)
				}
			}
			segs := g.shards[down].Log().Segments()
			if len(segs) < 3 {
				t.Fatalf("only %d segments", len(segs))
			}
			g.close(down)
			tc.damage(t, segs)

			var fetches atomic.Int64
			g.open(down, countingFetcher(fetch, &fetches))
			if g.shards[down].Log().NextOffset() < 300-64 {
				t.Fatalf("started at offset %d: records raft no longer holds were not fetched", g.shards[down].Log().NextOffset())
			}
			more := appendN(t, g.shards[g.leader()], 1, 20, "after")
			for k, v := range more {
				acked[k] = v
			}
			waitFor(t, func() bool { return g.shards[down].Log().NextOffset() == 320 })
			checkHolds(t, g.shards[down].Log(), acked)
			sameLog(t, g.shards[down].Log(), g.shards[g.leader()].Log())
			if tc.name != "flipped active segment" && fetches.Load() == 0 {
				t.Fatal("repaired without fetching: the damage was never dropped")
			}
		})
	}
}

// Guarantee: a frozen replica (no raft log to replay from) whose sealed
// segment is damaged fetches the dropped records from a peer before it is
// served, and refuses to open, rather than serve a short shard, when it
// cannot.
func TestOpenFrozenRepairsFromPeer(t *testing.T) {
	src := buildSource(t)
	dir := filepath.Join(t.TempDir(), "frozen")
	opts := LogOptions{SegmentMaxBytes: 256, Logger: slog.New(slog.DiscardHandler)}
	if err := CopyFrozen(context.Background(), dir, src.NextOffset(), opts, logFetcher(src, 7)); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFrozen(context.Background(), dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	segs := f.Log().Segments()
	f.Close()
	if len(segs) < 3 {
		t.Fatalf("only %d segments", len(segs))
	}
	flipByte(t, segs[1].Path, segs[1].Bytes-1)

	if _, err := OpenFrozen(context.Background(), dir, nil, nil); !errors.Is(err, ErrMissingData) {
		t.Fatalf("OpenFrozen without a peer = %v, want ErrMissingData", err)
	}
	f, err = OpenFrozen(context.Background(), dir, logFetcher(src, 7), nil)
	if err != nil {
		t.Fatalf("OpenFrozen with a peer: %v", err)
	}
	defer f.Close()
	// The repaired records may be cut into segments differently (a frozen
	// replica opens with the default segment size): compare the records.
	if f.Log().NextOffset() != src.NextOffset() || f.Log().LastApplied() != src.LastApplied() {
		t.Fatalf("repaired replica ends at %d (raft %d), want %d (raft %d)",
			f.Log().NextOffset(), f.Log().LastApplied(), src.NextOffset(), src.LastApplied())
	}
	checkRecords(t, readAll(t, f.Log(), 0), readAll(t, src, 0))
}

// BenchmarkOpenLogVerify measures OpenLog on 256 MiB of sealed segments
// (1 KiB records, 16 MiB segments), checked against their sidecars
// (sums) or scanned frame by frame (scan, a log sealed without sidecars).
// The files are in the page cache: the figures are CPU cost, not disk.
func BenchmarkOpenLogVerify(b *testing.B) {
	dir := b.TempDir()
	l, err := OpenLog(LogOptions{Dir: dir, SegmentMaxBytes: 16 << 20, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]Entry, 64)
	for i := range batch {
		batch[i] = Entry{PartitionKey: "key", Data: make([]byte, 1024)}
	}
	for raft := uint64(1); l.Segments()[0].Bytes < 16<<20 || len(l.Segments()) <= 16; raft++ {
		if _, _, err := l.Append(raft, 1, batch); err != nil {
			b.Fatal(err)
		}
	}
	l.Close()
	sums, _ := filepath.Glob(filepath.Join(dir, "*"+sumExt))
	for _, mode := range []string{"sums", "scan"} {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(16 * 16 << 20)
			for b.Loop() {
				if mode == "scan" {
					b.StopTimer()
					for _, p := range sums {
						os.Remove(p)
					}
					b.StartTimer()
				}
				l, err := OpenLog(LogOptions{Dir: dir, SegmentMaxBytes: 16 << 20, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				l.Close()
			}
		})
	}
}
