package cluster

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/riffle-streams/riffle/shardlog"
)

// runReconciler re-reads the metadata after every change and starts or
// stops shard replicas to match it.
func (h *Host) runReconciler() {
	defer h.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		changed := h.meta.Changed()
		// A restarted node replays old states first: acting on them would
		// start groups of streams deleted long ago. Wait until the replica
		// has applied what the leader committed.
		if h.metaCaughtUp() {
			h.reconcile(h.meta.State())
		}
		select {
		case <-changed:
		case <-t.C: // catching up ends without a metadata change
		case <-h.ctx.Done():
			return
		}
	}
}

// metaCaughtUp reports whether this metadata replica has applied every
// entry its leader is known to have committed.
func (h *Host) metaCaughtUp() bool {
	if h.meta.IsLeader() {
		return h.caughtUp.Load()
	}
	if h.metaLeaderID() == "" {
		return false
	}
	stats := h.meta.Raft().Stats()
	commit, _ := strconv.ParseUint(stats["commit_index"], 10, 64)
	applied, _ := strconv.ParseUint(stats["applied_index"], 10, 64)
	return commit > 0 && applied >= commit
}

func (h *Host) reconcile(st *State) {
	// The sweep deletes data, so it waits for a state known to be current:
	// right after a restart, this replica may show the state of its last
	// snapshot, in which replicas placed since do not exist yet (the fault
	// run's kill-one deleted frozen replicas that way).
	if !h.swept && h.isCurrent() {
		h.sweepStrayReplicas(h.meta.State())
		h.swept = true
	}
	live := map[string]bool{}
	for _, s := range st.Streams {
		for _, sh := range s.Shards {
			gid := s.GroupID(sh)
			live[gid] = true
			h.mu.RLock()
			running, asleep := h.shards[gid], h.hib.asleep[gid] != nil
			h.mu.RUnlock()
			if asleep {
				if h.mayHibernate(s, sh) {
					continue
				}
				// The shard changed (a move, a seal, a deletion): the
				// replica takes part awake.
				running, _ = h.wake(s, sh, false)
			}
			if h.closeIfDamaged(gid, running) {
				running = nil
			}
			member := slices.Contains(sh.Replicas, h.opts.NodeID)
			incoming := sh.Moving != nil && sh.Moving.To == h.opts.NodeID
			copyHere := h.frozenCopyHere(s, sh)
			switch {
			case h.replicaFailed(gid) && s.Status != StreamDeleting && !sh.Frozen:
				// A frozen replica runs no raft, and a deleted one is
				// removed: only those go on below.
				if !h.placedHere(s, sh) {
					h.dropFailedReplica(gid)
				} else {
					h.requestRebuild(st, s, sh)
				}
			case s.Status == StreamDeleting && member:
				h.removeReplica(s, sh, running)
			case sh.Frozen && member && (running == nil || running.Raft() != nil):
				h.freezeReplica(s, sh, running)
			case copyHere && running == nil:
				h.startFrozenCopy(s, sh)
			case s.Status != StreamDeleting && (member || incoming) && running == nil:
				h.startReplica(s, sh)
			case s.Status != StreamDeleting && !member && !incoming && !copyHere && running != nil:
				// The replica moved away while this node was gone.
				h.removeReplica(s, sh, running)
			}
			h.maybeReportSealed(s, sh, gid)
			h.maybeReportCaughtUp(s, sh, gid)
		}
	}
	// Groups of streams that are gone altogether (removed while this node
	// was away) stop too.
	h.mu.RLock()
	var orphans []string
	for gid := range h.shards {
		if !live[gid] {
			orphans = append(orphans, gid)
		}
	}
	for gid := range h.hib.asleep {
		if !live[gid] {
			orphans = append(orphans, gid)
		}
	}
	h.mu.RUnlock()
	for _, gid := range orphans {
		h.stopOrphan(gid)
	}
	for gid := range h.removing {
		if !live[gid] {
			delete(h.removing, gid)
		}
	}
	for gid := range h.sealReports {
		if !live[gid] {
			delete(h.sealReports, gid)
		}
	}
	for gid := range h.moveReports {
		if !live[gid] {
			delete(h.moveReports, gid)
		}
	}
	h.forgetFailedOutside(live)
	// This sweep deletes data too, so it waits for the same: a fault soak
	// saw a node, replaying its metadata after a restart, pass through a
	// state from before a frozen shard's copy was moved to it, judge its
	// fresh copy "frozen elsewhere" and delete it; the shard then could
	// not open there. Once the replica was known current, every later
	// state is at least as new.
	if h.swept {
		h.sweepShardDirs(h.meta.State())
	}
}

// metaCurrent reports whether this replica has applied everything the
// metadata leader had committed when asked (a read index).
func (h *Host) metaCurrent() bool {
	ctx, cancel := context.WithTimeout(h.ctx, metaSyncWait)
	defer cancel()
	index, err := h.metaReadIndex(ctx)
	if err != nil {
		return false
	}
	return h.meta.WaitApplied(ctx, index) == nil
}

// sweepStrayReplicas deletes, once after a start, the data of replicas of
// open shards that moved away while this node was down: such a replica is
// never started again, so nothing else would remove it. It deletes nothing
// else: replicas of removed streams and expired shards are sweepShardDirs',
// and a closed shard's replica is never deleted here (a fault run's kill-one
// saw frozen replicas deleted on a restart, from a state in which this node
// was not among their replicas).
func (h *Host) sweepStrayReplicas(st *State) {
	stray := map[string]bool{}
	for _, s := range st.Streams {
		for _, sh := range s.Shards {
			if !sh.Open() || slices.Contains(sh.Replicas, h.opts.NodeID) || (sh.Moving != nil && sh.Moving.To == h.opts.NodeID) || h.frozenCopyHere(s, sh) {
				continue
			}
			stray[s.GroupID(sh)] = true
		}
	}
	for gid := range stray {
		h.mu.RLock()
		_, running := h.shards[gid]
		h.mu.RUnlock()
		if running {
			continue
		}
		if _, err := os.Stat(h.shardDir(gid)); err != nil {
			continue
		}
		if err := h.removeShardData(gid); err != nil {
			h.logger.Warn("removing a stray shard replica", "group", gid, "err", err)
			continue
		}
		h.logger.Info("stray shard replica removed: it moved away while this node was down", "group", gid)
	}
}

// maybeReportCaughtUp starts, once per replica, the report that the
// replica a move brings to this node has caught up. Started here rather
// than at start, so that a replica still running from an earlier stay on
// this node reports too.
func (h *Host) maybeReportCaughtUp(s *Stream, sh *Shard, gid string) {
	mv := sh.Moving
	if s.Status == StreamDeleting || mv == nil || mv.To != h.opts.NodeID || mv.CaughtUp || mv.Cancel {
		return
	}
	h.mu.RLock()
	r := h.shards[gid]
	h.mu.RUnlock()
	if r == nil || r.Raft() == nil || h.moveReports[gid] == r {
		return
	}
	h.moveReports[gid] = r
	h.wg.Add(1)
	go h.reportCaughtUp(r, MoveCaughtUpCmd{StreamID: s.ID, ShardIndex: sh.Index, To: mv.To})
}

// maybeReportSealed starts, once per replica, the report that this node's
// replica of a closed shard has applied its seal.
func (h *Host) maybeReportSealed(s *Stream, sh *Shard, gid string) {
	if s.Status == StreamDeleting || !sh.Closed() || sh.Frozen || slices.Contains(sh.SealedOn, h.opts.NodeID) {
		return
	}
	h.mu.RLock()
	r := h.shards[gid]
	h.mu.RUnlock()
	if r == nil || r.Raft() == nil || h.sealReports[gid] == r {
		return
	}
	h.sealReports[gid] = r
	h.wg.Add(1)
	go h.reportSealed(r, sh.EndOffset, ReplicaSealedCmd{StreamID: s.ID, ShardIndex: sh.Index, Node: h.opts.NodeID})
}

// stopOrphan stops and removes a replica whose stream or shard no longer
// exists (a deleted stream, an expired closed shard).
func (h *Host) stopOrphan(gid string) {
	m := h.transition(gid)
	m.Lock()
	defer m.Unlock()
	h.mu.Lock()
	r := h.shards[gid]
	delete(h.shards, gid)
	delete(h.hib.asleep, gid)
	h.mu.Unlock()
	h.throttles.drop(gid)
	if r != nil {
		if err := r.Close(); err != nil {
			h.logger.Warn("closing an orphaned shard replica", "group", gid, "err", err)
		}
	}
	h.opts.Transports.Release(gid)
	if err := h.removeShardData(gid); err != nil {
		h.logger.Error("removing an orphaned shard replica", "group", gid, "err", err)
		return
	}
	h.logger.Info("replica of a removed stream or shard stopped", "group", gid)
}

func (h *Host) startReplica(s *Stream, sh *Shard) {
	gid := s.GroupID(sh)
	r, err := h.openReplica(s, sh)
	if err != nil {
		return
	}
	h.touch(gid) // a new or restarted replica stays awake a while
	h.mu.Lock()
	h.setShardLocked(gid, r)
	h.mu.Unlock()
	// A replica removed from here earlier (moved away) may come back.
	delete(h.removing, gid)
	h.logger.Info("shard replica started", "stream", s.Name, "shard", sh.ID(), "group", gid)
	if !sh.Ready {
		h.wg.Add(1)
		go h.reportReady(r, ShardReadyCmd{StreamID: s.ID, ShardIndex: sh.Index})
	}
}

// openReplica opens this node's replica of sh and starts its raft group;
// a failure is logged and noted (noteStartFailure).
func (h *Host) openReplica(s *Stream, sh *Shard) (*shardlog.Shard, error) {
	gid := s.GroupID(sh)
	// Every initial replica of a new shard bootstraps with the same
	// configuration, which hashicorp/raft allows; raft addresses are node
	// ids. A replica added later (a move) waits for the leader to add it.
	var servers []raft.Server
	if !sh.Ready && slices.Contains(sh.Replicas, h.opts.NodeID) {
		for _, n := range sh.Replicas {
			servers = append(servers, raft.Server{ID: serverID(n), Address: raft.ServerAddress(n)})
		}
	}
	r, err := shardlog.OpenShard(shardlog.ShardOptions{
		GroupID:         gid,
		Dir:             h.shardDir(gid),
		WAL:             h.wal,
		LocalID:         serverID(h.opts.NodeID),
		Transport:       h.opts.Transports.Transport(gid),
		Bootstrap:       servers,
		Campaign:        len(servers) > 0 && sh.Replicas[0] == h.opts.NodeID,
		Timing:          h.opts.ShardTiming,
		SegmentMaxBytes: h.opts.SegmentMaxBytes,
		SegmentMaxAge:   h.opts.SegmentMaxAge,
		Now:             h.opts.Now,
		Fetch:           h.shardFetcher(s, sh),
		Logger:          h.logger.With("stream", s.Name, "shard", sh.ID()),
	})
	if err != nil {
		h.logger.Error("cannot start shard replica", "stream", s.Name, "shard", sh.ID(), "group", gid, "err", err)
		h.opts.Transports.Release(gid)
		h.noteStartFailure(gid, err)
		return nil, err
	}
	return r, nil
}

// reportReady tells the metadata that a new shard's group has a leader.
func (h *Host) reportReady(r *shardlog.Shard, cmd ShardReadyCmd) {
	defer h.wg.Done()
	if err := r.WaitLeader(h.ctx); err != nil {
		return
	}
	h.proposeUntilDone(h.ctx, Command{ShardReady: &cmd})
}

// proposeUntilDone retries a metadata command with backoff until it commits
// or ctx ends; for reports that must eventually land.
func (h *Host) proposeUntilDone(ctx context.Context, cmd Command) {
	backoff := 50 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := h.ProposeMeta(pctx, cmd)
		cancel()
		if err == nil || ctx.Err() != nil {
			return
		}
		h.logger.Debug("metadata report will be retried", "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// removeReplica stops a deleted stream's replica, removes its data and
// reports it gone.
func (h *Host) removeReplica(s *Stream, sh *Shard, running *shardlog.Shard) {
	gid := s.GroupID(sh)
	if h.removing[gid] {
		return
	}
	if running != nil {
		h.mu.Lock()
		delete(h.shards, gid)
		h.mu.Unlock()
		h.throttles.drop(gid)
		if err := running.Close(); err != nil {
			h.logger.Warn("closing deleted shard replica", "group", gid, "err", err)
		}
		h.opts.Transports.Release(gid)
	}
	if err := h.removeShardData(gid); err != nil {
		h.logger.Error("removing deleted shard data", "group", gid, "err", err)
		return
	}
	h.removing[gid] = true
	cmd := ReplicaStoppedCmd{StreamID: s.ID, ShardIndex: sh.Index, Node: h.opts.NodeID}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.proposeUntilDone(h.ctx, Command{ReplicaStopped: &cmd})
	}()
	h.logger.Info("shard replica removed", "stream", s.Name, "shard", sh.ID(), "group", gid)
}

func (h *Host) shardDir(gid string) string { return filepath.Join(h.opts.DataDir, "shards", gid) }

func metaDir(dataDir string) string { return filepath.Join(dataDir, "meta") }

func serverID(nodeID string) raft.ServerID { return raft.ServerID(nodeID) }
