package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// The metadata leader assigns a group's shards to its live workers. A
// heartbeat is not a command: the leader keeps each worker's last heartbeat
// in memory and writes to the metadata only when a lease changes hands, so
// that a group of any size costs the metadata group a write per
// reassignment, not per heartbeat.
//
// Fencing. A worker is live while the leader heard from it within the
// group's lease duration; the worker itself stops processing once its last
// acknowledged heartbeat was sent a lease duration ago, which is before the
// leader can consider it gone. A new metadata leader knows no heartbeat:
// it counts every owner as heard from at the start of its term, so no lease
// moves before a full lease duration of its own has passed. Whatever the
// clocks do, the lease counter settles it: every change of hands gives the
// lease a new counter through the metadata log, and a checkpoint or release
// naming an older counter is refused (ErrLeaseLost), so a worker that
// paused past its lease can process records again at most, never record
// progress for a shard it no longer holds.

// groupCoordinator is the metadata leader's memory of group workers.
type groupCoordinator struct {
	mu sync.Mutex
	// term is the metadata term these records belong to; a new term
	// starts them afresh at since.
	term  uint64
	since time.Time
	// seen holds each group's workers' last heartbeats.
	seen map[string]map[string]time.Time
	// handovers holds when each pending handover (group/shard) was asked.
	handovers map[string]time.Time
}

// GroupLease is one shard's lease as a worker or a description sees it.
type GroupLease struct {
	Shard   string
	Parents []string
	Lease
}

// MetaLeader is the id of the metadata leader this node knows, or "".
func (h *Host) MetaLeader() string { return h.metaLeaderID() }

// IsMetaLeader reports whether this node leads the metadata group and has
// caught up with its log, so that it may act on the state.
func (h *Host) IsMetaLeader() bool { return h.meta.IsLeader() && h.catchUp() }

func (h *Host) coordinator() *groupCoordinator {
	h.groupsOnce.Do(func() { h.groups = &groupCoordinator{} })
	return h.groups
}

// GroupHeartbeat, on the metadata leader, records a worker's heartbeat
// (creating the group on first use, with leaseDuration or the default),
// moves leases as the group's live workers require, and returns the
// group and the leases the worker is to process.
func (h *Host) GroupHeartbeat(ctx context.Context, group, stream, worker string, leaseDuration time.Duration) (*Group, []GroupLease, error) {
	if !h.IsMetaLeader() {
		return nil, nil, ErrNotLeader
	}
	c := h.coordinator()
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.startTerm(h.meta.Raft().CurrentTerm())
	g, s, err := h.ensureGroup(ctx, group, stream, leaseDuration)
	if err != nil {
		return nil, nil, err
	}
	if c.seen[group] == nil {
		c.seen[group] = map[string]time.Time{}
	}
	c.seen[group][worker] = now
	if g, err = h.rebalance(ctx, c, g, s, now); err != nil {
		return nil, nil, err
	}
	var mine []GroupLease
	for _, id := range g.assignable(s) {
		if l := g.Leases[id]; l != nil && l.Owner == worker && l.HandoverTo == "" {
			mine = append(mine, groupLease(s, id, l))
		}
	}
	return g, mine, nil
}

// startTerm resets the records when the metadata term changed and returns
// the time of the heartbeat being handled.
func (c *groupCoordinator) startTerm(term uint64) time.Time {
	now := time.Now()
	if c.seen == nil || c.term != term {
		c.term, c.since = term, now
		c.seen, c.handovers = map[string]map[string]time.Time{}, map[string]time.Time{}
	}
	return now
}

func groupLease(s *Stream, id string, l *Lease) GroupLease {
	gl := GroupLease{Shard: id}
	if l != nil {
		gl.Lease = *l
	}
	if sh, ok := s.ShardByID(id); ok {
		for _, p := range []string{sh.Parent, sh.AdjacentParent} {
			if p != "" {
				gl.Parents = append(gl.Parents, p)
			}
		}
	}
	return gl
}

// ensureGroup finds the group, creating it on first use, and its stream.
func (h *Host) ensureGroup(ctx context.Context, group, stream string, leaseDuration time.Duration) (*Group, *Stream, error) {
	st := h.meta.State()
	g, ok := st.Groups[group]
	if !ok {
		if leaseDuration == 0 {
			leaseDuration = DefaultGroupLeaseDuration
		}
		cmd := Command{CreateGroup: &CreateGroupCmd{Name: group, Stream: stream, LeaseDuration: leaseDuration, CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}}
		// ErrGroupExists: created in a term this node's view missed; the
		// refusal was applied after the creation, so the state has it now.
		if _, err := h.meta.Propose(ctx, cmd); err != nil && !errors.Is(err, ErrGroupExists) {
			return nil, nil, err
		} else if err == nil {
			h.logger.Info("consumer group created", "group", group, "stream", stream, "lease_duration", leaseDuration)
		}
		st = h.meta.State()
		if g, ok = st.Groups[group]; !ok {
			return nil, nil, fmt.Errorf("%w: %s", ErrGroupNotFound, group)
		}
	}
	if g.Stream != stream {
		return nil, nil, fmt.Errorf("%w: group %s consumes stream %s, not %s", ErrInvalidCommand, group, g.Stream, stream)
	}
	s, ok := st.streamByID(g.StreamID)
	if !ok || s.Status == StreamDeleting {
		return nil, nil, fmt.Errorf("%w: stream %s of group %s was deleted; delete the group", ErrStreamNotFound, g.Stream, group)
	}
	return g, s, nil
}

// rebalance proposes the lease changes the group's live workers require
// and returns the group after them.
func (h *Host) rebalance(ctx context.Context, c *groupCoordinator, g *Group, s *Stream, now time.Time) (*Group, error) {
	live := c.liveWorkers(g, now)
	expired := func(shard string) bool {
		at, ok := c.handovers[g.Name+"/"+shard]
		if !ok {
			at = c.since
		}
		return now.Sub(at) >= g.LeaseDuration
	}
	var changes []LeaseChange
	for attempt := 0; ; attempt++ {
		changes = planLeases(g, s, live, expired)
		if len(changes) == 0 {
			return g, nil
		}
		_, err := h.meta.Propose(ctx, Command{AssignLeases: &AssignLeasesCmd{Group: g.Name, Changes: changes}})
		if err == nil {
			break
		}
		// A release through another node moved a counter after the
		// plan: plan again on the new state; the next heartbeat will
		// if this one cannot.
		if !errors.Is(err, ErrInvalidCommand) {
			return nil, err
		}
		if g, err = h.meta.State().group(g.Name); err != nil || attempt == 2 {
			return g, err
		}
	}
	for _, ch := range changes {
		key := g.Name + "/" + ch.Shard
		if ch.Handover && ch.Owner != "" {
			c.handovers[key] = now
		} else {
			delete(c.handovers, key)
		}
		h.logger.Info("consumer group lease change", "group", g.Name, "shard", ch.Shard, "to", ch.Owner, "handover", ch.Handover)
	}
	ng, err := h.meta.State().group(g.Name)
	return ng, err
}

// liveWorkers lists the group's workers heard from within the lease
// duration, and, early in a term, the owners not heard from yet.
func (c *groupCoordinator) liveWorkers(g *Group, now time.Time) []string {
	var live []string
	for w, at := range c.seen[g.Name] {
		if now.Sub(at) < g.LeaseDuration {
			live = append(live, w)
		}
	}
	if now.Sub(c.since) < g.LeaseDuration {
		for _, l := range g.Leases {
			if _, heard := c.seen[g.Name][l.Owner]; l.Owner != "" && !heard && !slices.Contains(live, l.Owner) {
				live = append(live, l.Owner)
			}
		}
	}
	sort.Strings(live)
	return live
}

// GroupLeave, on the metadata leader, forgets a worker and releases its
// leases.
func (h *Host) GroupLeave(ctx context.Context, group, worker string) error {
	if !h.IsMetaLeader() {
		return ErrNotLeader
	}
	c := h.coordinator()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.startTerm(h.meta.Raft().CurrentTerm())
	if _, err := h.meta.State().group(group); err != nil {
		return err
	}
	delete(c.seen[group], worker)
	_, err := h.meta.Propose(ctx, Command{ReleaseLeases: &ReleaseLeasesCmd{Group: group, Worker: worker, All: true}})
	if err == nil {
		h.logger.Info("consumer group worker left", "group", group, "worker", worker)
	}
	return err
}

// GroupLeases lists a group's leases in shard order, for descriptions.
func (st *State) GroupLeases(g *Group) []GroupLease {
	s, _ := st.streamByID(g.StreamID)
	ids := make([]string, 0, len(g.Leases))
	for id := range g.Leases {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]GroupLease, 0, len(ids))
	for _, id := range ids {
		if s != nil {
			out = append(out, groupLease(s, id, g.Leases[id]))
		} else {
			out = append(out, GroupLease{Shard: id, Lease: *g.Leases[id]})
		}
	}
	return out
}

// planLeases decides the lease changes that balance the shards the group
// may process now over its live workers: each gets n/k or n/k+1, leases
// of workers no longer live go to others at once, and a live worker's
// surplus is handed over (it releases after a last checkpoint), or taken
// once the handover has waited a lease duration (expired). It moves as
// few leases as it can.
func planLeases(g *Group, s *Stream, live []string, expired func(shard string) bool) []LeaseChange {
	if len(live) == 0 {
		return nil
	}
	isLive := map[string]bool{}
	for _, w := range live {
		isLive[w] = true
	}
	shards := g.assignable(s)
	target := map[string]string{} // shard -> worker it should end with
	load := map[string]int{}
	for _, id := range shards {
		l := g.Leases[id]
		if l == nil || !isLive[l.Owner] {
			continue
		}
		t := l.Owner
		if l.HandoverTo != "" && isLive[l.HandoverTo] {
			t = l.HandoverTo
		}
		target[id] = t
		load[t]++
	}
	// The most loaded keep the larger quota, so that fewer leases move.
	order := append([]string(nil), live...)
	sort.SliceStable(order, func(i, j int) bool { return load[order[i]] > load[order[j]] })
	base, extra := len(shards)/len(live), len(shards)%len(live)
	quota := map[string]int{}
	for i, w := range order {
		quota[w] = base
		if i < extra {
			quota[w]++
		}
	}
	for i := len(shards) - 1; i >= 0; i-- { // surplus: highest shards first
		id := shards[i]
		if t, ok := target[id]; ok && load[t] > quota[t] {
			delete(target, id)
			load[t]--
		}
	}
	for _, id := range shards {
		if _, ok := target[id]; ok {
			continue
		}
		best := ""
		for _, w := range live {
			if load[w] < quota[w] && (best == "" || load[w] < load[best]) {
				best = w
			}
		}
		target[id] = best
		load[best]++
	}
	var changes []LeaseChange
	for _, id := range shards {
		l := g.Leases[id]
		if l == nil {
			l = &Lease{}
		}
		t := target[id]
		switch {
		case !isLive[l.Owner]:
			changes = append(changes, LeaseChange{Shard: id, Counter: l.Counter, Owner: t})
		case t == l.Owner:
			if l.HandoverTo != "" {
				changes = append(changes, LeaseChange{Shard: id, Counter: l.Counter, Handover: true})
			}
		case l.HandoverTo == t && expired(id):
			changes = append(changes, LeaseChange{Shard: id, Counter: l.Counter, Owner: t})
		case l.HandoverTo != t:
			changes = append(changes, LeaseChange{Shard: id, Counter: l.Counter, Owner: t, Handover: true})
		}
	}
	return changes
}
