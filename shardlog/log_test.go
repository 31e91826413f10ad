package shardlog

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// logFixture is a Log under test plus a model of every record appended.
type logFixture struct {
	t    *testing.T
	opts LogOptions
	l    *Log
	want []Record // by offset
	raft uint64   // raft index of the last batch appended
}

func newLogFixture(t *testing.T, segmentMaxBytes int64) *logFixture {
	t.Helper()
	f := &logFixture{t: t, opts: LogOptions{
		Dir:             t.TempDir(),
		SegmentMaxBytes: segmentMaxBytes,
		Logger:          slog.New(slog.DiscardHandler),
	}}
	f.open()
	t.Cleanup(func() { f.l.Close() })
	return f
}

func (f *logFixture) open() {
	f.t.Helper()
	l, err := OpenLog(f.opts)
	if err != nil {
		f.t.Fatalf("OpenLog: %v", err)
	}
	f.l = l
}

func (f *logFixture) reopen() {
	f.t.Helper()
	if err := f.l.Close(); err != nil {
		f.t.Fatalf("Close: %v", err)
	}
	f.open()
}

// testEntry is the record stored at off: its content depends only on off,
// with empty keys and data now and then.
func testEntry(off uint64) Entry {
	key := ""
	if off%7 != 0 {
		key = fmt.Sprintf("key-%d", off%7)
	}
	return Entry{PartitionKey: key, Data: bytes.Repeat([]byte{byte(off)}, int(off%13))}
}

// append appends a batch of n test records with the next raft index.
func (f *logFixture) append(ts int64, n int) {
	f.t.Helper()
	next := f.l.NextOffset()
	entries := make([]Entry, n)
	for i := range entries {
		entries[i] = testEntry(next + uint64(i))
	}
	first, eff, err := f.l.Append(f.raft+1, ts, entries)
	if err != nil {
		f.t.Fatalf("Append: %v", err)
	}
	if first != next {
		f.t.Fatalf("Append returned first offset %d, want %d", first, next)
	}
	f.raft++
	for i, e := range entries {
		f.want = append(f.want, Record{Offset: first + uint64(i), RaftIndex: f.raft, Timestamp: eff,
			PartitionKey: e.PartitionKey, Data: e.Data})
	}
}

// forget drops the model's records from offset off on, as recovery should.
func (f *logFixture) forget(off uint64, lastRaft uint64) {
	f.want = f.want[:off]
	f.raft = lastRaft
}

// check verifies the log's state and every stored record against the model.
func (f *logFixture) check() {
	f.t.Helper()
	l := f.l
	if got, want := l.NextOffset(), uint64(len(f.want)); got != want {
		f.t.Fatalf("NextOffset = %d, want %d", got, want)
	}
	if got := l.LastApplied(); got != f.raft {
		f.t.Fatalf("LastApplied = %d, want %d", got, f.raft)
	}
	if len(f.want) > 0 {
		if got, want := l.LastTimestamp(), f.want[len(f.want)-1].Timestamp; got != want {
			f.t.Fatalf("LastTimestamp = %d, want %d", got, want)
		}
	}
	trim := l.TrimOffset()
	got, err := l.Read(trim, 0, 0)
	if err != nil {
		f.t.Fatalf("Read(%d): %v", trim, err)
	}
	checkRecords(f.t, got, f.want[trim:])
}

func checkRecords(t *testing.T, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if err := diffRecord(got[i], want[i]); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
}

func diffRecord(got, want Record) error {
	if got.Offset != want.Offset || got.RaftIndex != want.RaftIndex || got.Timestamp != want.Timestamp ||
		got.PartitionKey != want.PartitionKey || !bytes.Equal(got.Data, want.Data) {
		return fmt.Errorf("got %+v, want %+v", got, want)
	}
	return nil
}

// framePos returns the .log file position of record off within its segment,
// computed from the format rather than read from the index.
func (f *logFixture) framePos(base, off uint64) int64 {
	pos := int64(headerSize)
	for _, r := range f.want[base:off] {
		pos += int64(frameOverhead + len(r.PartitionKey) + len(r.Data))
	}
	return pos
}

func (f *logFixture) lastSegmentPath() string {
	segs := f.l.Segments()
	return segs[len(segs)-1].Path
}

// Guarantee: appended records read back exactly (dense offsets, keys, data,
// timestamps, raft indexes), also after a reopen, and appending continues
// at the next offset.
func TestAppendReadReopen(t *testing.T) {
	f := newLogFixture(t, 0)
	f.check() // an empty log reads as empty
	f.append(100, 3)
	f.append(200, 1)
	f.append(300, 5)
	f.check()
	f.reopen()
	f.check()
	f.append(400, 2)
	f.check()
	f.reopen()
	f.check()
}

// Guarantee: Read stitches records together across segment boundaries from
// any starting offset, and each full segment rolls into a new one.
func TestReadAcrossSegments(t *testing.T) {
	f := newLogFixture(t, 200)
	for i := range 20 {
		f.append(int64(i), 1+i%4)
	}
	if n := len(f.l.Segments()); n < 5 {
		t.Fatalf("only %d segments with a 200-byte limit", n)
	}
	for from := range uint64(len(f.want)) {
		got, err := f.l.Read(from, 0, 0)
		if err != nil {
			t.Fatalf("Read(%d): %v", from, err)
		}
		checkRecords(t, got, f.want[from:])
	}
	f.reopen()
	f.check()
}

// Guarantee: Read honours maxRecords and maxBytes (key+data) even across
// segments, returns at least one record even if it alone exceeds maxBytes,
// returns nothing at NextOffset and ErrOutOfRange above it.
func TestReadLimits(t *testing.T) {
	f := newLogFixture(t, 100) // two 10-byte records per segment
	for i := range 5 {
		entries := []Entry{{"k", []byte("123456789")}, {"k", []byte("abcdefghi")}}
		if _, _, err := f.l.Append(uint64(i+1), int64(i), entries); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name                 string
		from                 uint64
		maxRecords, maxBytes int
		want                 int // records returned
		err                  error
	}{
		{"no limits", 0, 0, 0, 10, nil},
		{"max records", 0, 3, 0, 3, nil},
		{"max records across segments", 1, 4, 0, 4, nil},
		{"max bytes exact", 0, 0, 30, 3, nil},
		{"max bytes between records", 0, 0, 39, 3, nil},
		{"record larger than max bytes", 3, 0, 5, 1, nil},
		{"both limits, records first", 2, 2, 100, 2, nil},
		{"both limits, bytes first", 2, 5, 20, 2, nil},
		{"tail shorter than limits", 8, 5, 1000, 2, nil},
		{"last record", 9, 1, 1, 1, nil},
		{"at next offset", 10, 5, 100, 0, nil},
		{"above next offset", 11, 5, 100, 0, ErrOutOfRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.l.Read(tt.from, tt.maxRecords, tt.maxBytes)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if len(got) != tt.want {
				t.Fatalf("got %d records, want %d", len(got), tt.want)
			}
			for i, r := range got {
				if r.Offset != tt.from+uint64(i) {
					t.Fatalf("record %d has offset %d", i, r.Offset)
				}
			}
		})
	}
}

// Guarantee: timestamps never decrease: a batch stamped earlier than the
// last record gets the last record's timestamp, also across a reopen.
func TestTimestampsNeverDecrease(t *testing.T) {
	f := newLogFixture(t, 0)
	tests := []struct{ ts, want int64 }{
		{100, 100}, {50, 100}, {100, 100}, {150, 150}, {0, 150}, {151, 151},
	}
	for _, tt := range tests {
		_, eff, err := f.l.Append(f.raft+1, tt.ts, []Entry{{Data: []byte("x")}})
		if err != nil {
			t.Fatal(err)
		}
		f.raft++
		if eff != tt.want {
			t.Errorf("Append at %d: effective timestamp %d, want %d", tt.ts, eff, tt.want)
		}
		got, err := f.l.TimestampAt(f.l.NextOffset() - 1)
		if err != nil || got != tt.want {
			t.Errorf("TimestampAt = %d, %v; want %d", got, err, tt.want)
		}
	}
	f.reopen()
	if _, eff, _ := f.l.Append(f.raft+1, 10, nil); eff != 151 {
		t.Errorf("after reopen an old timestamp became %d, want 151", eff)
	}
}

// Guarantee: OffsetAtTime returns exactly the first offset whose timestamp
// is >= ts (NextOffset if none) for timestamps before, at, between and after
// the stored ones, across segments, after a reopen and after retention.
func TestOffsetAtTime(t *testing.T) {
	f := newLogFixture(t, 300)
	if got := f.l.OffsetAtTime(5); got != 0 {
		t.Fatalf("empty log: OffsetAtTime = %d, want 0", got)
	}
	// Repeated and decreasing timestamps make several batches share one.
	for i, ts := range []int64{10, 10, 20, 15, 30, 30, 30, 45, 50, 60, 60, 70, 90, 90, 100} {
		f.append(ts, 1+i%3)
	}
	if len(f.l.Segments()) < 4 {
		t.Fatalf("want several segments, got %d", len(f.l.Segments()))
	}
	bruteForce := func(ts int64) uint64 {
		for _, r := range f.want[f.l.TrimOffset():] {
			if r.Timestamp >= ts {
				return r.Offset
			}
		}
		return f.l.NextOffset()
	}
	checkAll := func(stage string) {
		t.Helper()
		for ts := int64(-5); ts <= 110; ts++ {
			if got, want := f.l.OffsetAtTime(ts), bruteForce(ts); got != want {
				t.Fatalf("%s: OffsetAtTime(%d) = %d, want %d", stage, ts, got, want)
			}
		}
	}
	checkAll("written")
	f.reopen()
	checkAll("reopened")
	if n, err := f.l.DeleteBefore(40); err != nil || n == 0 {
		t.Fatalf("DeleteBefore = %d, %v", n, err)
	}
	checkAll("after retention")
}

// Guarantee: a log whose active segment is empty right after a roll keeps
// NextOffset, LastApplied and LastTimestamp across a reopen (they come from
// the segment header) and continues from there.
func TestReopenEmptyActiveSegment(t *testing.T) {
	f := newLogFixture(t, 1) // every batch fills its segment
	f.append(100, 2)
	f.append(200, 3)
	segs := f.l.Segments()
	if last := segs[len(segs)-1]; last.BaseOffset != 5 || last.NextOffset != 5 {
		t.Fatalf("active segment %+v, want an empty one at 5", last)
	}
	f.reopen()
	f.check()
	f.append(300, 1)
	f.check()
}

// Guarantee: the active segment rolls once its first record is
// SegmentMaxAge older than the batch being appended (log time, no clock).
func TestRollByAge(t *testing.T) {
	f := newLogFixture(t, 0)
	f.l.Close()
	f.opts.SegmentMaxAge = time.Second
	f.open()
	tests := []struct {
		ts           int64
		wantSegments int
	}{
		{1000, 1}, {1999, 1}, {2000, 2}, {2500, 2}, {2999, 2}, {3000, 3},
	}
	for _, tt := range tests {
		f.append(tt.ts, 2)
		if got := len(f.l.Segments()); got != tt.wantSegments {
			t.Fatalf("after a batch at %d: %d segments, want %d", tt.ts, got, tt.wantSegments)
		}
	}
	f.reopen()
	f.check()
}

// Guarantee: an empty batch advances LastApplied without writing anything;
// it is not persisted unless a segment header records it.
func TestEmptyBatch(t *testing.T) {
	f := newLogFixture(t, 0)
	f.append(100, 2)
	first, eff, err := f.l.Append(5, 50, nil)
	if err != nil || first != 2 || eff != 100 {
		t.Fatalf("empty Append = %d, %d, %v; want 2, 100, nil", first, eff, err)
	}
	if f.l.LastApplied() != 5 || f.l.NextOffset() != 2 {
		t.Fatalf("LastApplied %d NextOffset %d, want 5 and 2", f.l.LastApplied(), f.l.NextOffset())
	}
	f.reopen()
	f.check() // LastApplied back to 1: the caller replays raft index 5
}

// Guarantee: Append with a raft index not above LastApplied is refused and
// writes nothing.
func TestAppendRefusesOldRaftIndex(t *testing.T) {
	f := newLogFixture(t, 0)
	f.append(100, 2)
	f.append(100, 2) // raft index 2
	size := f.l.Segments()[0].Bytes
	for _, idx := range []uint64{0, 1, 2} {
		if _, _, err := f.l.Append(idx, 200, []Entry{{Data: []byte("dup")}}); err == nil {
			t.Errorf("Append at raft index %d accepted", idx)
		}
	}
	if got := f.l.Segments()[0].Bytes; got != size {
		t.Fatalf(".log grew from %d to %d bytes", size, got)
	}
	f.check()
	f.reopen()
	f.check()
}

// Guarantee: recovery drops an incomplete trailing batch, whatever the cut,
// keeps the complete batches before it, and appending continues at the
// right offset and raft index.
func TestRecoverTornTail(t *testing.T) {
	// Four batches (raft indexes 1-4) of three records each. cut gives the
	// new .log length from the file position of a record.
	tests := []struct {
		name        string
		cut         func(pos func(off uint64) int64) int64
		wantRecords uint64
		wantRaft    uint64
	}{
		{"clean end", func(pos func(uint64) int64) int64 { return pos(12) }, 12, 4},
		{"one byte short", func(pos func(uint64) int64) int64 { return pos(12) - 1 }, 9, 3},
		{"frame boundary mid batch", func(pos func(uint64) int64) int64 { return pos(10) }, 9, 3},
		{"inside frame header mid batch", func(pos func(uint64) int64) int64 { return pos(10) + 3 }, 9, 3},
		{"start of last batch", func(pos func(uint64) int64) int64 { return pos(9) }, 9, 3},
		{"mid second batch", func(pos func(uint64) int64) int64 { return pos(4) + 20 }, 3, 1},
		{"inside the first frame", func(pos func(uint64) int64) int64 { return pos(0) + 10 }, 0, 0},
		{"header only", func(pos func(uint64) int64) int64 { return pos(0) }, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newLogFixture(t, 0)
			for i := range 4 {
				f.append(int64(100*(i+1)), 3)
			}
			cut := tt.cut(func(off uint64) int64 { return f.framePos(0, off) })
			path := f.lastSegmentPath()
			f.l.Close()
			if err := os.Truncate(path, cut); err != nil {
				t.Fatal(err)
			}
			f.open()
			f.forget(tt.wantRecords, tt.wantRaft)
			f.check()
			f.append(999, 2)
			f.check()
			f.reopen()
			f.check()
		})
	}
}

// Guarantee: garbage after the last frame (a torn write of a frame that
// never completed) is dropped and nothing before it is lost.
func TestRecoverTrailingGarbage(t *testing.T) {
	for _, garbage := range [][]byte{
		{0},
		bytes.Repeat([]byte{0}, 100),
		bytes.Repeat([]byte{0xab}, 1000),
		[]byte("RFSL not a frame at all, but long enough to look like one"),
	} {
		f := newLogFixture(t, 0)
		f.append(100, 3)
		f.append(200, 2)
		path := f.lastSegmentPath()
		f.l.Close()
		appendToFile(t, path, garbage)
		f.open()
		f.check()
		f.append(300, 1)
		f.reopen()
		f.check()
	}
}

func appendToFile(t *testing.T, path string, b []byte) {
	t.Helper()
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := file.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, pos int64) {
	t.Helper()
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	b := make([]byte, 1)
	if _, err := file.ReadAt(b, pos); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := file.WriteAt(b, pos); err != nil {
		t.Fatal(err)
	}
}

// Guarantee: a flipped byte in the middle of the last segment truncates
// the log back to the end of the last intact batch before it.
func TestRecoverFlippedByteInLastSegment(t *testing.T) {
	f := newLogFixture(t, 0)
	for i := range 5 {
		f.append(int64(100*(i+1)), 3)
	}
	path := f.lastSegmentPath()
	f.l.Close()
	flipByte(t, path, f.framePos(0, 7)+frameOverhead) // inside record 7, batch 3
	f.open()
	f.forget(6, 2)
	f.check()
	f.append(600, 1)
	f.check()
}

// Guarantee: a last segment with a torn header (crash while rolling) is
// deleted and the previous segment becomes active with its records intact.
func TestRecoverTornSegmentHeader(t *testing.T) {
	f := newLogFixture(t, 1)
	f.append(100, 2)
	f.append(200, 2)
	torn := f.lastSegmentPath() // empty segment at offset 4
	f.l.Close()
	if err := os.Truncate(torn, headerSize/2); err != nil {
		t.Fatal(err)
	}
	f.open()
	f.check()
	if n := len(f.l.Segments()); n != 2 {
		t.Fatalf("%d segments, want 2", n)
	}
	if _, err := os.Stat(torn); !os.IsNotExist(err) {
		t.Fatalf("torn segment still there: %v", err)
	}
	f.append(300, 1)
	f.reopen()
	f.check()
}

// Guarantee: DeleteBefore deletes whole old segments only (files included),
// never the active one, moves TrimOffset, makes reads below it fail with
// ErrOutOfRange, and the trim survives a reopen.
func TestDeleteBefore(t *testing.T) {
	// Batches at 10, 20, 30, 40 of two records each, one segment per batch,
	// then an empty active segment at offset 8.
	tests := []struct {
		ts          int64
		wantDeleted int
		wantTrim    uint64
	}{
		{5, 0, 0},
		{10, 0, 0},
		{11, 1, 2},
		{30, 2, 4},
		{40, 3, 6},
		{41, 4, 8},
		{1 << 40, 4, 8},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.ts), func(t *testing.T) {
			f := newLogFixture(t, 1)
			for i := range 4 {
				f.append(int64(10*(i+1)), 2)
			}
			before := f.l.Segments()
			n, err := f.l.DeleteBefore(tt.ts)
			if err != nil || n != tt.wantDeleted {
				t.Fatalf("DeleteBefore = %d, %v; want %d", n, err, tt.wantDeleted)
			}
			if got := f.l.TrimOffset(); got != tt.wantTrim {
				t.Fatalf("TrimOffset = %d, want %d", got, tt.wantTrim)
			}
			for i, s := range before {
				_, err := os.Stat(s.Path)
				if gone := os.IsNotExist(err); gone != (i < n) {
					t.Fatalf("segment %s: gone = %v", s.Path, gone)
				}
			}
			if tt.wantTrim > 0 {
				if _, err := f.l.Read(tt.wantTrim-1, 0, 0); !errors.Is(err, ErrOutOfRange) {
					t.Fatalf("Read below trim: %v", err)
				}
				if _, err := f.l.TimestampAt(tt.wantTrim - 1); !errors.Is(err, ErrOutOfRange) {
					t.Fatalf("TimestampAt below trim: %v", err)
				}
			}
			if got := f.l.OffsetAtTime(0); got != tt.wantTrim {
				t.Fatalf("OffsetAtTime(0) = %d, want the trim offset %d", got, tt.wantTrim)
			}
			f.check()
			f.reopen()
			if got := f.l.TrimOffset(); got != tt.wantTrim {
				t.Fatalf("after reopen TrimOffset = %d, want %d", got, tt.wantTrim)
			}
			f.check()
		})
	}
}

// Guarantee: a goroutine waiting on Changed wakes after an Append (and on
// Close); the channel stays open until then.
func TestChanged(t *testing.T) {
	f := newLogFixture(t, 0)
	ch := f.l.Changed()
	woke := make(chan struct{})
	go func() {
		<-ch
		close(woke)
	}()
	select {
	case <-ch:
		t.Fatal("Changed fired before anything was appended")
	default:
	}
	f.append(100, 1)
	<-woke

	next := f.l.Changed()
	select {
	case <-next:
		t.Fatal("the next Changed channel fired early")
	default:
	}
	f.l.Close()
	<-next
	<-f.l.Changed() // after Close it never blocks
}

// Guarantee: readers running concurrently with appends, rolls and
// DeleteBefore only ever see complete, correct records (run with -race).
func TestConcurrentReaders(t *testing.T) {
	const batches, perBatch = 300, 3
	const total = batches * perBatch
	f := newLogFixture(t, 1500)
	l := f.l
	// Record off was appended in batch off/perBatch at raft index
	// batch+1 and time 10*batch, with content testEntry(off).
	wantRecord := func(off uint64) Record {
		e := testEntry(off)
		b := off / perBatch
		return Record{Offset: off, RaftIndex: b + 1, Timestamp: int64(10 * b), PartitionKey: e.PartitionKey, Data: e.Data}
	}

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	writerDone := make(chan struct{})
	wg.Go(func() {
		defer close(writerDone)
		for b := range uint64(batches) {
			entries := make([]Entry, perBatch)
			for i := range entries {
				entries[i] = testEntry(b*perBatch + uint64(i))
			}
			if _, _, err := l.Append(b+1, int64(10*b), entries); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Go(func() { // retention keeps roughly the last 100 batches
		for {
			ch := l.Changed()
			if _, err := l.DeleteBefore(l.LastTimestamp() - 1000); err != nil {
				errs <- err
				return
			}
			select {
			case <-ch:
			case <-writerDone:
				return
			}
		}
	})
	for range 4 {
		wg.Go(func() {
			var off uint64
			for off < total {
				ch := l.Changed()
				recs, err := l.Read(off, 7, 100)
				if errors.Is(err, ErrOutOfRange) && off < l.TrimOffset() {
					off = l.TrimOffset() // retention overtook us
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				for i, r := range recs {
					if err := diffRecord(r, wantRecord(off+uint64(i))); err != nil {
						errs <- err
						return
					}
				}
				if ts, err := l.TimestampAt(off); err == nil && ts != wantRecord(off).Timestamp {
					errs <- fmt.Errorf("TimestampAt(%d) = %d", off, ts)
					return
				}
				// Unless retention passed off, the answer is the first
				// record of off's batch or, if not appended yet, the end.
				if got := l.OffsetAtTime(int64(10 * (off / perBatch))); got > off && off >= l.TrimOffset() {
					errs <- fmt.Errorf("OffsetAtTime skipped past %d to %d", off, got)
					return
				}
				off += uint64(len(recs))
				if len(recs) == 0 {
					<-ch
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Guarantee: Sync succeeds on an open log; after Close, Append, Read and
// Sync return ErrClosed, a second Close is a no-op, and the log reopens
// intact.
func TestClose(t *testing.T) {
	f := newLogFixture(t, 0)
	f.append(100, 1)
	if err := f.l.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	f.l.Close()
	if err := f.l.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close: %v", err)
	}
	if _, _, err := f.l.Append(5, 100, []Entry{{Data: []byte("x")}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if _, err := f.l.Read(0, 0, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if err := f.l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	f.open()
	f.check()
}

// Guarantee: segment file names are recognised exactly, so foreign files
// in the directory are left alone.
func TestParseSegmentName(t *testing.T) {
	tests := []struct {
		name string
		base uint64
		ext  string
		ok   bool
	}{
		{"00000000000000000000.log", 0, ".log", true},
		{"00000000000000001234.index", 1234, ".index", true},
		{"18446744073709551615.timeindex", 1<<64 - 1, ".timeindex", true},
		{"0000000000000000123.log", 0, "", false},
		{"00000000000000000000.log.tmp", 0, "", false},
		{"0000000000000000000x.log", 0, "", false},
		{"00000000000000000000.snapshot", 0, "", false},
		{"LOCK", 0, "", false},
	}
	for _, tt := range tests {
		base, ext, ok := parseSegmentName(tt.name)
		if ok != tt.ok || (ok && (base != tt.base || ext != tt.ext)) {
			t.Errorf("parseSegmentName(%q) = %d, %q, %v", tt.name, base, ext, ok)
		}
	}
}

// Guarantee: index files whose .log is gone (an interrupted DeleteBefore)
// are removed at open and do not confuse it.
func TestOpenRemovesOrphanIndexes(t *testing.T) {
	f := newLogFixture(t, 0)
	f.append(100, 2)
	f.l.Close()
	orphan := filepath.Join(f.opts.Dir, "00000000000000000099.index")
	if err := os.WriteFile(orphan, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.open()
	f.check()
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatalf("orphan index still there: %v", err)
	}
}

func benchLog(b *testing.B) *Log {
	l, err := OpenLog(LogOptions{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

func benchBatch() []Entry {
	entries := make([]Entry, 100)
	for i := range entries {
		entries[i] = Entry{PartitionKey: fmt.Sprintf("key-%d", i), Data: bytes.Repeat([]byte{byte(i)}, 1024)}
	}
	return entries
}

// BenchmarkAppend appends batches of 100 records of 1 KiB (no fsync except
// when rolling 64 MiB segments).
func BenchmarkAppend(b *testing.B) {
	l := benchLog(b)
	batch := benchBatch()
	b.SetBytes(100 * 1024)
	b.ReportAllocs()
	var raft uint64
	for b.Loop() {
		raft++
		if _, _, err := l.Append(raft, time.Now().UnixMilli(), batch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRead reads 100 records of 1 KiB per call from a 20k-record log.
func BenchmarkRead(b *testing.B) {
	l := benchLog(b)
	batch := benchBatch()
	for raft := range uint64(200) {
		if _, _, err := l.Append(raft+1, int64(raft), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(100 * 1024)
	b.ReportAllocs()
	var off uint64
	for b.Loop() {
		recs, err := l.Read(off, 100, 1<<20)
		if err != nil || len(recs) != 100 {
			b.Fatalf("Read(%d) = %d records, %v", off, len(recs), err)
		}
		off = (off + 100) % l.NextOffset()
	}
}
