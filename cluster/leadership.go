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
		select {
		case <-t.C:
			h.advanceMoves(h.ctx)
			h.balanceLeaders()
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
	for _, s := range st.Streams {
		for _, sh := range s.Shards {
			if len(sh.Replicas) == 0 || sh.Replicas[0] == h.opts.NodeID || !settled[sh.Replicas[0]] {
				continue
			}
			r, err := h.Shard(s, sh)
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
