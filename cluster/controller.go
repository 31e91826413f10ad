package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// runFormation bootstraps the metadata group of a new cluster: once
// BootstrapExpect members are alive, the one with the lowest id among the
// first BootstrapExpect bootstraps with them as voters; the others wait to
// be contacted. A node with metadata state never bootstraps again.
func (h *Host) runFormation() {
	defer h.wg.Done()
	for {
		changed := h.opts.Membership.Changed()
		done, err := h.tryBootstrap()
		if err != nil {
			h.logger.Error("bootstrapping the metadata group", "err", err)
		}
		if done {
			return
		}
		select {
		case <-changed:
		case <-h.meta.Changed():
		case <-time.After(time.Second): // a leader appears without a membership change
		case <-h.ctx.Done():
			return
		}
	}
}

// tryBootstrap reports true once formation needs nothing more from this node.
func (h *Host) tryBootstrap() (bool, error) {
	cfg, err := h.metaConfiguration()
	if err != nil {
		return false, err
	}
	if len(cfg.Servers) > 0 || h.metaLeaderID() != "" {
		return true, nil // existing state, or already part of a formed cluster
	}
	alive := h.opts.Membership.Alive()
	if len(alive) < h.opts.BootstrapExpect {
		return false, nil
	}
	first := alive[:h.opts.BootstrapExpect]
	if first[0] != h.opts.NodeID {
		return !slices.Contains(first, h.opts.NodeID), nil
	}
	var servers []raft.Server
	for i, id := range first {
		suffrage := raft.Voter
		if i >= maxVoters(len(first)) {
			suffrage = raft.Nonvoter
		}
		servers = append(servers, raft.Server{Suffrage: suffrage, ID: serverID(id), Address: raft.ServerAddress(id)})
	}
	if err := h.meta.Raft().BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && err != raft.ErrCantBootstrap {
		return false, err
	}
	h.logger.Info("bootstrapped the metadata group", "members", first)
	return true, nil
}

func (h *Host) metaConfiguration() (raft.Configuration, error) {
	f := h.meta.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, err
	}
	return f.Configuration(), nil
}

// maxVoters is how many metadata voters a cluster of n nodes keeps: 3, or
// 5 from five nodes on.
func maxVoters(n int) int {
	if n >= 5 {
		return 5
	}
	return min(n, 3)
}

// runController does the metadata leader's duties whenever leadership,
// metadata or membership changes.
func (h *Host) runController() {
	defer h.wg.Done()
	obs := make(chan raft.Observation, 4)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	h.meta.Raft().RegisterObserver(o)
	defer h.meta.Raft().DeregisterObserver(o)
	// Grace periods expire without any event: look again regularly.
	tick := time.NewTicker(min(h.opts.DeadNodeGrace/4, 5*time.Second))
	defer tick.Stop()
	for {
		members := h.opts.Membership.Changed()
		if h.meta.IsLeader() && h.catchUp() {
			if h.meta.State().ClusterID == "" {
				h.bootstrapIdentity()
			}
			h.manageMetaVoters()
			h.manageConsumers(h.ctx)
			h.planMoves(h.ctx)
			h.advanceScaling(h.ctx)
			h.finishModeSwitches(h.ctx)
			if h.advanceReshards(h.ctx) {
				// The switch changed the metadata after this pass read
				// it: look again now (a scaling's next step) rather
				// than at the next change or tick.
				continue
			}
		} else if !h.meta.IsLeader() {
			h.caughtUp.Store(false)
		}
		select {
		case <-obs:
		case <-h.meta.Changed():
		case <-members:
		case <-tick.C:
		case <-h.ctx.Done():
			return
		}
	}
}

// catchUp makes sure a new leader has applied every entry of earlier terms
// before it acts on the state: after a restart the state is empty until the
// log is replayed.
func (h *Host) catchUp() bool {
	if h.caughtUp.Load() {
		return true
	}
	if err := h.meta.Raft().Barrier(10 * time.Second).Error(); err != nil {
		h.logger.Warn("metadata barrier failed", "err", err)
		return false
	}
	h.caughtUp.Store(true)
	return true
}

// bootstrapIdentity gives a new cluster its id and iterator signing key.
func (h *Host) bootstrapIdentity() {
	id, key := make([]byte, 8), make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		h.logger.Error("cluster identity", "err", err)
		return
	}
	if _, err := rand.Read(key); err != nil {
		h.logger.Error("cluster identity", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	cmd := Command{Bootstrap: &BootstrapCmd{ClusterID: hex.EncodeToString(id), IteratorKey: key}}
	if _, err := h.meta.Propose(ctx, cmd); err != nil {
		h.logger.Warn("cluster identity not yet stored", "err", err)
		return
	}
	h.logger.Info("cluster bootstrapped", "cluster_id", hex.EncodeToString(id))
}

// manageMetaVoters brings live members into the metadata group so that
// every node routes from a local copy: voters up to maxVoters, non-voters
// beyond.
func (h *Host) manageMetaVoters() {
	cfg, err := h.metaConfiguration()
	if err != nil {
		return
	}
	alive := h.opts.Membership.Alive()
	want := maxVoters(len(alive))
	voters := 0
	inConfig := map[string]raft.ServerSuffrage{}
	for _, s := range cfg.Servers {
		inConfig[string(s.ID)] = s.Suffrage
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	r := h.meta.Raft()
	// A voter dead past the grace period gives its seat to a live member,
	// so that the group keeps a full quorum of live voters.
	now := time.Now()
	for _, m := range h.opts.Membership.Members() {
		if m.Alive || now.Sub(m.Since) <= h.opts.DeadNodeGrace || inConfig[m.ID] != raft.Voter || m.ID == h.opts.NodeID {
			continue
		}
		spare := false
		for _, id := range alive {
			if inConfig[id] != raft.Voter {
				spare = true
			}
		}
		if !spare {
			continue
		}
		if err := r.RemoveServer(serverID(m.ID), 0, 10*time.Second).Error(); err != nil {
			h.logger.Warn("removing dead metadata voter", "node", m.ID, "err", err)
			return
		}
		delete(inConfig, m.ID)
		voters--
		h.logger.Info("dead metadata voter removed", "node", m.ID)
	}
	if !h.moveDrainingVoters(alive, inConfig) {
		return
	}
	st := h.meta.State()
	for _, id := range alive {
		suffrage, known := inConfig[id]
		switch {
		case known && suffrage == raft.Voter:
		case voters < want && !st.IsDraining(id):
			if err := r.AddVoter(serverID(id), raft.ServerAddress(id), 0, 10*time.Second).Error(); err != nil {
				h.logger.Warn("adding metadata voter", "node", id, "err", err)
				return
			}
			voters++
			h.logger.Info("metadata voter added", "node", id)
		case !known:
			if err := r.AddNonvoter(serverID(id), raft.ServerAddress(id), 0, 10*time.Second).Error(); err != nil {
				h.logger.Warn("adding metadata non-voter", "node", id, "err", err)
				return
			}
			h.logger.Info("metadata non-voter added", "node", id)
		}
	}
}

// moveDrainingVoters gives the metadata seat of each draining voter to a
// live member that is not draining and has none: the spare is made a voter
// first, then the draining node is demoted to non-voter (it keeps a local
// copy for routing). A draining leader hands its leadership over first and
// lets the next leader do it, also when no spare can take its seat. It reports false when the pass must stop.
func (h *Host) moveDrainingVoters(alive []string, inConfig map[string]raft.ServerSuffrage) bool {
	st := h.meta.State()
	r := h.meta.Raft()
	for _, id := range alive {
		if !st.IsDraining(id) || inConfig[id] != raft.Voter {
			continue
		}
		if id == h.opts.NodeID {
			// Even with no spare to take the seat, another voter leads.
			if err := r.LeadershipTransfer().Error(); err != nil {
				h.logger.Warn("handing the metadata leadership off a draining node", "err", err)
			} else {
				h.logger.Info("metadata leadership handed off this draining node")
			}
			return false
		}
		spare := ""
		for _, n := range alive {
			if !st.IsDraining(n) && inConfig[n] != raft.Voter {
				spare = n
				break
			}
		}
		if spare == "" {
			continue // nobody can take the seat: the node keeps it
		}
		if err := r.AddVoter(serverID(spare), raft.ServerAddress(spare), 0, 10*time.Second).Error(); err != nil {
			h.logger.Warn("adding metadata voter in place of a draining one", "node", spare, "err", err)
			return false
		}
		inConfig[spare] = raft.Voter
		if err := r.DemoteVoter(serverID(id), 0, 10*time.Second).Error(); err != nil {
			h.logger.Warn("demoting a draining metadata voter", "node", id, "err", err)
			return false
		}
		inConfig[id] = raft.Nonvoter
		h.logger.Info("metadata vote moved off a draining node", "from", id, "to", spare)
	}
	return true
}
