package wal

import (
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// Group is one raft group's log in the WAL: a raft.LogStore. Its state is
// written only by the WAL's writer, in the order the records go to disk,
// and replay applies the same records the same way (apply* below), so the
// index in memory is always what a restart would rebuild.
type Group struct {
	w    *WAL
	name string

	mu    sync.RWMutex
	first uint64 // index of locs[0]; meaningless when locs is empty
	locs  []loc  // where each live entry is, first to last
	// keepFrom, when set, is the end of a snapshot being installed over
	// a log that holds it (KeepFrom): a compaction keeps it and what
	// follows, until the next entries are stored.
	keepFrom uint64
	// damaged says the group's records on disk are not whole; raft must
	// not run on it. A reset or checkpoint clears it.
	damaged error
	dropped bool
}

// loc is one entry's place on disk: the entry's bytes, header included.
type loc struct {
	seg *segment
	off int64
	n   int32
}

// ErrDropped: the group was dropped from the WAL; its handle is dead.
var ErrDropped = errors.New("wal: group dropped")

// Name is the group's name in the WAL.
func (g *Group) Name() string { return g.name }

// FirstIndex implements raft.LogStore: 0 when the group holds no entry.
func (g *Group) FirstIndex() (uint64, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if len(g.locs) == 0 {
		return 0, nil
	}
	return g.first, nil
}

// LastIndex implements raft.LogStore: 0 when the group holds no entry.
func (g *Group) LastIndex() (uint64, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.lastLocked(), nil
}

func (g *Group) lastLocked() uint64 {
	if len(g.locs) == 0 {
		return 0
	}
	return g.first + uint64(len(g.locs)) - 1
}

// GetLog implements raft.LogStore. The read holds the group's lock, so
// the entry stays live, and its segment on disk, until it is done.
func (g *Group) GetLog(index uint64, out *raft.Log) error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if len(g.locs) == 0 || index < g.first || index > g.lastLocked() {
		return raft.ErrLogNotFound
	}
	l := g.locs[index-g.first]
	b := make([]byte, l.n)
	if _, err := l.seg.f.ReadAt(b, l.off); err != nil {
		return fmt.Errorf("wal: group %s: read entry %d: %w", g.name, index, err)
	}
	if err := decodeEntry(b, out); err != nil {
		return fmt.Errorf("group %s, entry %d in %s: %w", g.name, index, l.seg.path, err)
	}
	if out.Index != index {
		return fmt.Errorf("%w: group %s: entry %d found where %d belongs in %s", ErrCorrupt, g.name, out.Index, index, l.seg.path)
	}
	return nil
}

// StoreLog implements raft.LogStore.
func (g *Group) StoreLog(log *raft.Log) error { return g.StoreLogs([]*raft.Log{log}) }

// StoreLogs implements raft.LogStore: the entries are durable when it
// returns. They must be contiguous. Stored past the end, or before the
// first entry, the log restarts at the new index; stored over existing
// entries, those from the first new index on are replaced. (Raft stores
// over entries only after forgetting them: a conflicting suffix, or the
// log before a snapshot install.)
func (g *Group) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	for i := 1; i < len(logs); i++ {
		if logs[i].Index != logs[i-1].Index+1 {
			return fmt.Errorf("wal: group %s: entries %d and %d are not contiguous", g.name, logs[i-1].Index, logs[i].Index)
		}
	}
	size := frameFixed + len(g.name)
	for _, e := range logs {
		size += entryHeader + entryFixed + len(e.Extensions) + len(e.Data)
	}
	frame := appendFrameHeader(make([]byte, 0, size), recAppend, g.name)
	bodyAt := len(frame)
	for _, e := range logs {
		frame = appendEntry(frame, e)
	}
	finishFrame(frame, 0)
	if len(frame)-bodyAt > maxBodyBytes {
		return fmt.Errorf("wal: group %s: %d bytes of entries in one call, over %d", g.name, len(frame)-bodyAt, maxBodyBytes)
	}
	spans, err := splitEntries(frame[bodyAt:])
	if err != nil {
		panic(fmt.Sprintf("wal: entries just encoded do not decode: %v", err))
	}
	return g.w.submit(&request{g: g, typ: recAppend, frame: frame, bodyAt: bodyAt, spans: spans})
}

// IsMonotonic implements raft.MonotonicLogStore, and says no: hashicorp/raft
// v1.7.3 empties a monotonic store after a snapshot install without
// resetting its own last index (hashicorp/raft#697), so raft must only
// compact a prefix, and the caller applies the Raft paper's install rules
// (shardlog's CheckInstall and ReconcileSnapshot).
func (g *Group) IsMonotonic() bool { return false }

// DeleteRange implements raft.LogStore. Raft deletes either a prefix
// (compaction after a snapshot) or a suffix (entries that conflict with
// the leader's); nothing else.
func (g *Group) DeleteRange(min, max uint64) error {
	g.mu.RLock()
	first, last, keep := g.first, g.lastLocked(), g.keepFrom
	empty := len(g.locs) == 0
	g.mu.RUnlock()
	if keep != 0 && min <= first && max >= keep && max < last {
		// A compaction after an install keeps the snapshot's end; a
		// conflicting suffix (up to the last entry) still goes.
		max = keep - 1
	}
	if empty || max < first || min > last || max < min {
		return nil
	}
	switch {
	case min <= first:
		return g.truncate(recTruncPrefix, max+1)
	case max >= last:
		return g.truncate(recTruncSuffix, min)
	}
	return fmt.Errorf("wal: group %s: DeleteRange(%d, %d) inside [%d, %d]", g.name, min, max, first, last)
}

func (g *Group) truncate(typ byte, index uint64) error {
	frame := appendFrameHeader(nil, typ, g.name)
	frame = le.AppendUint64(frame, index)
	finishFrame(frame, 0)
	return g.w.submit(&request{g: g, typ: typ, frame: frame, index: index})
}

// Reset empties the group durably and clears any damage: for a replica
// that starts afresh, or a log dropped to be rebuilt from a snapshot.
func (g *Group) Reset() error {
	frame := appendFrameHeader(nil, recCheckpoint, g.name)
	finishFrame(frame, 0)
	return g.w.submit(&request{g: g, typ: recCheckpoint, frame: frame, bodyAt: len(frame)})
}

// KeepFrom makes the next compaction keep index and what follows it,
// until entries are stored: for a snapshot installed over a log that
// holds its last entry, whose followers raft must still match.
func (g *Group) KeepFrom(index uint64) {
	g.mu.Lock()
	g.keepFrom = index
	g.mu.Unlock()
}

// Damaged returns why the group's records are not whole, or nil.
func (g *Group) Damaged() error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.damaged
}

// applyAppendLocked applies an append of entries at locs from index first
// on: what the group held from first on goes; a log that first does not
// continue restarts there.
func (g *Group) applyAppendLocked(first uint64, locs []loc) {
	if len(g.locs) > 0 && first >= g.first && first <= g.lastLocked()+1 {
		g.locs = g.locs[:first-g.first]
	} else {
		g.first, g.locs = first, g.locs[:0]
	}
	g.locs = append(g.locs, locs...)
	g.keepFrom = 0
}

// applyTruncPrefixLocked drops the entries below index.
func (g *Group) applyTruncPrefixLocked(index uint64) {
	if len(g.locs) == 0 || index <= g.first {
		return
	}
	if index > g.lastLocked() {
		g.locs = nil
		return
	}
	// Copy what stays, so that the dropped front's memory goes too.
	g.locs = append([]loc(nil), g.locs[index-g.first:]...)
	g.first = index
}

// applyTruncSuffixLocked drops the entries from index on.
func (g *Group) applyTruncSuffixLocked(index uint64) {
	if len(g.locs) == 0 || index > g.lastLocked() {
		return
	}
	if index <= g.first {
		g.locs = g.locs[:0]
		return
	}
	g.locs = g.locs[:index-g.first]
}

// applyCheckpointLocked makes locs, from index first on, the whole log.
func (g *Group) applyCheckpointLocked(first uint64, locs []loc) {
	g.first, g.locs = first, append([]loc(nil), locs...)
	g.damaged = nil
	g.keepFrom = 0
}

// applyLocked applies one record, as written or as replayed.
func (g *Group) applyLocked(typ byte, index uint64, locs []loc) {
	switch typ {
	case recAppend:
		g.applyAppendLocked(index, locs)
	case recTruncPrefix:
		g.applyTruncPrefixLocked(index)
	case recTruncSuffix:
		g.applyTruncSuffixLocked(index)
	case recCheckpoint:
		g.applyCheckpointLocked(index, locs)
	}
}

// oldestSegment is the id of the segment holding the group's first live
// entry, and false when it holds none. Entries are stored in index order
// and only ever appended, so no later entry lies in an older segment.
func (g *Group) oldestSegment() (uint64, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if len(g.locs) == 0 {
		return 0, false
	}
	return g.locs[0].seg.id, true
}
