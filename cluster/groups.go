package cluster

import (
	"errors"
	"fmt"
	"time"

	"github.com/riffle-streams/riffle/shardlog"
)

// Consumer groups (docs/consumer-groups.md): what Amazon's KCL keeps in a
// DynamoDB table, leases and checkpoints per shard, lives here in the
// metadata. Only changes of hands and checkpoints are commands; heartbeats
// stay in the metadata leader's memory (group_coordinator.go).

// ShardEndCheckpoint is the checkpoint of a closed shard processed to its
// end. A shard's children are assigned once their parents have it.
const ShardEndCheckpoint = "SHARD_END"

// Lease durations of a group.
const (
	DefaultGroupLeaseDuration = 10 * time.Second
	MinGroupLeaseDuration     = time.Second
	MaxGroupLeaseDuration     = 10 * time.Minute
)

// Errors of consumer-group commands.
var (
	ErrGroupNotFound = errors.New("cluster: consumer group not found")
	ErrGroupExists   = errors.New("cluster: consumer group already exists")
	// ErrLeaseLost: the caller does not hold the lease it names (another
	// worker took it, or its counter is stale); it must stop processing
	// the shard.
	ErrLeaseLost = errors.New("cluster: lease lost")
)

// Group is one consumer group: a set of workers sharing one stream's
// shards, with a lease and a checkpoint per shard.
type Group struct {
	Name     string `json:"name"`
	Stream   string `json:"stream"`
	StreamID uint64 `json:"stream_id"`
	// LeaseDuration is how long a worker may go without a heartbeat before
	// its leases are given to others.
	LeaseDuration time.Duration `json:"lease_duration"`
	CreatedAt     time.Time     `json:"created_at"`
	// Leases by shard id: every shard that has ever been assigned.
	Leases map[string]*Lease `json:"leases,omitempty"`
}

// Lease is a group's lease on one shard.
type Lease struct {
	// Owner is the worker holding the lease; empty when free.
	Owner string `json:"owner,omitempty"`
	// Counter changes at every change of hands (State.LeaseCounter); a
	// checkpoint must name the current one.
	Counter uint64 `json:"counter,omitempty"`
	// Checkpoint is the last sequence number processed, ShardEndCheckpoint,
	// or empty.
	Checkpoint string `json:"checkpoint,omitempty"`
	// HandoverTo is the worker the leader moves the lease to once Owner
	// releases it (or once Owner has ignored the request for a lease
	// duration).
	HandoverTo string `json:"handover_to,omitempty"`
}

// Finished reports whether the lease's shard was processed to its end.
func (l *Lease) Finished() bool { return l != nil && l.Checkpoint == ShardEndCheckpoint }

func (g *Group) clone() *Group {
	c := *g
	c.Leases = make(map[string]*Lease, len(g.Leases))
	for id, l := range g.Leases {
		lc := *l
		c.Leases[id] = &lc
	}
	return &c
}

// withGroup returns a copy of st in which name maps to g (or is removed
// when g is nil).
func (st *State) withGroup(name string, g *Group) *State {
	c := *st
	c.Groups = make(map[string]*Group, len(st.Groups)+1)
	for k, v := range st.Groups {
		c.Groups[k] = v
	}
	if g == nil {
		delete(c.Groups, name)
	} else {
		c.Groups[name] = g
	}
	return &c
}

// CreateGroupCmd creates a consumer group of a stream.
type CreateGroupCmd struct {
	Name          string        `json:"name"`
	Stream        string        `json:"stream"`
	LeaseDuration time.Duration `json:"lease_duration"`
	CreatedAt     time.Time     `json:"created_at"`
}

// DeleteGroupCmd removes a group with its leases and checkpoints.
type DeleteGroupCmd struct {
	Name string `json:"name"`
}

// LeaseChange is one change of AssignLeasesCmd. Counter is the lease's
// counter when the leader decided (0 for a shard never leased): a change
// planned on an older state is refused.
type LeaseChange struct {
	Shard   string `json:"shard"`
	Counter uint64 `json:"counter"`
	Owner   string `json:"owner"`
	// Handover asks the current owner to release the lease to Owner (or,
	// with Owner empty, cancels such a request) instead of granting it.
	Handover bool `json:"handover,omitempty"`
}

// AssignLeasesCmd applies the metadata leader's assignment decisions, all
// or none.
type AssignLeasesCmd struct {
	Group   string        `json:"group"`
	Changes []LeaseChange `json:"changes"`
}

// GroupCheckpointCmd records a checkpoint by the lease holder.
type GroupCheckpointCmd struct {
	Group    string `json:"group"`
	Shard    string `json:"shard"`
	Worker   string `json:"worker"`
	Counter  uint64 `json:"counter"`
	Sequence string `json:"sequence"`
}

// LeaseRef names a lease held by a worker.
type LeaseRef struct {
	Shard   string `json:"shard"`
	Counter uint64 `json:"counter"`
}

// ReleaseLeasesCmd gives leases up: those listed, or with All every lease
// the worker holds (it leaves the group).
type ReleaseLeasesCmd struct {
	Group  string     `json:"group"`
	Worker string     `json:"worker"`
	Leases []LeaseRef `json:"leases,omitempty"`
	All    bool       `json:"all,omitempty"`
}

func (st *State) createGroup(c *CreateGroupCmd) (*State, error) {
	if _, ok := st.Groups[c.Name]; ok {
		return st, fmt.Errorf("%w: %s", ErrGroupExists, c.Name)
	}
	s, ok := st.Streams[c.Stream]
	if !ok || s.Status == StreamDeleting {
		return st, fmt.Errorf("%w: %s", ErrStreamNotFound, c.Stream)
	}
	if c.LeaseDuration < MinGroupLeaseDuration || c.LeaseDuration > MaxGroupLeaseDuration {
		return st, fmt.Errorf("%w: lease duration %v is outside [%v, %v]", ErrInvalidCommand, c.LeaseDuration, MinGroupLeaseDuration, MaxGroupLeaseDuration)
	}
	g := &Group{Name: c.Name, Stream: s.Name, StreamID: s.ID, LeaseDuration: c.LeaseDuration, CreatedAt: c.CreatedAt,
		Leases: map[string]*Lease{}}
	return st.withGroup(c.Name, g), nil
}

func (st *State) deleteGroup(c *DeleteGroupCmd) (*State, error) {
	if _, ok := st.Groups[c.Name]; !ok {
		return st, fmt.Errorf("%w: %s", ErrGroupNotFound, c.Name)
	}
	return st.withGroup(c.Name, nil), nil
}

func (st *State) group(name string) (*Group, error) {
	g, ok := st.Groups[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrGroupNotFound, name)
	}
	return g, nil
}

func (st *State) assignLeases(c *AssignLeasesCmd) (*State, error) {
	g, err := st.group(c.Group)
	if err != nil {
		return st, err
	}
	for _, ch := range c.Changes {
		var cur uint64
		if l := g.Leases[ch.Shard]; l != nil {
			cur = l.Counter
		}
		if cur != ch.Counter {
			return st, fmt.Errorf("%w: assignment of %s planned at lease counter %d, now %d", ErrInvalidCommand, ch.Shard, ch.Counter, cur)
		}
	}
	g = g.clone()
	next := *st
	for _, ch := range c.Changes {
		l := g.Leases[ch.Shard]
		if l == nil {
			l = &Lease{}
			g.Leases[ch.Shard] = l
		}
		if ch.Handover {
			l.HandoverTo = ch.Owner
			continue
		}
		next.LeaseCounter++
		l.Owner, l.Counter, l.HandoverTo = ch.Owner, next.LeaseCounter, ""
	}
	return next.withGroup(g.Name, g), nil
}

// heldLease finds the lease worker holds on shard with counter.
func (g *Group) heldLease(shard, worker string, counter uint64) (*Lease, error) {
	l := g.Leases[shard]
	if l == nil || l.Owner != worker || l.Counter != counter || worker == "" {
		owner, current := "", uint64(0)
		if l != nil {
			owner, current = l.Owner, l.Counter
		}
		return nil, fmt.Errorf("%w: %s of group %s: worker %q with counter %d does not hold it (owner %q, counter %d)",
			ErrLeaseLost, shard, g.Name, worker, counter, owner, current)
	}
	return l, nil
}

func (st *State) groupCheckpoint(c *GroupCheckpointCmd) (*State, error) {
	g, err := st.group(c.Group)
	if err != nil {
		return st, err
	}
	if _, err := g.heldLease(c.Shard, c.Worker, c.Counter); err != nil {
		return st, err
	}
	if c.Sequence == ShardEndCheckpoint {
		s, ok := st.streamByID(g.StreamID)
		if ok {
			if sh, ok := s.ShardByID(c.Shard); ok && !sh.Closed() {
				return st, fmt.Errorf("%w: %s is open: it has no end to checkpoint", ErrInvalidCommand, c.Shard)
			}
		}
	} else if index, _, err := shardlog.ParseSequenceNumber(c.Sequence); err != nil {
		return st, fmt.Errorf("%w: checkpoint %q: %v", ErrInvalidCommand, c.Sequence, err)
	} else if ShardID(index) != c.Shard {
		return st, fmt.Errorf("%w: checkpoint %s is a sequence number of %s, not of %s", ErrInvalidCommand, c.Sequence, ShardID(index), c.Shard)
	}
	g = g.clone()
	g.Leases[c.Shard].Checkpoint = c.Sequence
	return st.withGroup(g.Name, g), nil
}

func (st *State) releaseLeases(c *ReleaseLeasesCmd) (*State, error) {
	g, err := st.group(c.Group)
	if err != nil {
		return st, err
	}
	if !c.All {
		for _, r := range c.Leases {
			if _, err := g.heldLease(r.Shard, c.Worker, r.Counter); err != nil {
				return st, err
			}
		}
	}
	g = g.clone()
	next := *st
	for shard, l := range g.Leases {
		held := l.Owner == c.Worker
		if !c.All {
			held = false
			for _, r := range c.Leases {
				held = held || r.Shard == shard
			}
		}
		if l.HandoverTo == c.Worker && c.All {
			l.HandoverTo = "" // a leaving worker takes nothing over
		}
		if !held {
			continue
		}
		next.LeaseCounter++
		l.Owner, l.Counter, l.HandoverTo = l.HandoverTo, next.LeaseCounter, ""
	}
	return next.withGroup(g.Name, g), nil
}

// ParentsFinished reports whether every parent of sh that the stream still
// has was processed to its end by the group: only then may sh be read
// without breaking per-key order.
func (g *Group) ParentsFinished(s *Stream, sh *Shard) bool {
	for _, p := range []string{sh.Parent, sh.AdjacentParent} {
		if p == "" {
			continue
		}
		if _, ok := s.ShardByID(p); !ok {
			continue // gone with retention: nothing of it left to read
		}
		if !g.Leases[p].Finished() {
			return false
		}
	}
	return true
}

// assignable lists the shards of s the group may process now, in index
// order: not pending, not finished, parents finished.
func (g *Group) assignable(s *Stream) []string {
	var ids []string
	for _, sh := range s.Shards {
		if sh.Pending || g.Leases[sh.ID()].Finished() || !g.ParentsFinished(s, sh) {
			continue
		}
		ids = append(ids, sh.ID())
	}
	return ids
}
