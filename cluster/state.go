package cluster

import (
	"cmp"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"time"

	"github.com/riffle-streams/riffle/shardlog"
)

// StreamStatus follows Kinesis's stream states.
type StreamStatus string

// Stream states.
const (
	StreamCreating StreamStatus = "CREATING"
	StreamActive   StreamStatus = "ACTIVE"
	StreamUpdating StreamStatus = "UPDATING"
	StreamDeleting StreamStatus = "DELETING"
)

// StreamMode is PROVISIONED (explicit shard count) or ON_DEMAND.
type StreamMode string

// Stream modes.
const (
	ModeProvisioned StreamMode = "PROVISIONED"
	ModeOnDemand    StreamMode = "ON_DEMAND"
)

// State is the replicated cluster metadata. A published State is never
// modified: the state machine copies what a command changes and swaps the
// pointer, so readers use it without locks.
type State struct {
	// ClusterID is chosen once, when the metadata group is bootstrapped.
	ClusterID string `json:"cluster_id"`
	// IteratorKey signs shard iterators so that any node can verify them.
	IteratorKey []byte `json:"iterator_key"`
	// NextStreamID numbers streams; a recreated name gets a new id, so its
	// shard groups never reuse an old stream's data.
	NextStreamID uint64             `json:"next_stream_id"`
	Streams      map[string]*Stream `json:"streams"`

	// Groups are the consumer groups by name (groups.go).
	Groups map[string]*Group `json:"groups,omitempty"`
	// LeaseCounter is the last lease counter granted, in any group: counters
	// are never reused, so a worker of a deleted group can never pass for
	// the holder of a lease in a new one of the same name.
	LeaseCounter uint64 `json:"lease_counter,omitempty"`
	// Draining holds the nodes being emptied (`riffle node drain`): the
	// controller moves their replicas away and places nothing new on them.
	// Never modified in place: a command that changes it copies it.
	Draining map[string]bool `json:"draining,omitempty"`
}

// Stream is one stream's metadata.
type Stream struct {
	Name           string            `json:"name"`
	ID             uint64            `json:"id"`
	Status         StreamStatus      `json:"status"`
	Mode           StreamMode        `json:"mode"`
	RetentionHours int               `json:"retention_hours"`
	CreatedAt      time.Time         `json:"created_at"`
	Tags           map[string]string `json:"tags,omitempty"`
	// Shards in index order; an index is never reused. Expired closed
	// shards leave the list, so look shards up with ShardByIndex.
	Shards         []*Shard `json:"shards"`
	NextShardIndex uint64   `json:"next_shard_index"`
	// Consumers are the registered enhanced fan-out consumers, in
	// registration order.
	Consumers []*Consumer `json:"consumers,omitempty"`
	// Limits override the cluster's default per-shard limits; nil fields
	// take the default of the node enforcing them.
	Limits *LimitOverrides `json:"limits,omitempty"`
	// ScalingTarget, while non-zero, is the open shard count an
	// UpdateShardCount is reaching (uniform ranges); the stream stays
	// UPDATING and the metadata leader's controller splits and merges
	// toward it.
	ScalingTarget int `json:"scaling_target,omitempty"`
	// ModeSwitching is set from an UpdateStreamMode until the metadata
	// leader confirms it (StreamModeSwitchedCmd); the stream is UPDATING.
	ModeSwitching bool `json:"mode_switching,omitempty"`
	// ScalingOps and ModeSwitches are the times of the UpdateShardCount and
	// UpdateStreamMode calls of the last 24 hours, for Kinesis's limits on
	// them.
	ScalingOps   []time.Time `json:"scaling_ops,omitempty"`
	ModeSwitches []time.Time `json:"mode_switches,omitempty"`

	// routes are the open shards in hash-range order, for ShardForHash;
	// filled when a state is published (indexRoutes), nil on a copy.
	routes []*Shard
}

// Shard is one shard's metadata.
type Shard struct {
	Index          uint64 `json:"index"`
	HashStart      string `json:"hash_start"`
	HashEnd        string `json:"hash_end"`
	Parent         string `json:"parent,omitempty"`
	AdjacentParent string `json:"adjacent_parent,omitempty"`
	// EndingSequence is set once the shard is closed: the sequence number of
	// its last record (its starting number when it closed empty).
	EndingSequence string `json:"ending_sequence,omitempty"`
	// EndOffset is the exclusive end of a closed shard: every record it
	// holds lies below it, so a reader at EndOffset has finished it.
	EndOffset uint64 `json:"end_offset,omitempty"`
	// OpenedAt is when the shard began taking writes: the stream's creation
	// for its first shards, the hash-range switch for a resharding's
	// children. Zero while pending, and for shards recorded before the field
	// existed (Stream.ShardOpenedAt reads those as the stream's creation).
	OpenedAt time.Time `json:"opened_at,omitzero"`
	// ClosedAt is when the switch closed the shard; zero while open. Like
	// every time in the metadata it comes from the command's proposer.
	ClosedAt time.Time `json:"closed_at,omitzero"`
	// Pending marks a child of a resharding in progress: its group runs and
	// elects, but it takes no writes until the parents are sealed and the
	// hash ranges switch to it (ShardsSwitchedCmd).
	Pending bool `json:"pending,omitempty"`
	// Replicas are the node ids holding the shard's raft group.
	Replicas []string `json:"replicas"`
	// Ready is set once the group has elected its first leader.
	Ready bool `json:"ready"`
	// Moving, when set, is a replica being rebuilt on another node.
	Moving *Move `json:"moving,omitempty"`
	// SealedOn are the replicas of a closed shard that have applied its
	// seal and hold every record below EndOffset durably (ReplicaSealedCmd).
	SealedOn []string `json:"sealed_on,omitempty"`
	// Frozen is set once every replica is in SealedOn with no move in
	// progress: the shard's records can never change again, so its nodes
	// stop its raft group and serve reads from the segment files alone.
	// A frozen shard's replicas are never moved through raft; a lost one
	// is copied from the others' segments instead (Copying).
	Frozen bool `json:"frozen,omitempty"`
	// Copying, when set, is a frozen shard's replica being rebuilt on
	// Copying.To from the other replicas' segments, replacing the one on
	// Copying.From (a dead node); see frozen_moves.go.
	Copying *FrozenCopy `json:"copying,omitempty"`

	hashRange HashRange // parsed from HashStart/HashEnd
}

// Move replaces replica From by To: To joins the group as a non-voter,
// catches up, and is promoted while From is removed.
type Move struct {
	From string `json:"from"`
	To   string `json:"to"`
	// CaughtUp is set when To's replica has applied what the leader
	// committed; the shard leader then promotes it.
	CaughtUp bool `json:"caught_up,omitempty"`
	// Reason is why the move was planned: MoveReasonDead, MoveReasonDrain
	// or MoveReasonBalance (empty in moves recorded before it existed).
	Reason string `json:"reason,omitempty"`
	// Cancel asks the shard leader to roll the move back: remove To from
	// the group while From is still in it (moves.go).
	Cancel bool `json:"cancel,omitempty"`
}

// ShardID formats a shard index as Kinesis does.
func ShardID(index uint64) string { return fmt.Sprintf("shardId-%012d", index) }

// ID is the shard's Kinesis id.
func (s *Shard) ID() string { return ShardID(s.Index) }

// Open reports whether the shard takes writes: not closed by a resharding,
// and not a child still waiting for its parents' seal.
func (s *Shard) Open() bool { return s.EndingSequence == "" && !s.Pending }

// Closed reports whether a resharding has closed the shard.
func (s *Shard) Closed() bool { return s.EndingSequence != "" }

// StartingSequence is the lowest sequence number the shard can hold.
func (s *Shard) StartingSequence() string { return shardlog.SequenceNumber(s.Index, 0) }

// HashRange is the parsed hash-key range.
func (s *Shard) HashRange() HashRange { return s.hashRange }

// GroupID names the shard's raft group: unique across streams and over time.
func (s *Stream) GroupID(sh *Shard) string { return fmt.Sprintf("s%d-%d", s.ID, sh.Index) }

// ARN names the stream in Kinesis's format.
func (s *Stream) ARN() string { return StreamARN(s.Name) }

// StreamARN is the ARN of a stream by name.
func StreamARN(name string) string { return "arn:aws:kinesis:local:000000000000:stream/" + name }

// ShardByID finds a shard by its Kinesis id.
func (s *Stream) ShardByID(id string) (*Shard, bool) {
	for _, sh := range s.Shards {
		if sh.ID() == id {
			return sh, true
		}
	}
	return nil, false
}

// ShardByIndex finds a shard by its index. Shards are kept in index order,
// but an expired closed shard leaves the list (ExpireShardsCmd), so an
// index is not a position in Shards.
func (s *Stream) ShardByIndex(index uint64) (*Shard, bool) {
	i, ok := slices.BinarySearchFunc(s.Shards, index, func(sh *Shard, idx uint64) int { return cmp.Compare(sh.Index, idx) })
	if !ok {
		return nil, false
	}
	return s.Shards[i], true
}

// ShardForHash finds the open shard whose range holds key: by binary
// search over the open shards once the stream's state is published, by
// a scan on a stream still being built.
func (s *Stream) ShardForHash(key *big.Int) (*Shard, bool) {
	if s.routes == nil {
		for _, sh := range s.Shards {
			if sh.Open() && sh.hashRange.Contains(key) {
				return sh, true
			}
		}
		return nil, false
	}
	// The first open shard that starts above key; the one before it is
	// the only candidate.
	i := sort.Search(len(s.routes), func(i int) bool { return s.routes[i].hashRange.Start.Cmp(key) > 0 })
	if i == 0 || !s.routes[i-1].hashRange.Contains(key) {
		return nil, false
	}
	return s.routes[i-1], true
}

// indexRoutes fills the routing index of every stream that lacks one.
// It runs before the state is published: published streams are never
// written again, and one shared with an older state has its index.
func (st *State) indexRoutes() {
	for _, s := range st.Streams {
		if s.routes != nil {
			continue
		}
		routes := make([]*Shard, 0, len(s.Shards))
		for _, sh := range s.Shards {
			if sh.Open() {
				routes = append(routes, sh)
			}
		}
		sort.Slice(routes, func(i, j int) bool { return routes[i].hashRange.Start.Cmp(routes[j].hashRange.Start) < 0 })
		s.routes = routes
	}
}

// OpenShardCount counts shards that take writes.
func (s *Stream) OpenShardCount() int {
	n := 0
	for _, sh := range s.Shards {
		if sh.Open() {
			n++
		}
	}
	return n
}

// SortedStreamNames lists stream names in order, for paging.
func (st *State) SortedStreamNames() []string {
	names := make([]string, 0, len(st.Streams))
	for n := range st.Streams {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// parse fills the derived fields after decoding.
func (sh *Shard) parse() error {
	start, err := ParseHashKey(sh.HashStart)
	if err != nil {
		return fmt.Errorf("shard %s start: %w", sh.ID(), err)
	}
	end, err := ParseHashKey(sh.HashEnd)
	if err != nil {
		return fmt.Errorf("shard %s end: %w", sh.ID(), err)
	}
	sh.hashRange = HashRange{Start: start, End: end}
	return nil
}

// clone copies a stream deeply enough for a command to change it.
func (s *Stream) clone() *Stream {
	c := *s
	c.routes = nil
	c.Shards = make([]*Shard, len(s.Shards))
	for i, sh := range s.Shards {
		shc := *sh
		shc.Replicas = append([]string(nil), sh.Replicas...)
		shc.SealedOn = append([]string(nil), sh.SealedOn...)
		if sh.Moving != nil {
			mv := *sh.Moving
			shc.Moving = &mv
		}
		if sh.Copying != nil {
			cp := *sh.Copying
			shc.Copying = &cp
		}
		c.Shards[i] = &shc
	}
	c.Consumers = make([]*Consumer, len(s.Consumers))
	for i, con := range s.Consumers {
		cc := *con
		c.Consumers[i] = &cc
	}
	return &c
}

// withStream returns a copy of st in which name maps to s (or is removed
// when s is nil). Other streams are shared, being immutable.
func (st *State) withStream(name string, s *Stream) *State {
	c := *st
	c.Streams = make(map[string]*Stream, len(st.Streams)+1)
	for k, v := range st.Streams {
		c.Streams[k] = v
	}
	if s == nil {
		delete(c.Streams, name)
	} else {
		c.Streams[name] = s
	}
	return &c
}

// StreamByID finds a stream by its id.
func (st *State) StreamByID(id uint64) (*Stream, bool) { return st.streamByID(id) }
