package shardlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// openTestLog opens a log in dir that is closed when the test ends.
func openTestLog(t *testing.T, dir string, segmentMaxBytes int64) *Log {
	t.Helper()
	l, err := OpenLog(LogOptions{Dir: dir, SegmentMaxBytes: segmentMaxBytes, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("OpenLog: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// sourceBatches is the shape of the log the import tests copy: batch sizes,
// raft indexes with gaps (entries without records), and timestamps that
// repeat, step back (the log keeps the last one) and jump (a roll by age).
var sourceBatches = []struct {
	raft uint64
	ts   int64
	n    int
}{
	{1, 100, 1}, {2, 100, 3}, {4, 150, 2}, {5, 140, 4}, {9, 200, 1},
	{10, 200, 5}, {11, 210, 2}, {12, 3_700_000, 3}, {15, 3_700_001, 1}, {16, 3_700_002, 6},
	{17, 3_700_010, 2}, {20, 3_700_020, 3},
}

// buildSource writes sourceBatches into a new log with small segments.
func buildSource(t *testing.T) *Log {
	t.Helper()
	l := openTestLog(t, t.TempDir(), 300)
	for _, b := range sourceBatches {
		entries := make([]Entry, b.n)
		for i := range entries {
			entries[i] = testEntry(l.NextOffset() + uint64(i))
		}
		if _, _, err := l.Append(b.raft, b.ts, entries); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if len(l.Segments()) < 4 {
		t.Fatalf("source has only %d segments", len(l.Segments()))
	}
	return l
}

func readAll(t *testing.T, l *Log, from uint64) []Record {
	t.Helper()
	recs, err := l.Read(from, 0, 0)
	if err != nil {
		t.Fatalf("Read(%d): %v", from, err)
	}
	return recs
}

// sameLog checks that got holds exactly what want holds from got's trim
// offset on: records with their raft indexes, timestamps and batch
// boundaries, the same segments, and the same position to continue from.
func sameLog(t *testing.T, got, want *Log) {
	t.Helper()
	if g, w := got.NextOffset(), want.NextOffset(); g != w {
		t.Fatalf("NextOffset = %d, want %d", g, w)
	}
	if g, w := got.LastApplied(), want.LastApplied(); g != w {
		t.Fatalf("LastApplied = %d, want %d", g, w)
	}
	if g, w := got.LastTimestamp(), want.LastTimestamp(); g != w {
		t.Fatalf("LastTimestamp = %d, want %d", g, w)
	}
	trim := got.TrimOffset()
	g, w := readAll(t, got, trim), readAll(t, want, trim)
	checkRecords(t, g, w)
	for i := range g {
		if g[i].LastInBatch != w[i].LastInBatch {
			t.Fatalf("offset %d: LastInBatch = %v, want %v", g[i].Offset, g[i].LastInBatch, w[i].LastInBatch)
		}
	}
	var gb, wb []uint64
	for _, s := range got.Segments() {
		gb = append(gb, s.BaseOffset)
	}
	for _, s := range want.Segments() {
		if s.BaseOffset >= trim {
			wb = append(wb, s.BaseOffset)
		}
	}
	if fmt.Sprint(gb) != fmt.Sprint(wb) {
		t.Fatalf("segments start at %v, want %v", gb, wb)
	}
}

// batchEnds returns the index after each batch's last record in recs.
func batchEnds(recs []Record) []int {
	var ends []int
	for i, r := range recs {
		if r.LastInBatch {
			ends = append(ends, i+1)
		}
	}
	return ends
}

// appendSame appends the same batch to both logs and checks that they
// place and stamp it alike: an imported log goes on like its source.
func appendSame(t *testing.T, a, b *Log, raftIndex uint64, ts int64) {
	t.Helper()
	e := []Entry{{PartitionKey: "after", Data: []byte("import")}}
	fa, tsa, erra := a.Append(raftIndex, ts, e)
	fb, tsb, errb := b.Append(raftIndex, ts, e)
	if erra != nil || errb != nil || fa != fb || tsa != tsb {
		t.Fatalf("append after import: (%d, %d, %v), source (%d, %d, %v)", fa, tsa, erra, fb, tsb, errb)
	}
}

// Guarantee: importing a log's records, in whole batches cut anywhere
// between batches, reproduces it exactly (offsets, raft indexes,
// timestamps, batch boundaries, segments), also after a reopen, and the
// copy continues exactly like the original.
func TestImportReproducesLog(t *testing.T) {
	src := buildSource(t)
	recs := readAll(t, src, 0)
	dir := t.TempDir()
	dst := openTestLog(t, dir, 300)
	prev := 0
	for i, end := range batchEnds(recs) {
		if i%3 != 2 && end != len(recs) { // several batches per Import
			continue
		}
		if err := dst.Import(recs[prev:end]); err != nil {
			t.Fatalf("Import [%d, %d): %v", prev, end, err)
		}
		prev = end
	}
	sameLog(t, dst, src)
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	dst = openTestLog(t, dir, 300)
	sameLog(t, dst, src)
	// A timestamp below the last one is raised alike on both.
	appendSame(t, dst, src, 30, 5)
	sameLog(t, dst, src)
}

// Guarantee: Import refuses records that do not continue the log exactly
// (a gap, an overlap, a hole, a cut batch, a raft index or timestamp out of
// order) and writes nothing; the log takes the right records afterwards.
func TestImportRefusesDiscontinuity(t *testing.T) {
	src := buildSource(t)
	recs := readAll(t, src, 0)
	ends := batchEnds(recs)
	// The log under test holds the first two batches (4 records); the rest
	// starts with a batch of 2 (raft 4, ts 150) and one of 4 (raft 5).
	head, rest := recs[:ends[1]], recs[ends[1]:]
	if len(rest[0:2]) != 2 || !rest[1].LastInBatch || rest[2].RaftIndex != 5 {
		t.Fatalf("unexpected source shape: %+v", rest[:3])
	}
	edit := func(f func(r []Record) []Record) []Record {
		c := make([]Record, len(rest))
		copy(c, rest)
		return f(c)
	}
	tests := []struct {
		name string
		recs []Record
	}{
		{"gap", rest[2:]},
		{"overlap", recs[ends[1]-1:]},
		{"from the start", recs},
		{"hole inside", edit(func(r []Record) []Record { return append(r[:3:3], r[4:]...) })},
		{"batch cut at the end", rest[:3]},
		{"raft index not above LastApplied", edit(func(r []Record) []Record {
			r[0].RaftIndex, r[1].RaftIndex = 2, 2
			return r
		})},
		{"raft index not increasing", edit(func(r []Record) []Record {
			for i := 2; i < 6; i++ {
				r[i].RaftIndex = 4
			}
			return r
		})},
		{"raft index changes inside a batch", edit(func(r []Record) []Record { r[1].RaftIndex = 5; return r })},
		{"timestamp changes inside a batch", edit(func(r []Record) []Record { r[1].Timestamp++; return r })},
		{"timestamp steps back", edit(func(r []Record) []Record {
			r[0].Timestamp, r[1].Timestamp = 99, 99
			return r
		})},
		{"no batch end", edit(func(r []Record) []Record { r[len(r)-1].LastInBatch = false; return r })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := openTestLog(t, t.TempDir(), 300)
			if err := dst.Import(head); err != nil {
				t.Fatal(err)
			}
			err := dst.Import(tt.recs)
			if !errors.Is(err, ErrDiscontinuous) {
				t.Fatalf("Import: %v, want ErrDiscontinuous", err)
			}
			if dst.NextOffset() != uint64(len(head)) || dst.LastApplied() != 2 {
				t.Fatalf("a refused import changed the log: NextOffset %d, LastApplied %d", dst.NextOffset(), dst.LastApplied())
			}
			if err := dst.Import(rest); err != nil {
				t.Fatalf("Import after a refusal: %v", err)
			}
			sameLog(t, dst, src)
		})
	}
}

// Guarantee: RestartAt moves a log that is behind to a peer's trim horizon
// (old segments deleted, reads below it out of range) so that the records
// from there on import exactly, across a reopen; it refuses to move a log
// backwards.
func TestRestartAtPeerHorizon(t *testing.T) {
	for _, held := range []int{0, 2} { // an empty log, and one with two old batches
		t.Run(fmt.Sprintf("holding %d batches", held), func(t *testing.T) {
			src := buildSource(t)
			if _, err := src.DeleteBefore(3_700_000); err != nil { // keeps raft 12 on
				t.Fatal(err)
			}
			hz := src.TrimHorizon()
			if hz.Offset != src.TrimOffset() || hz.Offset < 10 || hz.RaftIndex != 11 || hz.Timestamp != 210 {
				t.Fatalf("source horizon %+v, trim offset %d", hz, src.TrimOffset())
			}
			dir := t.TempDir()
			dst := openTestLog(t, dir, 300)
			all := readAll(t, buildSource(t), 0)
			if held > 0 {
				if err := dst.Import(all[:batchEnds(all)[held-1]]); err != nil {
					t.Fatal(err)
				}
			}
			before := dst.NextOffset()
			for _, bad := range []TrimHorizon{
				{Offset: before, RaftIndex: hz.RaftIndex, Timestamp: hz.Timestamp},
				{Offset: hz.Offset, RaftIndex: dst.LastApplied() - min(dst.LastApplied(), 1), Timestamp: hz.Timestamp},
				{Offset: hz.Offset, RaftIndex: hz.RaftIndex, Timestamp: dst.LastTimestamp() - 1},
			} {
				if bad.RaftIndex == dst.LastApplied() && held == 0 {
					continue // nothing below an empty log's raft index 0
				}
				if err := dst.RestartAt(bad); !errors.Is(err, ErrDiscontinuous) || dst.NextOffset() != before {
					t.Fatalf("RestartAt(%+v) on a log at %d: %v, NextOffset %d", bad, before, err, dst.NextOffset())
				}
			}
			oldFiles, _ := filepath.Glob(filepath.Join(dir, "*"))
			if err := dst.RestartAt(hz); err != nil {
				t.Fatalf("RestartAt: %v", err)
			}
			if dst.NextOffset() != hz.Offset || dst.TrimOffset() != hz.Offset ||
				dst.LastApplied() != hz.RaftIndex || dst.LastTimestamp() != hz.Timestamp || dst.TrimHorizon() != hz {
				t.Fatalf("after RestartAt: next %d trim %d applied %d ts %d, want %+v",
					dst.NextOffset(), dst.TrimOffset(), dst.LastApplied(), dst.LastTimestamp(), hz)
			}
			if _, err := dst.Read(hz.Offset-1, 0, 0); !errors.Is(err, ErrOutOfRange) {
				t.Fatalf("Read below the new horizon: %v", err)
			}
			for _, f := range oldFiles {
				if _, err := os.Stat(f); !os.IsNotExist(err) {
					t.Fatalf("old segment file %s still there: %v", f, err)
				}
			}
			if err := dst.Import(readAll(t, src, hz.Offset)); err != nil {
				t.Fatalf("Import from the horizon: %v", err)
			}
			sameLog(t, dst, src)
			if err := dst.Close(); err != nil {
				t.Fatal(err)
			}
			dst = openTestLog(t, dir, 300)
			sameLog(t, dst, src)
			appendSame(t, dst, src, 40, 3_700_030)
		})
	}
}

// Guarantee: the importer takes chunks cut anywhere, inside batches too,
// and only ever writes whole batches; a chunk whose horizon is above the
// log restarts it there.
func TestImporterChunksAndHorizon(t *testing.T) {
	src := buildSource(t)
	recs := readAll(t, src, 0)
	t.Run("chunks cut inside batches", func(t *testing.T) {
		dst := openTestLog(t, t.TempDir(), 300)
		im := &importer{log: dst}
		for i := 0; i < len(recs); i += 3 {
			chunk := recs[i:min(i+3, len(recs))]
			if err := im.take(FetchedChunk{Records: chunk}); err != nil {
				t.Fatalf("take at %d: %v", i, err)
			}
			if n := dst.NextOffset(); n > 0 && !recs[n-1].LastInBatch {
				t.Fatalf("after a chunk ending at %d the log ends at %d, inside a batch", i+len(chunk), n)
			}
		}
		sameLog(t, dst, src)
		if im.records != len(recs) {
			t.Fatalf("importer counted %d records, want %d", im.records, len(recs))
		}
	})
	t.Run("horizon above the log", func(t *testing.T) {
		if _, err := src.DeleteBefore(3_700_000); err != nil {
			t.Fatal(err)
		}
		dst := openTestLog(t, t.TempDir(), 300)
		if err := dst.Import(recs[:batchEnds(recs)[0]]); err != nil {
			t.Fatal(err)
		}
		hz := src.TrimHorizon()
		rest := readAll(t, src, hz.Offset)
		im := &importer{log: dst}
		if err := im.take(FetchedChunk{Horizon: hz, Records: rest[:4]}); err != nil {
			t.Fatal(err)
		}
		if err := im.take(FetchedChunk{Horizon: hz, Records: rest[4:]}); err != nil {
			t.Fatal(err)
		}
		sameLog(t, dst, src)
	})
}

// logFetcher serves fetches from a log, as a peer's replica would: from its
// trim horizon when that is above the offset asked for, in chunks of at
// most chunk records.
func logFetcher(src *Log, chunk int) Fetcher {
	return func(ctx context.Context, req FetchRequest, sink func(FetchedChunk) error) error {
		from := req.From
		for {
			hz := src.TrimHorizon()
			from = max(from, hz.Offset)
			end := min(req.To, src.NextOffset())
			if from >= end {
				if hz.Offset > req.From {
					return sink(FetchedChunk{Horizon: hz})
				}
				return nil
			}
			recs, err := src.Read(from, int(min(uint64(chunk), end-from)), 0)
			if err != nil {
				return err
			}
			if err := sink(FetchedChunk{Horizon: hz, Records: recs}); err != nil {
				return err
			}
			from += uint64(len(recs))
		}
	}
}

// Guarantee: the fetch protocol as the cluster serves it (logFetcher)
// brings a log that is behind to exactly its source, with the source
// trimmed or not.
func TestCatchUpThroughFetcher(t *testing.T) {
	for _, trimmed := range []bool{false, true} {
		t.Run(fmt.Sprintf("trimmed=%v", trimmed), func(t *testing.T) {
			src := buildSource(t)
			if trimmed {
				if _, err := src.DeleteBefore(3_700_000); err != nil {
					t.Fatal(err)
				}
			}
			all := readAll(t, buildSource(t), 0)
			dst := openTestLog(t, t.TempDir(), 300)
			if err := dst.Import(all[:batchEnds(all)[1]]); err != nil {
				t.Fatal(err)
			}
			f := &fsm{log: dst, logger: slog.New(slog.DiscardHandler), fetch: logFetcher(src, 5), ctx: context.Background()}
			m := manifest{NextOffset: src.NextOffset(), LastApplied: src.LastApplied()}
			if err := f.catchUp(m, "test"); err != nil {
				t.Fatalf("catchUp: %v", err)
			}
			sameLog(t, dst, src)
			// A manifest beyond anything the peers hold is not met.
			m.NextOffset++
			if err := f.catchUp(m, "test"); !errors.Is(err, ErrMissingData) {
				t.Fatalf("catchUp past the peers' end: %v, want ErrMissingData", err)
			}
		})
	}
}

func TestSplitBatchesEmpty(t *testing.T) {
	b, err := splitBatches(nil, 7, 3, 100)
	if err != nil || len(b) != 0 {
		t.Fatalf("splitBatches(nil) = %v, %v", b, err)
	}
	if _, err := splitBatches([]Record{{Offset: 7, RaftIndex: 4, Timestamp: 100, Data: bytes.Repeat([]byte{1}, 3), LastInBatch: true}}, 7, 3, 100); err != nil {
		t.Fatalf("one whole batch: %v", err)
	}
}
