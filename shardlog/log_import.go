package shardlog

import (
	"errors"
	"fmt"
)

// Importing records from a peer. A replica that lacks records raft has
// compacted away copies them from another replica's log (see catchup.go).
// Committed records are identical on every replica, so the copy keeps each
// record's offset, raft index, timestamp and batch boundary exactly: the
// result is the log the replica would have written by applying the entries.

// ErrDiscontinuous reports imported records that do not continue the log:
// a gap or an overlap in offsets, a batch cut short, raft indexes that do
// not increase or timestamps that decrease.
var ErrDiscontinuous = errors.New("shardlog: records do not continue the log")

// TrimHorizon is where a log's stored records begin: the first offset it
// still holds, and the raft index and timestamp the log had reached just
// below it. A log restarted at another log's horizon continues exactly as
// that log does.
type TrimHorizon struct {
	Offset    uint64
	RaftIndex uint64
	Timestamp int64
}

// TrimHorizon returns the log's horizon: TrimOffset(), with the LastApplied
// and LastTimestamp recorded in the first segment's header.
func (l *Log) TrimHorizon() TrimHorizon {
	l.mu.RLock()
	defer l.mu.RUnlock()
	h := l.segs[0].header
	return TrimHorizon{Offset: h.baseOffset, RaftIndex: h.baseRaftIndex, Timestamp: h.baseTimestamp}
}

// Import appends records copied from another replica's log, keeping their
// offsets, raft indexes, timestamps and batch boundaries. recs must continue
// the log: the first is at NextOffset(), offsets are dense, they end with the
// last record of a batch, the records of a batch share its raft index and
// timestamp, each batch's raft index is above the one before it (the first
// above LastApplied()), and timestamps never decrease (the first not below
// LastTimestamp()). Otherwise Import returns an error wrapping
// ErrDiscontinuous and writes nothing. Afterwards LastApplied() is the raft
// index of the last batch.
//
// Like Append, Import is for the single writer, and a failed write disables
// further writes until the log is reopened. Records are durable after Sync.
func (l *Log) Import(recs []Record) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.failed != nil {
		return fmt.Errorf("shardlog: appends disabled after a write failure: %w", l.failed)
	}
	batches, err := splitBatches(recs, l.NextOffset(), l.lastApplied.Load(), l.LastTimestamp())
	if err != nil {
		return err
	}
	for _, b := range batches {
		if _, err := l.writeBatchLocked(b.raftIndex, b.ts, b.entries); err != nil {
			return err
		}
	}
	return nil
}

// importBatch is one whole batch of imported records.
type importBatch struct {
	raftIndex uint64
	ts        int64
	entries   []Entry
}

// splitBatches checks that recs continue a log whose NextOffset, LastApplied
// and LastTimestamp are next, lastRaft and lastTS (see Import), and cuts
// them into batches.
func splitBatches(recs []Record, next, lastRaft uint64, lastTS int64) ([]importBatch, error) {
	var out []importBatch
	inBatch := false
	for i, r := range recs {
		if r.Offset != next+uint64(i) {
			return nil, fmt.Errorf("%w: record %d has offset %d, want %d", ErrDiscontinuous, i, r.Offset, next+uint64(i))
		}
		if n := len(r.PartitionKey) + len(r.Data); n > maxPayload {
			return nil, fmt.Errorf("shardlog: record of %d bytes at offset %d exceeds the limit of %d", n, r.Offset, maxPayload)
		}
		if inBatch {
			if b := &out[len(out)-1]; r.RaftIndex != b.raftIndex || r.Timestamp != b.ts {
				return nil, fmt.Errorf("%w: offset %d (raft index %d, time %d) breaks the batch of raft index %d, time %d",
					ErrDiscontinuous, r.Offset, r.RaftIndex, r.Timestamp, b.raftIndex, b.ts)
			}
		} else {
			if r.RaftIndex <= lastRaft {
				return nil, fmt.Errorf("%w: batch at offset %d has raft index %d, not above %d",
					ErrDiscontinuous, r.Offset, r.RaftIndex, lastRaft)
			}
			if r.Timestamp < lastTS {
				return nil, fmt.Errorf("%w: batch at offset %d has time %d, before %d",
					ErrDiscontinuous, r.Offset, r.Timestamp, lastTS)
			}
			out = append(out, importBatch{raftIndex: r.RaftIndex, ts: r.Timestamp})
			lastRaft, lastTS = r.RaftIndex, r.Timestamp
		}
		b := &out[len(out)-1]
		b.entries = append(b.entries, Entry{PartitionKey: r.PartitionKey, Data: r.Data})
		inBatch = !r.LastInBatch
	}
	if inBatch {
		return nil, fmt.Errorf("%w: the records end inside the batch of raft index %d", ErrDiscontinuous, lastRaft)
	}
	return out, nil
}

// RestartAt empties the log and makes it start at h, a peer's trim horizon:
// for a replica that lacks records the peer's retention has already deleted,
// so that they can be fetched from nowhere. Reads below h.Offset then get
// ErrOutOfRange, NextOffset() and TrimOffset() are h.Offset, LastApplied()
// is h.RaftIndex and LastTimestamp() is h.Timestamp.
//
// h must be ahead of the log: h.Offset above NextOffset(), h.RaftIndex and
// h.Timestamp not below LastApplied() and LastTimestamp(); otherwise it
// returns an error wrapping ErrDiscontinuous and changes nothing.
//
// The old segments are deleted, oldest first, before the new one is created,
// so a crash midway leaves a log that is shorter or empty, never one with a
// hole; the caller fetches again. A failure leaves the log refusing writes.
func (l *Log) RestartAt(h TrimHorizon) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.failed != nil {
		return fmt.Errorf("shardlog: appends disabled after a write failure: %w", l.failed)
	}
	if next, last, ts := l.NextOffset(), l.lastApplied.Load(), l.LastTimestamp(); h.Offset <= next || h.RaftIndex < last || h.Timestamp < ts {
		return fmt.Errorf("%w: cannot restart at offset %d (raft index %d, time %d): the log is at %d (raft index %d, time %d)",
			ErrDiscontinuous, h.Offset, h.RaftIndex, h.Timestamp, next, last, ts)
	}
	// Readers are kept out for the whole switch: they see the old log or
	// the new one.
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.removeSegments(l.segs); err != nil {
		l.failed = err
		return err
	}
	seg, err := createSegment(l.opts.Dir, header{baseOffset: h.Offset, baseRaftIndex: h.RaftIndex, baseTimestamp: h.Timestamp})
	if err == nil {
		if err = syncDir(l.opts.Dir); err != nil {
			seg.close()
			err = fmt.Errorf("shardlog: syncing directory %s: %w", l.opts.Dir, err)
		}
	}
	if err != nil {
		// The old segments are closed: reads fail until the log is reopened.
		l.failed = err
		return err
	}
	l.segs = []*segment{seg}
	l.active.Store(seg)
	l.lastApplied.Store(h.RaftIndex)
	l.logger.Info("shardlog: log restarted at a peer's trim horizon",
		"dir", l.opts.Dir, "offset", h.Offset, "raftIndex", h.RaftIndex)
	l.notify(false)
	return nil
}
