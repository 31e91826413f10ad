package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// Hibernation (docs/hibernation.md): a shard with no writes and no readers
// for HostOptions.HibernateAfter closes its raft group on every replica, so
// that it costs no heartbeats, timers, goroutines or memory. Only its files
// stay. The leader decides: once its replicas have all applied the same
// last entry, it asks each follower whether it would agree (prepare), then
// closes its own group and asks them again, and each closes too. Any
// request for the shard, and any raft message for it, opens the replica
// again; a replica woken by a request starts an election at once, so the
// group has a leader in tens of milliseconds instead of raft's election
// timeout.
//
// Nothing of raft's safety depends on this: closing a group and opening it
// again is what a clean restart of its replicas does, every write still
// commits on a quorum, and leaders are still elected by raft's votes.

// DefaultHibernateAfter is how long a shard must be idle before it
// hibernates, unless HostOptions.HibernateAfter says otherwise.
const DefaultHibernateAfter = 30 * time.Second

// hibernateRPCTimeout bounds each Hibernate call to a follower.
const hibernateRPCTimeout = 2 * time.Second

// wakeLeaderWait bounds how long a request that woke a shard waits for
// its election before going on (it then waits as for any election).
const wakeLeaderWait = 2 * time.Second

// sleeper is what a hibernating replica leaves in memory.
type sleeper struct {
	// expires is the newest record timestamp (ms) of the replica's oldest
	// segment, when it has more than one: retention wakes the replica once
	// that segment may go. Zero: nothing can expire before a write.
	expires int64
}

// groupUse is when a replica was last used by a request, and how many
// long-lived users (subscriptions) hold it awake.
type groupUse struct {
	last  atomic.Int64 // unix nanoseconds
	holds atomic.Int32
}

// hibernation is the host's hibernation state.
type hibernation struct {
	// asleep holds the hibernating replicas; under Host.mu.
	asleep map[string]*sleeper
	// use by group id: *groupUse.
	use sync.Map
	// transit by group id: *sync.Mutex, held while a replica goes to sleep
	// or wakes, so that the two never overlap.
	transit sync.Map
	// refused by group id: when an attempt last failed; hibernator-owned.
	refused map[string]time.Time

	sleeps, wakes, refusals atomic.Uint64
	wakeNanos               atomic.Uint64 // sum over wakes by requests
	requestWakes            atomic.Uint64
}

func (h *Host) groupUse(gid string) *groupUse {
	if u, ok := h.hib.use.Load(gid); ok {
		return u.(*groupUse)
	}
	u, _ := h.hib.use.LoadOrStore(gid, &groupUse{})
	return u.(*groupUse)
}

func (h *Host) touch(gid string) { h.groupUse(gid).last.Store(time.Now().UnixNano()) }

func (h *Host) transition(gid string) *sync.Mutex {
	m, _ := h.hib.transit.LoadOrStore(gid, &sync.Mutex{})
	return m.(*sync.Mutex)
}

// idleFor reports whether gid has had no request for d and no holder.
func (h *Host) idleFor(gid string, d time.Duration) bool {
	u := h.groupUse(gid)
	return u.holds.Load() == 0 && time.Since(time.Unix(0, u.last.Load())) >= d
}

// KeepAwake keeps the local replica of sh from hibernating until release
// is called: for users that hold the replica longer than one request, such
// as a subscription. It wakes the replica if it sleeps.
func (h *Host) KeepAwake(s *Stream, sh *Shard) (release func()) {
	gid := s.GroupID(sh)
	u := h.groupUse(gid)
	u.holds.Add(1)
	h.touch(gid)
	var once sync.Once
	return func() {
		once.Do(func() {
			h.touch(gid)
			u.holds.Add(-1)
		})
	}
}

// Hibernating is how many replicas on this node hibernate.
func (h *Host) Hibernating() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.hib.asleep)
}

// HibernationStats are the node's hibernation counters.
type HibernationStats struct {
	Asleep                  int
	Sleeps, Wakes, Refusals uint64
	// RequestWakes are wakes by a client's request, and RequestWakeSeconds
	// their summed time to a known leader.
	RequestWakes       uint64
	RequestWakeSeconds float64
}

// HibernationStats reports the node's hibernation counters.
func (h *Host) HibernationStats() HibernationStats {
	return HibernationStats{Asleep: h.Hibernating(), Sleeps: h.hib.sleeps.Load(), Wakes: h.hib.wakes.Load(),
		Refusals: h.hib.refusals.Load(), RequestWakes: h.hib.requestWakes.Load(),
		RequestWakeSeconds: float64(h.hib.wakeNanos.Load()) / 1e9}
}

// wake opens a hibernating replica again; byRequest also starts an
// election here and waits (bounded) for a leader. It returns the running
// replica, or ErrNoReplica when the node has none of sh.
func (h *Host) wake(s *Stream, sh *Shard, byRequest bool) (*shardlog.Shard, error) {
	gid := s.GroupID(sh)
	m := h.transition(gid)
	m.Lock()
	defer m.Unlock()
	h.mu.RLock()
	r, asleep := h.shards[gid], h.hib.asleep[gid] != nil
	h.mu.RUnlock()
	if r != nil {
		h.touch(gid)
		return r, nil
	}
	if !asleep {
		return nil, ErrNoReplica
	}
	start := time.Now()
	r, err := h.openReplica(s, sh)
	if err != nil {
		// Reconciliation starts it as any replica that is not running.
		h.mu.Lock()
		delete(h.hib.asleep, gid)
		h.mu.Unlock()
		return nil, fmt.Errorf("%w: waking it: %v", ErrNoReplica, err)
	}
	h.touch(gid)
	h.mu.Lock()
	h.setShardLocked(gid, r)
	delete(h.hib.asleep, gid)
	h.mu.Unlock()
	h.hib.wakes.Add(1)
	if !byRequest {
		h.logger.Debug("shard woke for its group", "group", gid, "took", time.Since(start))
		return r, nil
	}
	// One campaigner per group, the preferred replica (where the balancer
	// would move the leadership anyway), so that requests waking the same
	// group on several nodes do not split its votes; this replica if the
	// preferred one cannot be reached.
	campaigner := h.opts.NodeID
	if len(sh.Replicas) > 0 && sh.Replicas[0] != campaigner {
		if pref := sh.Replicas[0]; r.CampaignOn(serverID(pref), raft.ServerAddress(pref)) == nil {
			campaigner = ""
		}
	}
	if campaigner != "" {
		if err := r.CampaignOn(serverID(campaigner), raft.ServerAddress(campaigner)); err != nil {
			h.logger.Debug("could not start an election at once; raft's timeout will", "group", gid, "err", err)
		}
	}
	ctx, cancel := context.WithTimeout(h.ctx, wakeLeaderWait)
	err = r.WaitLeader(ctx)
	cancel()
	took := time.Since(start)
	h.hib.requestWakes.Add(1)
	h.hib.wakeNanos.Add(uint64(took))
	h.logger.Debug("shard woke for a request", "group", gid, "took", took, "leader", r.Leader(), "err", err)
	return r, nil
}

// WakeGroup opens the hibernating replica of group gid for a raft message
// that arrived for it, and reports whether the replica now runs. The raft
// transport calls it for groups it does not serve.
func (h *Host) WakeGroup(gid string) bool {
	h.mu.RLock()
	asleep := h.hib.asleep[gid] != nil
	h.mu.RUnlock()
	if !asleep {
		return false
	}
	s, sh, ok := h.groupShard(gid)
	if !ok {
		return false
	}
	r, err := h.wake(s, sh, false)
	return err == nil && r != nil
}

// groupShard finds the stream and shard of a group id in the metadata.
func (h *Host) groupShard(gid string) (*Stream, *Shard, bool) {
	var streamID, index uint64
	if _, err := fmt.Sscanf(gid, "s%d-%d", &streamID, &index); err != nil {
		return nil, nil, false
	}
	s, ok := h.meta.State().StreamByID(streamID)
	if !ok {
		return nil, nil, false
	}
	sh, ok := s.ShardByIndex(index)
	return s, sh, ok
}

// mayHibernate reports whether sh is in a state in which its replica on
// this node may sleep, and stay asleep: a settled open shard of a live
// stream, with this node among its replicas and no move under way.
func (h *Host) mayHibernate(s *Stream, sh *Shard) bool {
	return h.opts.HibernateAfter > 0 && s.Status != StreamDeleting && s.Status != StreamCreating &&
		sh.Open() && sh.Ready && sh.Moving == nil && !sh.Frozen &&
		slices.Contains(sh.Replicas, h.opts.NodeID) && !h.replicaFailed(s.GroupID(sh))
}

// sleep closes the running replica r of gid, if it is still the one
// running, has been idle for HibernateAfter and check finds nothing
// against it; it returns why not, or "".
func (h *Host) sleep(gid string, r *shardlog.Shard, check func() string) string {
	m := h.transition(gid)
	m.Lock()
	defer m.Unlock()
	h.mu.Lock()
	if h.shards[gid] != r {
		h.mu.Unlock()
		return "the replica was replaced"
	}
	if !h.idleFor(gid, h.opts.HibernateAfter) {
		h.mu.Unlock()
		return "the replica is in use"
	}
	if why := check(); why != "" {
		h.mu.Unlock()
		return why
	}
	z := &sleeper{}
	if segs := r.Log().Segments(); len(segs) > 1 {
		z.expires = segs[0].LastTimestamp
	}
	delete(h.shards, gid)
	h.hib.asleep[gid] = z
	h.mu.Unlock()
	if err := r.Close(); err != nil {
		h.logger.Warn("closing a hibernating shard replica", "group", gid, "err", err)
	}
	h.opts.Transports.Release(gid)
	h.hib.sleeps.Add(1)
	return ""
}

// runHibernator puts the idle shards this node leads to sleep.
func (h *Host) runHibernator() {
	defer h.wg.Done()
	if h.opts.HibernateAfter <= 0 {
		return
	}
	t := time.NewTicker(min(max(h.opts.HibernateAfter/4, 100*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.hibernateIdle()
		case <-h.ctx.Done():
			return
		}
	}
}

func (h *Host) hibernateIdle() {
	if h.draining.Load() {
		return
	}
	h.mu.RLock()
	led := map[string]*shardlog.Shard{}
	for gid, r := range h.shards {
		if r.Raft() != nil && r.IsLeader() {
			led[gid] = r
		}
	}
	h.mu.RUnlock()
	now := time.Now()
	for gid, r := range led {
		if h.ctx.Err() != nil {
			return
		}
		if !h.idleFor(gid, h.opts.HibernateAfter) || now.Sub(h.hib.refused[gid]) < h.opts.HibernateAfter {
			continue
		}
		s, sh, ok := h.groupShard(gid)
		if !ok || !h.mayHibernate(s, sh) {
			continue
		}
		if why := h.hibernate(s, sh, r); why != "" {
			h.hib.refused[gid] = now
			h.hib.refusals.Add(1)
			h.logger.Debug("shard stays awake", "group", gid, "why", why)
		} else {
			delete(h.hib.refused, gid)
		}
	}
	for gid := range h.hib.refused {
		if led[gid] == nil {
			delete(h.hib.refused, gid)
		}
	}
}

// hibernate puts the group of sh, which r leads, to sleep on every
// replica; it returns why not, or "".
func (h *Host) hibernate(s *Stream, sh *Shard, r *shardlog.Shard) string {
	rf := r.Raft()
	term, last := rf.CurrentTerm(), rf.LastIndex()
	if rf.CommitIndex() != last || rf.AppliedIndex() != last {
		return "entries not yet committed or applied"
	}
	cf := rf.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err.Error()
	}
	var voters []string
	for _, srv := range cf.Configuration().Servers {
		if srv.Suffrage != raft.Voter {
			return "a replica is not a voter"
		}
		voters = append(voters, string(srv.ID))
	}
	slices.Sort(voters)
	want := slices.Sorted(slices.Values(sh.Replicas))
	if !slices.Equal(voters, want) {
		return fmt.Sprintf("raft configuration %v is not the replicas %v", voters, want)
	}
	req := &internalv1.HibernateRequest{StreamId: s.ID, ShardIndex: sh.Index, Leader: h.opts.NodeID,
		Term: term, LastIndex: last, Prepare: true}
	var followers []string
	for _, n := range sh.Replicas {
		if n != h.opts.NodeID {
			followers = append(followers, n)
		}
	}
	for _, n := range followers {
		if why := h.askHibernate(n, req); why != "" {
			return n + ": " + why
		}
	}
	gid := s.GroupID(sh)
	if why := h.sleep(gid, r, func() string {
		if !r.IsLeader() || rf.CurrentTerm() != term || rf.LastIndex() != last {
			return "the group moved on"
		}
		return ""
	}); why != "" {
		return why
	}
	req.Prepare = false
	for _, n := range followers {
		// A follower that does not close now times out, starts an
		// election and so wakes the group: slower, never unsafe.
		if why := h.askHibernate(n, req); why != "" {
			h.logger.Debug("follower did not hibernate with its leader", "group", gid, "follower", n, "why", why)
		}
	}
	h.logger.Debug("shard hibernates", "group", gid, "index", last, "term", term)
	return ""
}

func (h *Host) askHibernate(node string, req *internalv1.HibernateRequest) string {
	c, err := h.forwardClient(node)
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(h.ctx, hibernateRPCTimeout)
	defer cancel()
	resp, err := c.Hibernate(ctx, req)
	if err != nil {
		return err.Error()
	}
	return resp.GetRefused()
}

// Hibernate implements internalv1.ForwardServer: a follower's side of
// hibernate.
func (s forwardServer) Hibernate(_ context.Context, req *internalv1.HibernateRequest) (*internalv1.HibernateResponse, error) {
	reply := func(why string) (*internalv1.HibernateResponse, error) {
		return &internalv1.HibernateResponse{Refused: why}, nil
	}
	h := s.h
	st, sh, ok := h.groupShard(fmt.Sprintf("s%d-%d", req.StreamId, req.ShardIndex))
	if !ok {
		return reply("shard unknown on this node")
	}
	if !h.mayHibernate(st, sh) {
		return reply("the shard is not settled here")
	}
	gid := st.GroupID(sh)
	h.mu.RLock()
	r, asleep := h.shards[gid], h.hib.asleep[gid] != nil
	h.mu.RUnlock()
	if r == nil {
		if asleep && !req.Prepare {
			return reply("") // already asleep
		}
		return reply("no running replica")
	}
	check := func() string {
		rf := r.Raft()
		if rf == nil {
			return "the replica runs no raft group"
		}
		if rf.State() != raft.Follower {
			return "not a follower: " + rf.State().String()
		}
		if _, id := rf.LeaderWithID(); string(id) != req.Leader {
			return fmt.Sprintf("follows %q, not %q", id, req.Leader)
		}
		if t := rf.CurrentTerm(); t != req.Term {
			return fmt.Sprintf("at term %d, not %d", t, req.Term)
		}
		if last, commit, applied := rf.LastIndex(), rf.CommitIndex(), rf.AppliedIndex(); last != req.LastIndex || commit != last || applied != last {
			return fmt.Sprintf("last entry %d, committed %d, applied %d; the leader's last is %d", last, commit, applied, req.LastIndex)
		}
		return ""
	}
	if req.Prepare {
		if !h.idleFor(gid, h.opts.HibernateAfter) {
			return reply("the replica is in use")
		}
		return reply(check())
	}
	return reply(h.sleep(gid, r, check))
}
