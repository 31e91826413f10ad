package cluster

import (
	"errors"
	"slices"
	"time"

	"github.com/riffle-streams/riffle/shardlog"
)

// ReplicaSealedCmd records that Node's replica of a closed shard has applied
// the seal and holds every record below the shard's EndOffset durably. Once
// every replica has reported (and no move is in progress) the shard is
// Frozen. Idempotent: a repeated or stale report changes nothing.
type ReplicaSealedCmd struct {
	StreamID   uint64 `json:"stream_id"`
	ShardIndex uint64 `json:"shard_index"`
	Node       string `json:"node"`
}

func (st *State) replicaSealed(c *ReplicaSealedCmd) (*State, error) {
	s, ok := st.streamByID(c.StreamID)
	if !ok || s.Status == StreamDeleting {
		return st, nil
	}
	sh, found := s.ShardByIndex(c.ShardIndex)
	if !found {
		return st, nil
	}
	if !sh.Closed() || sh.Frozen || slices.Contains(sh.SealedOn, c.Node) {
		return st, nil
	}
	if !slices.Contains(sh.Replicas, c.Node) && (sh.Moving == nil || sh.Moving.To != c.Node) {
		return st, nil // a replica that moved away meanwhile
	}
	s = s.clone()
	sh, _ = s.ShardByIndex(c.ShardIndex)
	sh.SealedOn = append(sh.SealedOn, c.Node)
	sh.Frozen = sh.frozenNow()
	return st.withStream(s.Name, s), nil
}

// frozenNow reports whether a closed shard may stop its raft group: every
// current replica has reported its seal applied, and no replica is being
// rebuilt (a new replica catches up through raft, so raft must run).
func (sh *Shard) frozenNow() bool {
	if !sh.Closed() || sh.Moving != nil || len(sh.Replicas) == 0 {
		return false
	}
	for _, n := range sh.Replicas {
		if !slices.Contains(sh.SealedOn, n) {
			return false
		}
	}
	return true
}

// reportSealed waits until the local replica of a closed shard has applied
// its seal and every record below end, makes the segments durable (a frozen
// replica keeps no raft log to replay them from) and reports it.
func (h *Host) reportSealed(r *shardlog.Shard, end uint64, cmd ReplicaSealedCmd) {
	defer h.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if _, sealed := r.Sealed(); sealed && r.Log().NextOffset() >= end {
			break
		}
		select {
		case <-t.C:
		case <-h.ctx.Done():
			return
		}
		if _, err := r.Log().Read(r.Log().NextOffset(), 1, 1); errors.Is(err, shardlog.ErrClosed) {
			return // the replica stopped; a later reconcile starts over
		}
	}
	if err := r.Log().Sync(); err != nil {
		h.logger.Warn("cannot sync a sealed shard's segments", "group", cmd.StreamID, "shard", ShardID(cmd.ShardIndex), "err", err)
		return
	}
	h.proposeUntilDone(h.ctx, Command{ReplicaSealed: &cmd})
}

// freezeReplica stops a frozen shard's raft group, if it runs here, and
// serves the replica from its segments alone. The raft log store is
// deleted: the segments and seal.json hold the data, and a frozen shard
// never runs raft again (its replicas are never moved).
func (h *Host) freezeReplica(s *Stream, sh *Shard, running *shardlog.Shard) {
	gid := s.GroupID(sh)
	if running != nil {
		// Readers that find no replica meanwhile are proxied to another.
		h.mu.Lock()
		delete(h.shards, gid)
		h.mu.Unlock()
		h.throttles.drop(gid)
		if err := running.Close(); err != nil {
			h.logger.Warn("stopping a frozen shard's raft group", "group", gid, "err", err)
		}
		h.opts.Transports.Release(gid)
	}
	h.mu.Lock()
	copying := h.copies[gid]
	h.mu.Unlock()
	if copying {
		return // a repair below is under way
	}
	dir := h.shardDir(gid)
	f, err := shardlog.OpenFrozen(h.ctx, dir, h.shardFetcher(s, sh), h.logger.With("stream", s.Name, "shard", sh.ID()))
	if errors.Is(err, shardlog.ErrNotSealed) {
		// The replica here never learned its seal, or its directory is
		// gone; the shard is sealed on its other replicas, so a copy of
		// theirs replaces it (a raft group never runs for it again).
		h.logger.Warn("frozen shard replica has no seal here; copying it from a peer", "stream", s.Name, "shard", sh.ID(), "group", gid)
		h.mu.Lock()
		h.copies[gid] = true
		h.mu.Unlock()
		h.wg.Add(1)
		go h.copyFrozenReplica(s.ID, sh.Index, gid, sh.EndOffset, true)
		return
	}
	if err != nil {
		h.logger.Error("cannot open a frozen shard replica", "stream", s.Name, "shard", sh.ID(), "group", gid, "err", err)
		return
	}
	h.mu.Lock()
	h.setShardLocked(gid, f)
	delete(h.failed, gid) // a frozen replica no longer needs its raft state
	h.mu.Unlock()
	if err := errors.Join(shardlog.RemoveRaftState(dir), h.wal.Drop(gid)); err != nil {
		h.logger.Warn("cannot remove a frozen shard's raft log", "group", gid, "err", err)
	}
	h.logger.Info("shard frozen: raft group stopped, serving reads from its segments",
		"stream", s.Name, "shard", sh.ID(), "group", gid, "records", f.Log().NextOffset())
}

// IsFrozen reports whether this node serves group gid read-only, with no
// raft group running for it.
func (h *Host) IsFrozen(gid string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	r := h.shards[gid]
	return r != nil && r.Raft() == nil
}

// RunningGroups is how many shard raft groups run on this node.
func (h *Host) RunningGroups() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := 0
	for _, r := range h.shards {
		if r.Raft() != nil {
			n++
		}
	}
	return n
}
