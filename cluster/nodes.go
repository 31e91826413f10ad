package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/hashicorp/raft"
)

// Errors of node operations, for callers to branch on.
var (
	// ErrNodeNotFound: no member and no replica has this node id.
	ErrNodeNotFound = errors.New("cluster: node not found")
	// ErrDrainRefused: draining the node would leave too few nodes to hold
	// every shard's replicas (or none at all). It is an ErrInvalidCommand,
	// so that it keeps its meaning when forwarded from the metadata leader.
	ErrDrainRefused = fmt.Errorf("%w: drain refused", ErrInvalidCommand)
)

// SetDrainingCmd marks a node draining (its replicas move away and it takes
// no new ones) or lets it take replicas again.
type SetDrainingCmd struct {
	Node     string `json:"node"`
	Draining bool   `json:"draining"`
	// Alive are the live members as the proposer saw them: a drain must
	// leave enough of them, not draining, to hold every shard's replicas.
	// Checked when applied, so two drains at once cannot both pass.
	Alive []string `json:"alive,omitempty"`
}

// CancelMoveCmd asks the shard leader to roll a move back (Move.Cancel).
type CancelMoveCmd struct {
	StreamID   uint64 `json:"stream_id"`
	ShardIndex uint64 `json:"shard_index"`
	To         string `json:"to"`
}

// MoveAbortedCmd records that a cancelled move was rolled back: To is not
// in the shard's group and the replica list is unchanged.
type MoveAbortedCmd struct {
	StreamID   uint64 `json:"stream_id"`
	ShardIndex uint64 `json:"shard_index"`
	To         string `json:"to"`
}

// IsDraining reports whether node is being drained.
func (st *State) IsDraining(node string) bool { return st.Draining[node] }

// ReplicationFactor is the most replicas any live shard has: the number of
// nodes a drain must leave.
func (st *State) ReplicationFactor() int {
	rf := 0
	for _, s := range st.Streams {
		if s.Status == StreamDeleting {
			continue
		}
		for _, sh := range s.Shards {
			if !sh.Frozen {
				rf = max(rf, len(sh.Replicas))
			}
		}
	}
	return rf
}

func (st *State) setDraining(c *SetDrainingCmd) (*State, error) {
	if c.Node == "" {
		return st, fmt.Errorf("%w: empty node id", ErrInvalidCommand)
	}
	if st.Draining[c.Node] == c.Draining {
		return st, nil
	}
	if c.Draining {
		left := 0
		for _, n := range c.Alive {
			if n != c.Node && !st.Draining[n] {
				left++
			}
		}
		switch rf := st.ReplicationFactor(); {
		case left == 0:
			return st, fmt.Errorf("%w: %s is the last node that is alive and not draining", ErrDrainRefused, c.Node)
		case left < rf:
			return st, fmt.Errorf("%w: draining %s would leave %d nodes for shards of %d replicas", ErrDrainRefused, c.Node, left, rf)
		}
	}
	next := *st
	next.Draining = map[string]bool{}
	for n, d := range st.Draining {
		next.Draining[n] = d
	}
	if c.Draining {
		next.Draining[c.Node] = true
	} else {
		delete(next.Draining, c.Node)
	}
	return &next, nil
}

func (st *State) cancelMove(c *CancelMoveCmd) (*State, error) {
	s, sh, err := st.shardForMove(c.StreamID, c.ShardIndex)
	if err != nil || sh.Moving == nil || sh.Moving.To != c.To || sh.Moving.Cancel {
		return st, nil // finished or cancelled meanwhile
	}
	sh.Moving.Cancel = true
	return st.withStream(s.Name, s), nil
}

func (st *State) moveAborted(c *MoveAbortedCmd) (*State, error) {
	s, sh, err := st.shardForMove(c.StreamID, c.ShardIndex)
	if err != nil || sh.Moving == nil || sh.Moving.To != c.To {
		return st, nil
	}
	sh.Moving = nil
	sh.Frozen = sh.frozenNow()
	return st.withStream(s.Name, s), nil
}

// NodeStatus is one node as the cluster sees it: gossip for liveness and
// address, the metadata for replicas, drains and moves.
type NodeStatus struct {
	ID       string
	GRPCAddr string
	Alive    bool
	Draining bool
	// Replicas counts the shard replicas placed on the node, frozen ones
	// included; Movable counts those a drain moves (shards not frozen).
	Replicas, Movable int
	// MovesIn and MovesOut count moves in flight onto and off the node.
	MovesIn, MovesOut int
	// MetaRole is the node's part in the metadata group: leader, voter,
	// nonvoter or none.
	MetaRole string
}

// Drained reports whether a draining node holds nothing a drain moves. Its
// metadata vote moves only when another node can take it, so a voter can
// be drained.
func (n NodeStatus) Drained() bool {
	return n.Draining && n.Movable == 0 && n.MovesOut == 0 && n.MetaRole != MetaRoleLeader
}

// Metadata roles of NodeStatus.MetaRole.
const (
	MetaRoleLeader   = "leader"
	MetaRoleVoter    = "voter"
	MetaRoleNonvoter = "nonvoter"
	MetaRoleNone     = "none"
)

// Nodes lists every node gossip has seen or the metadata places replicas
// on, sorted by id.
func (h *Host) Nodes() []NodeStatus {
	st := h.meta.State()
	byID := map[string]*NodeStatus{}
	get := func(id string) *NodeStatus {
		n := byID[id]
		if n == nil {
			n = &NodeStatus{ID: id, MetaRole: MetaRoleNone}
			byID[id] = n
		}
		return n
	}
	for _, m := range h.opts.Membership.Members() {
		n := get(m.ID)
		n.Alive, n.GRPCAddr = m.Alive, m.GRPCAddr
	}
	for id := range st.Draining {
		get(id).Draining = true
	}
	for _, s := range st.Streams {
		if s.Status == StreamDeleting {
			continue
		}
		for _, sh := range s.Shards {
			for _, r := range sh.Replicas {
				n := get(r)
				n.Replicas++
				if !sh.Frozen {
					n.Movable++
				}
			}
			if mv := sh.Moving; mv != nil {
				get(mv.To).MovesIn++
				get(mv.From).MovesOut++
			}
		}
	}
	if cfg, err := h.metaConfiguration(); err == nil {
		leader := h.metaLeaderID()
		for _, srv := range cfg.Servers {
			n := get(string(srv.ID))
			switch {
			case string(srv.ID) == leader:
				n.MetaRole = MetaRoleLeader
			case srv.Suffrage == raft.Voter:
				n.MetaRole = MetaRoleVoter
			default:
				n.MetaRole = MetaRoleNonvoter
			}
		}
	}
	out := make([]NodeStatus, 0, len(byID))
	for _, n := range byID {
		out = append(out, *n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Node describes one node (ErrNodeNotFound for an id nobody knows).
func (h *Host) Node(id string) (NodeStatus, error) {
	for _, n := range h.Nodes() {
		if n.ID == id {
			return n, nil
		}
	}
	return NodeStatus{}, fmt.Errorf("%w: %s", ErrNodeNotFound, id)
}

// DrainNode marks a node draining: the metadata leader moves its replicas,
// shard leaderships and metadata vote to other nodes. Refused with
// ErrDrainRefused when too few other nodes would be left.
func (h *Host) DrainNode(ctx context.Context, id string) error {
	if _, err := h.Node(id); err != nil {
		return err
	}
	return h.ProposeMeta(ctx, Command{SetDraining: &SetDrainingCmd{Node: id, Draining: true, Alive: h.opts.Membership.Alive()}})
}

// UndrainNode lets a draining node take replicas again; moves in flight
// finish, and balancing brings replicas back.
func (h *Host) UndrainNode(ctx context.Context, id string) error {
	if _, err := h.Node(id); err != nil {
		return err
	}
	return h.ProposeMeta(ctx, Command{SetDraining: &SetDrainingCmd{Node: id, Draining: false}})
}

// placementNodes are the nodes new replicas go to: alive and not draining
// (all alive ones if every one is draining, so creation still works). Absent
// are the members gossip knows but does not count alive now, and that are
// not draining: they fill a new shard's replica set when too few nodes are
// alive (place).
func (h *Host) placementNodes(st *State) (nodes, absent []string) {
	alive := h.opts.Membership.Alive()
	nodes = slices.DeleteFunc(slices.Clone(alive), st.IsDraining)
	if len(nodes) == 0 {
		nodes = alive
	}
	for _, m := range h.opts.Membership.Members() {
		if !m.Alive && !st.IsDraining(m.ID) {
			absent = append(absent, m.ID)
		}
	}
	return nodes, absent
}

// replicationFactor is how many replicas a new shard gets, when the
// cluster has that many nodes.
const replicationFactor = 3

// place chooses the replicas of n new shards: replicationFactor of the
// placement nodes, spread by load, and when fewer are alive, absent members
// for the rest. A shard placed during a fault thus keeps its full
// replication: its group runs on the live majority, and the absent
// replica starts and catches up when its node returns (or is rebuilt
// elsewhere once that node is dead past the grace period). Placing it on
// the live nodes alone would leave it with two replicas (or one) for
// good: a fault run's split during a partition did that. With a majority
// absent the new shard has no leader until one returns: unavailable
// rather than acknowledging writes on fewer replicas than asked.
func (h *Host) place(st *State, n int) [][]string {
	nodes, absent := h.placementNodes(st)
	return placeFilling(nodes, absent, st.Load(), n)
}

// placeFilling is place's choice: from nodes, then from absent when nodes
// are fewer than replicationFactor. The first replica, the preferred
// leader, is always one of nodes.
func placeFilling(nodes, absent []string, load Load, n int) [][]string {
	out := PlaceReplicas(nodes, load, n, replicationFactor)
	if missing := replicationFactor - len(nodes); missing > 0 && len(absent) > 0 {
		fill := PlaceReplicas(absent, load, n, missing)
		for i := range out {
			out[i] = append(out[i], fill[i]...)
		}
	}
	return out
}
