package cluster

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/riffle-streams/riffle/shardlog"
)

// Damaged replicas. Two kinds of damage reach the host:
//
//   - Damaged segments. Opening a replica verifies its segments and drops a
//     damaged one with everything after it; the replica then fetches the
//     records again from its peers (or replays them from raft) before it is
//     registered, so nothing damaged is served. A read that meets damage
//     later (bit rot while running) fails with ErrCorrupt and marks the log
//     (shardlog.Log.Damaged); the reconciler then closes the replica and
//     opens it again, which is the same verification and repair.
//   - A damaged raft store (shardlog.ErrRaftStateDamaged). The group is not
//     started, and not retried: the replica stays down, reported by
//     FailedReplicas (riffle_replicas_failed, /debug/replicas/failed). The
//     node asks for it to be moved to a live node that holds none of the
//     shard (requestRebuild), the same move as a dead node's rebuild: the
//     new replica catches up as a non-voter and becomes a voter before the
//     damaged member leaves the group, and the damaged member never votes
//     meanwhile, since it does not run. With no such node (three nodes,
//     three replicas) the shard runs on the other replicas until one
//     joins. Once the metadata no longer places the replica here its
//     directory is deleted. Starting it afresh instead would let a replica
//     that forgot its vote and log vote again (see
//     shardlog.OpenCheckedRaftStore).

// FailedReplicas returns the replicas this node refuses to start, by group
// id, with the reason.
func (h *Host) FailedReplicas() map[string]string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make(map[string]string, len(h.failed))
	for gid, err := range h.failed {
		out[gid] = err.Error()
	}
	return out
}

// replicaFailed reports whether gid is a replica this node refuses to start.
func (h *Host) replicaFailed(gid string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.failed[gid] != nil
}

// noteStartFailure records a replica that must stay down, when err says so.
func (h *Host) noteStartFailure(gid string, err error) {
	if !errors.Is(err, shardlog.ErrRaftStateDamaged) {
		return
	}
	h.mu.Lock()
	h.failed[gid] = err
	h.mu.Unlock()
	h.logger.Error("shard replica left stopped: its raft state is damaged; it is rebuilt on another node "+
		"once one holds none of the shard (docs/operations.md)", "group", gid, "err", err)
}

// requestRebuild asks the metadata, once at a time, to move the failed
// replica of sh off this node, when a node to move it to exists.
func (h *Host) requestRebuild(st *State, s *Stream, sh *Shard) {
	gid := s.GroupID(sh)
	if sh.Moving != nil || !sh.Open() || !slices.Contains(sh.Replicas, h.opts.NodeID) {
		return
	}
	to := rebuildTarget(st, sh, h.opts.Membership.Alive(), st.Load())
	h.mu.Lock()
	asked := h.rebuilds[gid]
	if to != "" && !asked {
		h.rebuilds[gid] = true
	}
	h.mu.Unlock()
	if to == "" || asked {
		return
	}
	cmd := MoveReplicaCmd{StreamID: s.ID, ShardIndex: sh.Index, From: h.opts.NodeID, To: to, Reason: MoveReasonDamaged}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
		err := h.ProposeMeta(ctx, Command{MoveReplica: &cmd})
		cancel()
		h.mu.Lock()
		delete(h.rebuilds, gid) // the next reconcile asks again if it failed
		h.mu.Unlock()
		if err != nil {
			h.logger.Warn("asking to rebuild a failed replica elsewhere", "group", gid, "to", to, "err", err)
			return
		}
		h.logger.Info("failed replica to be rebuilt elsewhere", "group", gid, "to", to)
	}()
}

// dropFailedReplica deletes the data of a failed replica once the metadata
// no longer places it on this node, or forgets a failed replica whose
// group is gone.
func (h *Host) dropFailedReplica(gid string) {
	if err := h.removeShardData(gid); err != nil {
		h.logger.Warn("removing a failed shard replica", "group", gid, "err", err)
		return
	}
	h.mu.Lock()
	delete(h.failed, gid)
	h.mu.Unlock()
	h.logger.Info("failed shard replica removed: it is placed elsewhere now", "group", gid)
}

// forgetFailedOutside forgets failed replicas of groups not in live.
func (h *Host) forgetFailedOutside(live map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for gid := range h.failed {
		if !live[gid] {
			delete(h.failed, gid)
		}
	}
}

// closeIfDamaged closes a running replica whose reads met damage, or whose
// raft log must be reconciled with a snapshot it refused to install
// (shardlog.Shard.NeedsReopen), and reports whether it did; the next
// reconcile opens it again, which repairs it.
func (h *Host) closeIfDamaged(gid string, r *shardlog.Shard) bool {
	if r == nil {
		return false
	}
	why := r.Log().Damaged()
	if why == nil {
		why = r.NeedsReopen()
	}
	if why == nil {
		return false
	}
	h.mu.Lock()
	if h.shards[gid] == r {
		delete(h.shards, gid)
	}
	h.mu.Unlock()
	h.throttles.drop(gid)
	if err := r.Close(); err != nil {
		h.logger.Warn("closing a damaged shard replica", "group", gid, "err", err)
	}
	h.opts.Transports.Release(gid)
	h.logger.Warn("shard replica closed to be opened again: a damaged record (repaired from its peers) or a raft log to reconcile with a snapshot",
		"group", gid, "err", why)
	return true
}

// placedHere reports whether the metadata wants a replica of sh here.
func (h *Host) placedHere(s *Stream, sh *Shard) bool {
	return slices.Contains(sh.Replicas, h.opts.NodeID) ||
		(sh.Moving != nil && sh.Moving.To == h.opts.NodeID) || h.frozenCopyHere(s, sh)
}
