package cluster

import (
	"context"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// Shard leaders are spread by preference, as Kafka does with preferred
// replicas: placement rotates which node comes first in each shard's
// replica list, and a node leading a shard whose first replica is alive
// elsewhere hands the leadership to it. Each node decides only for the
// groups it leads, so no central view of every group is needed.

// defaultBalanceInterval is how often a node checks the leaderships it holds.
const defaultBalanceInterval = 5 * time.Second

func (h *Host) runBalancer() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.BalanceInterval)
	defer t.Stop()
	for {
		// A move advances on each metadata change too (planned, caught
		// up), not only on the tick: otherwise each of its steps waits up
		// to a balance interval.
		changed := h.meta.Changed()
		select {
		case <-t.C:
			h.advanceMoves(h.ctx)
			h.balanceLeaders()
		case <-changed:
			if h.movesPending() {
				h.advanceMoves(h.ctx)
			}
		case <-h.ctx.Done():
			return
		}
	}
}

// balanceLeaders hands over at most one leadership per pass, so that a
// cluster settles gradually and never moves every leader at once.
func (h *Host) balanceLeaders() {
	if h.draining.Load() {
		return
	}
	// Only to a node that has been up a while: a node that just came back
	// has not yet started its groups or caught up, and a transfer to it
	// would stall writes for an election timeout.
	settled := map[string]bool{}
	for _, m := range h.opts.Membership.Members() {
		settled[m.ID] = m.Alive && time.Since(m.Since) > 2*h.opts.BalanceInterval
	}
	st := h.meta.State()
	if st.IsDraining(h.opts.NodeID) {
		h.handOffDraining(st, settled)
		return
	}
	for _, s := range st.Streams {
		for _, sh := range s.Shards {
			// No handover during a move: the leader may be handing the
			// group to the moved replica, and the preferred replica may be
			// the one leaving. Nor to a node being drained.
			if len(sh.Replicas) == 0 || sh.Replicas[0] == h.opts.NodeID || !settled[sh.Replicas[0]] ||
				sh.Moving != nil || st.IsDraining(sh.Replicas[0]) {
				continue
			}
			r, err := h.runningShard(s, sh)
			if err != nil || !r.IsLeader() {
				continue
			}
			preferred := sh.Replicas[0]
			f := r.Raft().LeadershipTransferToServer(serverID(preferred), raft.ServerAddress(preferred))
			if err := f.Error(); err != nil {
				h.logger.Debug("leadership transfer failed", "stream", s.Name, "shard", sh.ID(), "to", preferred, "err", err)
				continue
			}
			h.logger.Info("shard leadership handed to preferred replica", "stream", s.Name, "shard", sh.ID(), "to", preferred)
			return
		}
	}
}

// handOffDraining hands every shard leadership of a draining node to
// another live replica that is not draining, preferred replicas first, so
// that writes stop depending on the node before its replicas are gone.
func (h *Host) handOffDraining(st *State, settled map[string]bool) {
	for _, s := range st.Streams {
		for _, sh := range s.Shards {
			r, err := h.runningShard(s, sh)
			if err != nil || !r.IsLeader() || (sh.Moving != nil && sh.Moving.From == h.opts.NodeID) {
				continue // a move off this node hands over by itself
			}
			for _, n := range sh.Replicas {
				if n == h.opts.NodeID || !settled[n] || st.IsDraining(n) {
					continue
				}
				if err := r.Raft().LeadershipTransferToServer(serverID(n), raft.ServerAddress(n)).Error(); err != nil {
					h.logger.Debug("leadership transfer off a draining node failed", "stream", s.Name, "shard", sh.ID(), "to", n, "err", err)
					continue
				}
				h.logger.Info("shard leadership handed off a draining node", "stream", s.Name, "shard", sh.ID(), "to", n)
				break
			}
		}
	}
}

// HandOffLeadership transfers every leadership this node holds (shards and
// metadata) to other replicas, for a clean shutdown: writes then move on
// without waiting for an election timeout. Bounded by ctx.
func (h *Host) HandOffLeadership(ctx context.Context) {
	h.draining.Store(true)
	h.mu.RLock()
	var led []*raft.Raft
	for _, r := range h.shards {
		if r.IsLeader() {
			led = append(led, r.Raft())
		}
	}
	h.mu.RUnlock()
	if h.meta.IsLeader() {
		led = append(led, h.meta.Raft())
	}
	moved := 0
	for _, r := range led {
		if ctx.Err() != nil {
			break
		}
		if r.LeadershipTransfer().Error() == nil {
			moved++
		}
	}
	if len(led) > 0 {
		h.logger.Info("leaderships handed over before shutdown", "led", len(led), "moved", moved)
	}
}

// LedGroups returns the ids of the shard groups this node currently leads,
// sorted, and whether it leads the metadata group. The fault tests read it
// through the admin endpoint to aim a crash at a leader.
func (h *Host) LedGroups() (shards []string, meta bool) {
	h.mu.RLock()
	for gid, r := range h.shards {
		if r.IsLeader() {
			shards = append(shards, gid)
		}
	}
	h.mu.RUnlock()
	slices.Sort(shards)
	return shards, h.meta.IsLeader()
}

// LeaderCount is how many shard groups this node currently leads.
func (h *Host) LeaderCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := 0
	for _, r := range h.shards {
		if r.IsLeader() {
			n++
		}
	}
	return n
}
