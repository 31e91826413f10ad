package cluster

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/riffle-streams/riffle/shardlog"
)

// A move replaces one replica of a shard (From) by a new one (To). It is
// planned by the metadata leader for three reasons: From's node has been
// dead past the grace period (MoveReasonDead), From's node is draining
// (MoveReasonDrain), or replicas per node differ by more than one
// (MoveReasonBalance, e.g. after a node joined); and asked for by From's
// node when From's raft store is damaged (MoveReasonDamaged), a replica
// that stays down like a dead node's. Three parties carry it
// out, each acting only on what it owns:
//
//  1. the metadata leader records the intent, Shard.Moving, in the
//     metadata (planMoves); a shard moves one replica at a time;
//  2. To's node starts the replica without bootstrapping; the shard leader
//     adds it as a non-voter, and once it has applied everything the
//     leader committed it reports MoveCaughtUp (reportCaughtUp);
//  3. the shard leader promotes To to voter, hands its leadership to To
//     if it is From itself, removes From from the group and reports
//     MoveDone (advanceMove); From's node then stops and deletes its
//     replica (reconcile).
//
// Crash safety. The shard's raft configuration is the truth about its
// voters; Shard.Moving is only the intent. Each step is one configuration
// change committed by the shard group itself, and advanceMove decides the
// next step from the configuration it finds, never from memory, so any
// shard leader, new or old, after any crash, resumes where the last
// committed change left off:
//
//   - To absent       -> add To as non-voter        (voters: RF)
//   - To non-voter    -> wait for MoveCaughtUp, promote (voters: RF+1)
//   - To voter, From present -> remove From         (voters: RF)
//   - From absent     -> record MoveDone
//
// The voters never drop below RF: From leaves only once To is a voter, and
// only while To's node is alive (a dead To holds RF+1 voters, one down,
// until it returns or the move is cancelled). A kill -9 of the metadata
// leader loses nothing: the intent is replicated, the new leader plans no
// second move for a shard whose Moving is set, and the shard leaders go on
// driving the one recorded. A kill of the shard leader elects another
// replica that reads the same configuration. A kill of To leaves a
// non-voter that does not count toward the quorum; if it stays dead past
// the grace period the metadata leader sets Move.Cancel and the shard
// leader rolls back: it removes To while From is still a voter (or, if
// From was already removed, records MoveDone: the move had completed).
// A kill of From is the dead-node case: the move completes without it.
// MoveDone and MoveAborted are idempotent, so reporting twice after a
// crash is harmless.
//
// With three nodes and one dead there is no node to move to: the shards run
// on two replicas until the node returns or another joins.

// Why a move was planned (Move.Reason).
const (
	MoveReasonDead    = "dead"
	MoveReasonDrain   = "drain"
	MoveReasonBalance = "balance"
	// MoveReasonDamaged: From's replica has a damaged raft store and
	// stays stopped (replica_damage.go); its node asks for the move.
	MoveReasonDamaged = "damaged"
)

// maxMovesPerNode bounds the drain and balance moves a node takes part in
// at once (as source or target), so that copying shards never starves a
// node's disk and network; dead-node rebuilds are not bounded.
const maxMovesPerNode = 2

// defaultDeadNodeGrace is how long a node may be gone before its replicas
// are rebuilt elsewhere.
const defaultDeadNodeGrace = 60 * time.Second

// planMoves runs on the metadata leader: it cancels moves to nodes dead
// past the grace period, rebuilds replicas of dead nodes, then drains and
// balances.
func (h *Host) planMoves(ctx context.Context) {
	now := time.Now()
	dead := map[string]bool{}
	for _, m := range h.opts.Membership.Members() {
		if !m.Alive && now.Sub(m.Since) > h.opts.DeadNodeGrace {
			dead[m.ID] = true
		}
	}
	alive := h.opts.Membership.Alive()
	st := h.meta.State()
	if !h.cancelDeadMoves(ctx, st, dead) {
		return
	}
	if len(dead) > 0 && !h.planDeadMoves(ctx, st, alive, dead) {
		return
	}
	st = h.meta.State()
	for _, cmd := range planRelocations(st, alive) {
		if _, err := h.meta.Propose(ctx, Command{MoveReplica: &cmd}); err != nil {
			h.logger.Warn("planning a replica move", "stream_id", cmd.StreamID, "shard", ShardID(cmd.ShardIndex), "err", err)
			return
		}
		h.logger.Info("replica move planned", "stream_id", cmd.StreamID, "shard", ShardID(cmd.ShardIndex),
			"from", cmd.From, "to", cmd.To, "reason", cmd.Reason)
	}
}

// cancelDeadMoves asks for the roll-back of moves whose new replica's node
// is dead past the grace period. It reports false when proposing failed.
func (h *Host) cancelDeadMoves(ctx context.Context, st *State, dead map[string]bool) bool {
	for _, s := range st.Streams {
		for _, sh := range s.Shards {
			mv := sh.Moving
			if mv == nil || mv.Cancel || !dead[mv.To] {
				continue
			}
			cmd := CancelMoveCmd{StreamID: s.ID, ShardIndex: sh.Index, To: mv.To}
			if _, err := h.meta.Propose(ctx, Command{CancelMove: &cmd}); err != nil {
				h.logger.Warn("cancelling a replica move", "stream", s.Name, "shard", sh.ID(), "err", err)
				return false
			}
			h.logger.Info("replica move cancelled: its target is dead", "stream", s.Name, "shard", sh.ID(), "to", mv.To)
		}
	}
	return true
}

// planDeadMoves moves each replica of a dead node to a live node that holds
// none of the shard. It reports false when proposing failed.
func (h *Host) planDeadMoves(ctx context.Context, st *State, alive []string, dead map[string]bool) bool {
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
			to := rebuildTarget(st, sh, alive, load)
			if to == "" {
				continue
			}
			cmd := MoveReplicaCmd{StreamID: s.ID, ShardIndex: sh.Index, From: from, To: to, Reason: MoveReasonDead}
			if _, err := h.meta.Propose(ctx, Command{MoveReplica: &cmd}); err != nil {
				h.logger.Warn("planning a replica move", "stream", s.Name, "shard", sh.ID(), "err", err)
				return false
			}
			load.Replicas[to]++
			h.logger.Info("replica move planned", "stream", s.Name, "shard", sh.ID(), "from", from, "to", to, "reason", MoveReasonDead)
		}
	}
	return true
}

// rebuildTarget picks the node to rebuild a lost replica of sh on: the
// least loaded live node that is not draining and holds none of sh; empty
// when there is none.
func rebuildTarget(st *State, sh *Shard, alive []string, load Load) string {
	to := ""
	for _, n := range alive {
		if !slices.Contains(sh.Replicas, n) && !st.IsDraining(n) && (to == "" || load.Replicas[n] < load.Replicas[to]) {
			to = n
		}
	}
	return to
}

// planRelocations chooses the next drain and balance moves: replicas of
// open shards leave draining nodes, then go from the most to the least
// loaded live node until replicas per node differ by at most one. Only
// shards whose replicas are all alive move (a shard with a dead replica
// waits for the dead-node rebuild), and balancing waits while any node
// holding replicas is down, so counts are not skewed by a restart.
// Pure: decided from st and the live nodes alone.
func planRelocations(st *State, alive []string) []MoveReplicaCmd {
	isAlive := map[string]bool{}
	var targets []string
	for _, n := range alive {
		isAlive[n] = true
		if !st.IsDraining(n) {
			targets = append(targets, n)
		}
	}
	if len(targets) == 0 {
		return nil
	}
	busy := map[string]int{} // moves in flight per node
	load := map[string]int{} // replicas of open shards, as if moves in flight were done
	pref := map[string]int{} // preferred leaderships (first replica), likewise
	allAlive := true
	type cand struct {
		s  *Stream
		sh *Shard
	}
	var cands []cand
	for _, name := range st.SortedStreamNames() {
		s := st.Streams[name]
		if s.Status == StreamDeleting {
			continue
		}
		for _, sh := range s.Shards {
			for _, r := range sh.Replicas {
				if !isAlive[r] && !sh.Frozen {
					allAlive = false
				}
			}
			if !sh.Open() {
				continue
			}
			for _, r := range sh.Replicas {
				load[r]++
			}
			if len(sh.Replicas) > 0 {
				pref[sh.Replicas[0]]++
			}
			if mv := sh.Moving; mv != nil {
				busy[mv.From]++
				busy[mv.To]++
				load[mv.From]--
				load[mv.To]++
				if len(sh.Replicas) > 0 && sh.Replicas[0] == mv.From {
					pref[mv.From]--
					pref[mv.To]++
				}
				continue
			}
			ok := sh.Ready
			for _, r := range sh.Replicas {
				ok = ok && isAlive[r]
			}
			if ok {
				cands = append(cands, cand{s, sh})
			}
		}
	}
	used := map[*Shard]bool{}
	var out []MoveReplicaCmd
	move := func(c cand, from, to, reason string) {
		out = append(out, MoveReplicaCmd{StreamID: c.s.ID, ShardIndex: c.sh.Index, From: from, To: to, Reason: reason})
		used[c.sh] = true
		busy[from]++
		busy[to]++
		load[from]--
		load[to]++
		// The new replica takes the old one's place in the list, and
		// with it the preferred leadership if it was first.
		if c.sh.Replicas[0] == from {
			pref[from]--
			pref[to]++
		}
	}
	// lightest is the least loaded target, not holding sh, with room.
	lightest := func(sh *Shard) string {
		best := ""
		for _, n := range targets {
			if busy[n] >= maxMovesPerNode || slices.Contains(sh.Replicas, n) {
				continue
			}
			if best == "" || load[n] < load[best] {
				best = n
			}
		}
		return best
	}
	var draining []string
	for n := range st.Draining {
		draining = append(draining, n)
	}
	slices.Sort(draining)
	for _, d := range draining {
		for _, c := range cands {
			if busy[d] >= maxMovesPerNode {
				break
			}
			if used[c.sh] || !slices.Contains(c.sh.Replicas, d) {
				continue
			}
			if to := lightest(c.sh); to != "" {
				move(c, d, to, MoveReasonDrain)
			}
		}
	}
	if !allAlive {
		return out
	}
	for range len(cands) {
		// From the heaviest to the lightest node with room. A moved
		// replica inherits the preferred leadership when it held it, so
		// the shard picked is one the source leads by preference when
		// that evens preferred leaderships out, and one it does not
		// otherwise.
		var src, dst string
		for _, n := range targets {
			if busy[n] >= maxMovesPerNode {
				continue
			}
			if src == "" || load[n] > load[src] {
				src = n
			}
			if dst == "" || load[n] < load[dst] {
				dst = n
			}
		}
		if src == "" || load[src]-load[dst] <= 1 {
			return out
		}
		wantPreferred := pref[src]-pref[dst] > 1
		var pick *cand
		for i, c := range cands {
			if used[c.sh] || !slices.Contains(c.sh.Replicas, src) || slices.Contains(c.sh.Replicas, dst) {
				continue
			}
			if pick == nil || ((pick.sh.Replicas[0] == src) != wantPreferred && (c.sh.Replicas[0] == src) == wantPreferred) {
				pick = &cands[i]
			}
		}
		if pick == nil {
			return out
		}
		move(*pick, src, dst, MoveReasonBalance)
	}
	return out
}

// reportCaughtUp runs on the node receiving a moved replica: it waits until
// the replica has applied everything its leader committed, then says so.
func (h *Host) reportCaughtUp(r *shardlog.Shard, cmd MoveCaughtUpCmd) {
	defer h.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if !h.moveStillWaits(cmd) {
			return // done, cancelled or reported by an earlier replica
		}
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

// moveStillWaits reports whether the metadata still waits for cmd's report.
func (h *Host) moveStillWaits(cmd MoveCaughtUpCmd) bool {
	s, ok := h.meta.State().StreamByID(cmd.StreamID)
	if !ok {
		return false
	}
	sh, ok := s.ShardByIndex(cmd.ShardIndex)
	if !ok {
		return false
	}
	mv := sh.Moving
	return mv != nil && mv.To == cmd.To && !mv.CaughtUp && !mv.Cancel
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

// movesPending reports whether any shard has a move in flight.
func (h *Host) movesPending() bool {
	n, _ := h.MoveStats()
	return n > 0
}

// advanceMoves runs on every node for the shard groups it leads.
func (h *Host) advanceMoves(ctx context.Context) {
	st := h.meta.State()
	for _, s := range st.Streams {
		for _, sh := range s.Shards {
			if sh.Moving == nil {
				continue
			}
			r, err := h.runningShard(s, sh)
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
	if mv.Cancel {
		return h.rollBackMove(ctx, r, s, sh, toKnown && to == raft.Voter, toKnown, fromKnown)
	}
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
		if !slices.Contains(h.opts.Membership.Alive(), mv.To) {
			// From stays until To is back: removing it now would leave
			// RF voters with one of them down.
			return nil
		}
		if mv.From == h.opts.NodeID {
			// A leader removing itself steps down and leaves the group
			// leaderless for an election timeout: hand over first, to
			// the caught-up new replica; its leader finishes the move.
			if err := r.LeadershipTransferToServer(serverID(mv.To), raft.ServerAddress(mv.To)).Error(); err != nil {
				return err
			}
			h.logger.Info("shard leadership handed to the moved replica", "stream", s.Name, "shard", sh.ID(), "to", mv.To)
			return nil
		}
		if err := r.RemoveServer(serverID(mv.From), 0, timeout).Error(); err != nil {
			return err
		}
		h.logger.Info("old replica removed", "stream", s.Name, "shard", sh.ID(), "node", mv.From, "reason", mv.Reason)
	}
	if err := h.ProposeMeta(ctx, Command{MoveDone: &MoveDoneCmd{StreamID: s.ID, ShardIndex: sh.Index, To: mv.To}}); err != nil {
		return err
	}
	h.movesCompleted.Add(1)
	h.logger.Info("replica move done", "stream", s.Name, "shard", sh.ID(), "from", mv.From, "to", mv.To, "reason", mv.Reason)
	return nil
}

// rollBackMove undoes a cancelled move: To leaves the group while From is
// still in it. If From is already gone the move had completed, and is
// recorded as done instead, so the group never drops below its replicas.
func (h *Host) rollBackMove(ctx context.Context, r *raft.Raft, s *Stream, sh *Shard, toVoter, toKnown, fromKnown bool) error {
	mv := sh.Moving
	if !fromKnown && toVoter {
		return h.ProposeMeta(ctx, Command{MoveDone: &MoveDoneCmd{StreamID: s.ID, ShardIndex: sh.Index, To: mv.To}})
	}
	if toKnown {
		if err := r.RemoveServer(serverID(mv.To), 0, 10*time.Second).Error(); err != nil {
			return err
		}
		h.logger.Info("cancelled move rolled back", "stream", s.Name, "shard", sh.ID(), "removed", mv.To)
	}
	return h.ProposeMeta(ctx, Command{MoveAborted: &MoveAbortedCmd{StreamID: s.ID, ShardIndex: sh.Index, To: mv.To}})
}

// MoveStats are the replica moves in flight in the whole cluster (from
// the metadata) and the moves this node completed as shard leader since it
// started.
func (h *Host) MoveStats() (inFlight int, completed uint64) {
	for _, s := range h.meta.State().Streams {
		for _, sh := range s.Shards {
			if sh.Moving != nil {
				inFlight++
			}
		}
	}
	return inFlight, h.movesCompleted.Load()
}
