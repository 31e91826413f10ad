// Package shardlog is the on-disk, append-only record log of one shard.
//
// A Log is a directory of segments (see segment.go for the format). One
// writer, the shard's raft state machine, appends committed batches; any
// number of goroutines read concurrently. The package knows nothing about
// raft beyond recording each batch's raft index, so the caller can replay
// the batches above LastApplied after a restart.
package shardlog

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by a Log. They are wrapped with detail; test with errors.Is.
var (
	// ErrCorrupt reports a checksum or framing failure while reading.
	ErrCorrupt = errors.New("shardlog: corrupt record")
	// ErrOutOfRange reports a read below TrimOffset or above NextOffset.
	ErrOutOfRange = errors.New("shardlog: offset out of range")
	// ErrClosed reports use of a closed Log.
	ErrClosed = errors.New("shardlog: log closed")
)

const (
	defaultSegmentMaxBytes = 64 << 20
	defaultSegmentMaxAge   = time.Hour
)

// Entry is one record to append.
type Entry struct {
	PartitionKey string
	Data         []byte
}

// Record is one stored record.
type Record struct {
	Offset       uint64 // dense, 0,1,2,... assigned by the log
	RaftIndex    uint64 // raft log index of the batch that carried it
	Timestamp    int64  // arrival time, ms since epoch
	PartitionKey string
	Data         []byte
	LastInBatch  bool // the last record of its batch; batches are never split
}

// LogOptions configures OpenLog.
type LogOptions struct {
	Dir             string        // created if missing
	SegmentMaxBytes int64         // roll when the active segment reaches this size; default 64 MiB
	SegmentMaxAge   time.Duration // roll when the active segment's first record is older than this (checked on Append); default 1h
	Logger          *slog.Logger  // default slog.Default()
}

// SegmentInfo describes one segment. FirstTimestamp and LastTimestamp are
// zero for a segment without records; Bytes is the size of its .log file.
type SegmentInfo struct {
	BaseOffset, NextOffset        uint64
	FirstTimestamp, LastTimestamp int64
	Bytes                         int64
	Path                          string
}

// Log is the record log of one shard. Append is meant for a single writer
// goroutine (the raft state machine). All methods are safe for concurrent
// use; readers never wait for an Append, except briefly while it rolls.
type Log struct {
	opts   LogOptions
	logger *slog.Logger

	// wmu serializes the users of the active segment's files that may write
	// or close them: Append and Close. The fields below it are its holder's.
	wmu     sync.Mutex
	failed  error // first write failure; appends are refused after it
	scratch writeBuffers

	// mu guards the segment list. Readers hold it shared while they use a
	// segment's files, so segments leave the list (DeleteBefore, Close) and
	// the list grows (roll) only under the exclusive lock.
	mu     sync.RWMutex
	segs   []*segment // ascending base offsets; the last one is active
	closed bool       // written holding both wmu and mu

	active      atomic.Pointer[segment] // segs[len(segs)-1], readable without mu
	lastApplied atomic.Uint64
	changed     atomic.Pointer[chan struct{}]
	damage      atomic.Pointer[error] // the first ErrCorrupt a read met
}

// OpenLog opens the log in opts.Dir, creating it if needed, and recovers
// from a crash: see segment.recover for what happens to the last segment.
// A last segment whose header is torn (a crash while rolling) is deleted and
// the one before it becomes active. Older segments are checked against the
// checksums written when they were sealed; a damaged one is deleted with
// every segment after it, so the log may come back shorter (a lower
// NextOffset and LastApplied) and the caller must fetch or replay the rest,
// as after a torn tail. Damaged records are never served.
func OpenLog(opts LogOptions) (*Log, error) {
	if opts.Dir == "" {
		return nil, errors.New("shardlog: LogOptions.Dir is required")
	}
	if opts.SegmentMaxBytes <= 0 {
		opts.SegmentMaxBytes = defaultSegmentMaxBytes
	}
	if opts.SegmentMaxAge <= 0 {
		opts.SegmentMaxAge = defaultSegmentMaxAge
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	segs, lastApplied, err := loadSegments(opts.Dir, opts.Logger)
	if err != nil {
		return nil, err
	}
	l := &Log{opts: opts, logger: opts.Logger, segs: segs}
	l.active.Store(segs[len(segs)-1])
	l.lastApplied.Store(lastApplied)
	ch := make(chan struct{})
	l.changed.Store(&ch)
	return l, nil
}

// Append writes one batch (one raft entry) at raftIndex with arrival time ts
// for every record, and returns the offset of its first record (NextOffset()
// for an empty batch) and the timestamp actually used. Timestamps never
// decrease: that is max(ts, LastTimestamp()).
//
// raftIndex must be greater than LastApplied(), and every record's key plus
// data must be at most 1 GiB; otherwise Append returns an error and writes
// nothing. An empty batch writes nothing either: it only advances LastApplied
// in memory, so after a restart LastApplied may be below it and the caller
// replays it, harmlessly.
//
// A batch is never split across segments. If writing a batch fails, the Log
// refuses further appends; reopening it recovers.
func (l *Log) Append(raftIndex uint64, ts int64, entries []Entry) (first uint64, effectiveTS int64, err error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return 0, 0, ErrClosed
	}
	if l.failed != nil {
		return 0, 0, fmt.Errorf("shardlog: appends disabled after a write failure: %w", l.failed)
	}
	if last := l.lastApplied.Load(); raftIndex <= last {
		return 0, 0, fmt.Errorf("shardlog: raft index %d is not above last applied %d", raftIndex, last)
	}
	for _, e := range entries {
		if n := len(e.PartitionKey) + len(e.Data); n > maxPayload {
			return 0, 0, fmt.Errorf("shardlog: record of %d bytes exceeds the limit of %d", n, maxPayload)
		}
	}
	seg := l.active.Load()
	effectiveTS = max(ts, seg.lastTS.Load())
	if len(entries) == 0 {
		l.lastApplied.Store(raftIndex)
		return seg.next.Load(), effectiveTS, nil
	}
	if first, err = l.writeBatchLocked(raftIndex, effectiveTS, entries); err != nil {
		return 0, 0, err
	}
	return first, effectiveTS, nil
}

// writeBatchLocked appends one non-empty, checked batch at raftIndex with
// timestamp ts (not below LastTimestamp), rolling the active segment before
// and after it as needed, and publishes it. wmu must be held.
func (l *Log) writeBatchLocked(raftIndex uint64, ts int64, entries []Entry) (first uint64, err error) {
	seg := l.active.Load()
	if l.mustRoll(seg, ts) {
		if seg, err = l.roll(seg); err != nil {
			return 0, err
		}
	}
	first = seg.next.Load()
	if err := seg.append(&l.scratch, raftIndex, ts, entries); err != nil {
		l.failed = err
		return 0, fmt.Errorf("shardlog: appending to %s: %w", seg.path(logExt), err)
	}
	l.lastApplied.Store(raftIndex)
	l.notify(false)

	// Roll as soon as the segment is full, not on the next Append, so the
	// new segment's header durably records LastApplied and LastTimestamp.
	// The batch is already appended, so a failure here is only logged;
	// mustRoll retries on the next Append.
	if seg.size.Load() >= l.opts.SegmentMaxBytes {
		if _, err := l.roll(seg); err != nil {
			l.logger.Error("shardlog: rolling segment failed; will retry", "file", seg.path(logExt), "err", err)
		}
	}
	return first, nil
}

// mustRoll reports whether seg must be sealed before appending a batch
// stamped ts: it is full (an earlier roll failed) or its first record is
// older than SegmentMaxAge. Age is measured against the batch's timestamp,
// not the wall clock, so where segments roll depends only on the data.
func (l *Log) mustRoll(seg *segment, ts int64) bool {
	if seg.next.Load() == seg.baseOffset {
		return false
	}
	return seg.size.Load() >= l.opts.SegmentMaxBytes ||
		ts-seg.firstTS.Load() >= l.opts.SegmentMaxAge.Milliseconds()
}

// roll seals old and makes a new, empty segment active. Called by the
// writer; it takes the exclusive lock only to publish the new segment.
func (l *Log) roll(old *segment) (*segment, error) {
	// Recovery never rescans sealed segments, so they must be durable
	// before anything comes after them.
	if err := old.sync(); err != nil {
		return nil, fmt.Errorf("shardlog: syncing %s before roll: %w", old.path(logExt), err)
	}
	// Before the next segment exists: a sealed segment without its sums
	// (a crash in between, or a failed write) is scanned at open instead.
	if err := old.writeSums(old.writtenSums()); err != nil {
		return nil, fmt.Errorf("shardlog: sealing %s: %w", old.path(logExt), err)
	}
	seg, err := createSegment(l.opts.Dir, header{
		baseOffset:    old.next.Load(),
		baseRaftIndex: l.lastApplied.Load(),
		baseTimestamp: old.lastTS.Load(),
	})
	if err != nil {
		return nil, err
	}
	if err := syncDir(l.opts.Dir); err != nil {
		seg.close()
		seg.remove()
		return nil, fmt.Errorf("shardlog: syncing directory %s: %w", l.opts.Dir, err)
	}
	l.mu.Lock()
	l.segs = append(l.segs, seg)
	l.active.Store(seg)
	l.mu.Unlock()
	return seg, nil
}

// notify wakes everyone waiting on Changed. A final notification (Close)
// leaves a closed channel behind so that later waiters do not block forever.
func (l *Log) notify(final bool) {
	next := make(chan struct{})
	if final {
		close(next)
	}
	close(*l.changed.Swap(&next))
}

// Read returns records starting at from: at most maxRecords of them and at
// most maxBytes of PartitionKey plus Data, except that it returns at least
// one record whenever from < NextOffset(), however large. maxRecords <= 0 or
// maxBytes <= 0 means no such limit. Reading at NextOffset() returns no
// records; below TrimOffset() or above NextOffset() returns ErrOutOfRange.
// Every record's checksum is verified: a mismatch returns ErrCorrupt and
// no records, and marks the log Damaged.
// Records of one Read may share memory; the log never modifies it.
func (l *Log) Read(from uint64, maxRecords int, maxBytes int) ([]Record, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	next := l.nextLocked()
	if err := l.checkRange(from, next, true); err != nil {
		return nil, err
	}
	b := budget{records: noLimitIfNotPositive(maxRecords), bytes: noLimitIfNotPositive(maxBytes)}
	var out []Record
	for i := l.segmentFor(from); from < next; i++ {
		end := l.segmentEnd(i, next)
		before := len(out)
		var err error
		if out, err = l.segs[i].read(out, from, end, &b); err != nil {
			return nil, l.noteReadErr(err)
		}
		from += uint64(len(out) - before)
		if from < end { // the budget ran out inside this segment
			break
		}
	}
	return out, nil
}

func noLimitIfNotPositive(n int) int {
	if n <= 0 {
		return math.MaxInt
	}
	return n
}

// noteReadErr records the first corruption a read meets and returns err.
func (l *Log) noteReadErr(err error) error {
	if errors.Is(err, ErrCorrupt) && l.damage.CompareAndSwap(nil, &err) {
		l.logger.Error("shardlog: damaged record found by a read; the replica must be reopened to repair it",
			"dir", l.opts.Dir, "err", err)
	}
	return err
}

// Damaged returns the first corruption a Read or TimestampAt met since the
// log was opened (an error wrapping ErrCorrupt), or nil. Reads of the
// damaged records go on failing; the owner closes and reopens the log,
// which drops the damage (see OpenLog), and fetches the records again.
func (l *Log) Damaged() error {
	if p := l.damage.Load(); p != nil {
		return *p
	}
	return nil
}

// NextOffset returns the offset the next appended record gets.
func (l *Log) NextOffset() uint64 { return l.active.Load().next.Load() }

// TrimOffset returns the first offset still stored (NextOffset() when the
// log holds no records).
func (l *Log) TrimOffset() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.segs[0].baseOffset
}

// LastApplied returns the raft index of the last batch appended.
func (l *Log) LastApplied() uint64 { return l.lastApplied.Load() }

// LastTimestamp returns the timestamp of the last record appended, which
// survives the deletion of that record, or 0 if there never was one.
func (l *Log) LastTimestamp() int64 { return l.active.Load().lastTS.Load() }

// TimestampAt returns the timestamp of the record at off, for lag
// computations. off must be in [TrimOffset(), NextOffset()), else it returns
// ErrOutOfRange.
func (l *Log) TimestampAt(off uint64) (int64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return 0, ErrClosed
	}
	next := l.nextLocked()
	if err := l.checkRange(off, next, false); err != nil {
		return 0, err
	}
	b := budget{records: 1}
	recs, err := l.segs[l.segmentFor(off)].read(nil, off, off+1, &b)
	if err != nil {
		return 0, l.noteReadErr(err)
	}
	return recs[0].Timestamp, nil
}

// OffsetAtTime returns the first offset >= TrimOffset() whose timestamp is
// >= ts, or NextOffset() if there is none. It does not read any .log file.
func (l *Log) OffsetAtTime(ts int64) uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	next := l.nextLocked()
	if l.closed {
		return next
	}
	// Segments are in timestamp order, so the first one whose last record
	// is recent enough holds the answer.
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].lastTS.Load() >= ts })
	if i == len(l.segs) {
		return next
	}
	s := l.segs[i]
	off, err := s.offsetAtTime(ts, l.segmentEnd(i, next))
	if err != nil {
		// The signature has no error. The segment's base never skips a
		// record at or after ts, so it is a safe if early answer.
		l.logger.Warn("shardlog: time index lookup failed", "file", s.path(timeIndexExt), "err", err)
		return s.baseOffset
	}
	return off
}

// Sync makes everything appended so far durable: it fsyncs the active
// segment's files (older segments were fsynced when rolled).
func (l *Log) Sync() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	return l.active.Load().sync()
}

// DeleteBefore deletes, oldest first, the segments other than the active one
// whose LastTimestamp is below ts, and returns how many it deleted. Reads
// below the new TrimOffset() get ErrOutOfRange. If deleting a segment's files
// fails, it stops there; the undeleted segments are forgotten until the next
// OpenLog finds them again.
func (l *Log) DeleteBefore(ts int64) (int, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	k := 0
	for k < len(l.segs)-1 && l.segs[k].lastTS.Load() < ts {
		k++
	}
	doomed := l.segs[:k]
	if k > 0 {
		l.segs = slices.Clone(l.segs[k:])
	}
	l.mu.Unlock()
	// Readers use a segment's files only under mu, so nobody else can reach
	// the detached segments any more.
	return l.removeSegments(doomed)
}

// removeSegments deletes segs in order and fsyncs the directory after each,
// so that a crash can only leave a prefix of them deleted, never a gap.
func (l *Log) removeSegments(segs []*segment) (int, error) {
	for i, s := range segs {
		err := errors.Join(s.close(), s.remove())
		if err == nil {
			err = syncDir(l.opts.Dir)
		}
		if err != nil {
			for _, rest := range segs[i+1:] {
				rest.close()
			}
			return i, fmt.Errorf("shardlog: deleting segment %s: %w", s.path(logExt), err)
		}
	}
	return len(segs), nil
}

// Segments describes the current segments, oldest first; the last one is
// the active segment.
func (l *Log) Segments() []SegmentInfo {
	l.mu.RLock()
	defer l.mu.RUnlock()
	next := l.nextLocked()
	infos := make([]SegmentInfo, len(l.segs))
	for i, s := range l.segs {
		end := l.segmentEnd(i, next)
		infos[i] = SegmentInfo{BaseOffset: s.baseOffset, NextOffset: end, Bytes: s.size.Load(), Path: s.path(logExt)}
		if end > s.baseOffset {
			infos[i].FirstTimestamp = s.firstTS.Load()
			infos[i].LastTimestamp = s.lastTS.Load()
		}
	}
	return infos
}

// Changed returns a channel that is closed when records are appended after
// this call returned, or when the Log is closed. Call it again for the next
// change. To wait for new data without missing any, call Changed before
// the Read that found nothing new.
func (l *Log) Changed() <-chan struct{} { return *l.changed.Load() }

// Close syncs the active segment and closes all files. Closing again is a
// no-op. Afterwards Append, Read, TimestampAt, Sync and DeleteBefore return
// ErrClosed, while the plain getters keep reporting the final state.
func (l *Log) Close() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return nil
	}
	err := l.active.Load().sync()
	l.mu.Lock()
	l.closed = true
	for _, s := range l.segs {
		err = errors.Join(err, s.close())
	}
	l.mu.Unlock()
	l.notify(true)
	return err
}

// nextLocked returns the published NextOffset; mu must be held.
func (l *Log) nextLocked() uint64 { return l.segs[len(l.segs)-1].next.Load() }

// checkRange checks that off is in [TrimOffset, next], or [TrimOffset, next)
// if atNextOK is false; mu must be held.
func (l *Log) checkRange(off, next uint64, atNextOK bool) error {
	trim := l.segs[0].baseOffset
	if off < trim || off > next || (off == next && !atNextOK) {
		return fmt.Errorf("%w: offset %d, log holds [%d, %d)", ErrOutOfRange, off, trim, next)
	}
	return nil
}

// segmentFor returns the index in segs of the segment holding off, which
// must be >= TrimOffset; mu must be held.
func (l *Log) segmentFor(off uint64) int {
	return sort.Search(len(l.segs), func(i int) bool { return l.segs[i].baseOffset > off }) - 1
}

// segmentEnd returns the offset after the last record of segs[i] as of the
// published next; mu must be held.
func (l *Log) segmentEnd(i int, next uint64) uint64 {
	if i+1 < len(l.segs) {
		return l.segs[i+1].baseOffset
	}
	return next
}
