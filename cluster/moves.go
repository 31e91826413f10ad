package cluster

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/riffle-streams/riffle/shardlog"
)

// Rebuilding the replicas of a dead node takes three parties, each acting
// only on what it owns:
//
//  1. the metadata leader, seeing a node dead for longer than the grace
//     period, proposes a Move of each of its replicas to a live node that
//     holds none of the shard (planMoves);
//  2. the new node starts the replica without bootstrapping; the shard
//     leader adds it as a non-voter, and once it has applied everything the
//     leader committed it reports MoveCaughtUp (reportCaughtUp);
//  3. the shard leader promotes it to voter, removes the dead replica from
//     the group and reports MoveDone (advanceMoves).
//
// With three nodes and one dead there is no node to move to: the shards run
// on two replicas until the node returns or another joins.

// defaultDeadNodeGrace is how long a node may be gone before its replicas
// are rebuilt elsewhere.
const defaultDeadNodeGrace = 60 * time.Second

// planMoves runs on the metadata leader.
func (h *Host) planMoves(ctx context.Context) {
	now := time.Now()
	dead := map[string]bool{}
	for _, m := range h.opts.Membership.Members() {
		if !m.Alive && now.Sub(m.Since) > h.opts.DeadNodeGrace {
			dead[m.ID] = true
		}
	}
	if len(dead) == 0 {
		return
	}
	alive := h.opts.Membership.Alive()
	st := h.meta.State()
	load := st.Load()
	h.planClosedMoves(ctx, st, dead, alive, load)
	for _, s := range st.Streams {
		if s.Status == StreamDeleting {
			continue
		}
		for _, sh := range s.Shards {
			if sh.Moving != nil || !sh.Open() {
				continue
			}
			from := ""
			for _, r := range sh.Replicas {
				if dead[r] {
					from = r
					break
				}
			}
			if from == "" {
				continue
			}
			to := ""
			for _, n := range alive {
				if !slices.Contains(sh.Replicas, n) && (to == "" || load.Replicas[n] < load.Replicas[to]) {
					to = n
				}
			}
			if to == "" {
				continue
			}
			cmd := MoveReplicaCmd{StreamID: s.ID, ShardIndex: sh.Index, From: from, To: to}
			if _, err := h.meta.Propose(ctx, Command{MoveReplica: &cmd}); err != nil {
				h.logger.Warn("planning a replica move", "stream", s.Name, "shard", sh.ID(), "err", err)
				return
			}
			load.Replicas[to]++
			h.logger.Info("replica move planned", "stream", s.Name, "shard", sh.ID(), "from", from, "to", to)
		}
	}
}

// reportCaughtUp runs on the node receiving a moved replica: it waits until
// the replica has applied everything its leader committed, then says so.
func (h *Host) reportCaughtUp(r *shardlog.Shard, cmd MoveCaughtUpCmd) {
	defer h.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if caughtUp(r) {
			h.proposeUntilDone(h.ctx, Command{MoveCaughtUp: &cmd})
			return
		}
		select {
		case <-t.C:
		case <-h.ctx.Done():
			return
		}
	}
}

// caughtUp reports whether a follower has heard from a leader and applied
// every entry it knows to be committed.
func caughtUp(r *shardlog.Shard) bool {
	if r.Leader() == "" {
		return false
	}
	stats := r.Raft().Stats()
	commit, _ := strconv.ParseUint(stats["commit_index"], 10, 64)
	applied, _ := strconv.ParseUint(stats["applied_index"], 10, 64)
	return commit > 0 && applied >= commit
}

// advanceMoves runs on every node for the shard groups it leads.
func (h *Host) advanceMoves(ctx context.Context) {
	st := h.meta.State()
	for _, s := range st.Streams {
		for _, sh := range s.Shards {
			if sh.Moving == nil {
				continue
			}
			r, err := h.Shard(s, sh)
			if err != nil || !r.IsLeader() {
				continue
			}
			if err := h.advanceMove(ctx, r.Raft(), s, sh); err != nil {
				h.logger.Warn("replica move", "stream", s.Name, "shard", sh.ID(), "to", sh.Moving.To, "err", err)
			}
		}
	}
}

func (h *Host) advanceMove(ctx context.Context, r *raft.Raft, s *Stream, sh *Shard) error {
	mv := sh.Moving
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	suffrage := map[string]raft.ServerSuffrage{}
	for _, srv := range f.Configuration().Servers {
		suffrage[string(srv.ID)] = srv.Suffrage
	}
	to, toKnown := suffrage[mv.To]
	_, fromKnown := suffrage[mv.From]
	const timeout = 10 * time.Second
	switch {
	case !toKnown:
		// Joins as a non-voter: it does not count toward the quorum while
		// it copies the shard.
		if err := r.AddNonvoter(serverID(mv.To), raft.ServerAddress(mv.To), 0, timeout).Error(); err != nil {
			return err
		}
		h.logger.Info("moved replica joined as non-voter", "stream", s.Name, "shard", sh.ID(), "node", mv.To)
		return nil
	case to == raft.Nonvoter && !mv.CaughtUp:
		return nil // still copying
	case to == raft.Nonvoter:
		if err := r.AddVoter(serverID(mv.To), raft.ServerAddress(mv.To), 0, timeout).Error(); err != nil {
			return err
		}
		h.logger.Info("moved replica promoted to voter", "stream", s.Name, "shard", sh.ID(), "node", mv.To)
	}
	if fromKnown {
		if err := r.RemoveServer(serverID(mv.From), 0, timeout).Error(); err != nil {
			return err
		}
		h.logger.Info("dead replica removed", "stream", s.Name, "shard", sh.ID(), "node", mv.From)
	}
	return h.ProposeMeta(ctx, Command{MoveDone: &MoveDoneCmd{StreamID: s.ID, ShardIndex: sh.Index, To: mv.To}})
}
