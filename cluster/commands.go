package cluster

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Errors of metadata commands, for callers to branch on.
var (
	ErrStreamExists   = errors.New("cluster: stream already exists")
	ErrStreamNotFound = errors.New("cluster: stream not found")
	// ErrStreamInUse: the stream's status does not allow the operation.
	ErrStreamInUse = errors.New("cluster: stream is not ACTIVE")
	// ErrInvalidCommand: the request contradicts the current metadata.
	ErrInvalidCommand = errors.New("cluster: invalid request")
	ErrNotLeader      = errors.New("cluster: not the metadata leader")
)

// Command is one change to the metadata, replicated through the metadata
// raft group. Exactly one field is set. Everything time- or placement-
// dependent is decided by the proposer and carried in the command, so every
// replica applies it identically.
type Command struct {
	Bootstrap        *BootstrapCmd        `json:"bootstrap,omitempty"`
	CreateStream     *CreateStreamCmd     `json:"create_stream,omitempty"`
	DeleteStream     *DeleteStreamCmd     `json:"delete_stream,omitempty"`
	SetRetention     *SetRetentionCmd     `json:"set_retention,omitempty"`
	ShardReady       *ShardReadyCmd       `json:"shard_ready,omitempty"`
	ReplicaStopped   *ReplicaStoppedCmd   `json:"replica_stopped,omitempty"`
	MoveReplica      *MoveReplicaCmd      `json:"move_replica,omitempty"`
	MoveCaughtUp     *MoveCaughtUpCmd     `json:"move_caught_up,omitempty"`
	MoveDone         *MoveDoneCmd         `json:"move_done,omitempty"`
	SplitShard       *SplitShardCmd       `json:"split_shard,omitempty"`
	MergeShards      *MergeShardsCmd      `json:"merge_shards,omitempty"`
	ShardsSwitched   *ShardsSwitchedCmd   `json:"shards_switched,omitempty"`
	UpdateShardCount *UpdateShardCountCmd `json:"update_shard_count,omitempty"`
	ScaleStep        *ScaleStepCmd        `json:"scale_step,omitempty"`
	ReplicaSealed    *ReplicaSealedCmd    `json:"replica_sealed,omitempty"`
	ExpireShards     *ExpireShardsCmd     `json:"expire_shards,omitempty"`
	CopyFrozen       *CopyFrozenCmd       `json:"copy_frozen,omitempty"`
	FrozenCopied     *FrozenCopiedCmd     `json:"frozen_copied,omitempty"`
	SetDraining      *SetDrainingCmd      `json:"set_draining,omitempty"`
	CancelMove       *CancelMoveCmd       `json:"cancel_move,omitempty"`
	MoveAborted      *MoveAbortedCmd      `json:"move_aborted,omitempty"`

	UpdateStreamMode   *UpdateStreamModeCmd   `json:"update_stream_mode,omitempty"`
	StreamModeSwitched *StreamModeSwitchedCmd `json:"stream_mode_switched,omitempty"`

	RegisterConsumer   *RegisterConsumerCmd   `json:"register_consumer,omitempty"`
	DeregisterConsumer *DeregisterConsumerCmd `json:"deregister_consumer,omitempty"`
	ConsumerStatus     *ConsumerStatusCmd     `json:"consumer_status,omitempty"`

	Tags *TagsCmd `json:"tags,omitempty"`

	CreateGroup     *CreateGroupCmd     `json:"create_group,omitempty"`
	DeleteGroup     *DeleteGroupCmd     `json:"delete_group,omitempty"`
	AssignLeases    *AssignLeasesCmd    `json:"assign_leases,omitempty"`
	GroupCheckpoint *GroupCheckpointCmd `json:"group_checkpoint,omitempty"`
	ReleaseLeases   *ReleaseLeasesCmd   `json:"release_leases,omitempty"`
}

// MoveReplicaCmd starts rebuilding a shard's replica on another node.
type MoveReplicaCmd struct {
	StreamID   uint64 `json:"stream_id"`
	ShardIndex uint64 `json:"shard_index"`
	From       string `json:"from"`
	To         string `json:"to"`
	// Reason says why the move was planned (MoveReason*), for logs and
	// progress reports.
	Reason string `json:"reason,omitempty"`
}

// MoveCaughtUpCmd records that the new replica of a move has caught up.
type MoveCaughtUpCmd struct {
	StreamID   uint64 `json:"stream_id"`
	ShardIndex uint64 `json:"shard_index"`
	To         string `json:"to"`
}

// MoveDoneCmd records that the shard's raft group made To a voter and
// removed From: the replica list changes accordingly.
type MoveDoneCmd struct {
	StreamID   uint64 `json:"stream_id"`
	ShardIndex uint64 `json:"shard_index"`
	To         string `json:"to"`
}

// BootstrapCmd sets the cluster identity once; later ones are ignored.
type BootstrapCmd struct {
	ClusterID   string `json:"cluster_id"`
	IteratorKey []byte `json:"iterator_key"`
}

// CreateStreamCmd creates a stream in CREATING with evenly split shards.
type CreateStreamCmd struct {
	Name           string            `json:"name"`
	ShardCount     int               `json:"shard_count"`
	Mode           StreamMode        `json:"mode"`
	RetentionHours int               `json:"retention_hours"`
	CreatedAt      time.Time         `json:"created_at"`
	Tags           map[string]string `json:"tags,omitempty"`
	// Limits override the cluster's default limits for this stream.
	Limits *LimitOverrides `json:"limits,omitempty"`
	// Placement[i] lists the nodes holding shard i.
	Placement [][]string `json:"placement"`
}

// DeleteStreamCmd moves a stream to DELETING; it disappears once every
// replica has stopped.
type DeleteStreamCmd struct {
	Name string `json:"name"`
	// EnforceConsumerDeletion deletes a stream that has registered
	// consumers; without it such a stream is refused (ErrStreamHasConsumers).
	EnforceConsumerDeletion bool `json:"enforce_consumer_deletion,omitempty"`
}

// SetRetentionCmd changes the retention period. Increase says which Kinesis
// operation asked, so that one in the wrong direction is refused.
type SetRetentionCmd struct {
	Name     string `json:"name"`
	Hours    int    `json:"hours"`
	Increase bool   `json:"increase"`
}

// ShardReadyCmd records that a shard's group has elected a leader; a
// CREATING stream turns ACTIVE once all its shards are ready.
type ShardReadyCmd struct {
	StreamID   uint64 `json:"stream_id"`
	ShardIndex uint64 `json:"shard_index"`
}

// ReplicaStoppedCmd records that a node stopped and removed a replica of a
// deleted stream.
type ReplicaStoppedCmd struct {
	StreamID   uint64 `json:"stream_id"`
	ShardIndex uint64 `json:"shard_index"`
	Node       string `json:"node"`
}

// Retention bounds in hours (DESIGN.md).
const (
	MinRetentionHours = 24
	MaxRetentionHours = 8760
)

// apply returns the state after cmd, or an error and st unchanged.
func (st *State) apply(cmd *Command) (*State, error) {
	switch {
	case cmd.Bootstrap != nil:
		if st.ClusterID != "" {
			return st, nil
		}
		c := *st
		c.ClusterID, c.IteratorKey = cmd.Bootstrap.ClusterID, cmd.Bootstrap.IteratorKey
		return &c, nil
	case cmd.CreateStream != nil:
		return st.createStream(cmd.CreateStream)
	case cmd.DeleteStream != nil:
		return st.deleteStream(cmd.DeleteStream)
	case cmd.SetRetention != nil:
		return st.setRetention(cmd.SetRetention)
	case cmd.ShardReady != nil:
		return st.shardReady(cmd.ShardReady)
	case cmd.ReplicaStopped != nil:
		return st.replicaStopped(cmd.ReplicaStopped)
	case cmd.MoveReplica != nil:
		return st.moveReplica(cmd.MoveReplica)
	case cmd.MoveCaughtUp != nil:
		return st.moveCaughtUp(cmd.MoveCaughtUp)
	case cmd.MoveDone != nil:
		return st.moveDone(cmd.MoveDone)
	case cmd.SplitShard != nil:
		return st.splitShard(cmd.SplitShard)
	case cmd.MergeShards != nil:
		return st.mergeShards(cmd.MergeShards)
	case cmd.ShardsSwitched != nil:
		return st.shardsSwitched(cmd.ShardsSwitched)
	case cmd.UpdateShardCount != nil:
		return st.updateShardCount(cmd.UpdateShardCount)
	case cmd.ScaleStep != nil:
		return st.scaleStep(cmd.ScaleStep)
	case cmd.ReplicaSealed != nil:
		return st.replicaSealed(cmd.ReplicaSealed)
	case cmd.ExpireShards != nil:
		return st.expireShards(cmd.ExpireShards)
	case cmd.CopyFrozen != nil:
		return st.copyFrozen(cmd.CopyFrozen)
	case cmd.FrozenCopied != nil:
		return st.frozenCopied(cmd.FrozenCopied)
	case cmd.SetDraining != nil:
		return st.setDraining(cmd.SetDraining)
	case cmd.CancelMove != nil:
		return st.cancelMove(cmd.CancelMove)
	case cmd.MoveAborted != nil:
		return st.moveAborted(cmd.MoveAborted)
	case cmd.UpdateStreamMode != nil:
		return st.updateStreamMode(cmd.UpdateStreamMode)
	case cmd.StreamModeSwitched != nil:
		return st.streamModeSwitched(cmd.StreamModeSwitched)
	case cmd.RegisterConsumer != nil:
		return st.registerConsumer(cmd.RegisterConsumer)
	case cmd.DeregisterConsumer != nil:
		return st.deregisterConsumer(cmd.DeregisterConsumer)
	case cmd.ConsumerStatus != nil:
		return st.consumerStatus(cmd.ConsumerStatus)
	case cmd.Tags != nil:
		return st.setTags(cmd.Tags)
	case cmd.CreateGroup != nil:
		return st.createGroup(cmd.CreateGroup)
	case cmd.DeleteGroup != nil:
		return st.deleteGroup(cmd.DeleteGroup)
	case cmd.AssignLeases != nil:
		return st.assignLeases(cmd.AssignLeases)
	case cmd.GroupCheckpoint != nil:
		return st.groupCheckpoint(cmd.GroupCheckpoint)
	case cmd.ReleaseLeases != nil:
		return st.releaseLeases(cmd.ReleaseLeases)
	}
	return st, fmt.Errorf("%w: empty command", ErrInvalidCommand)
}

func (st *State) createStream(c *CreateStreamCmd) (*State, error) {
	if _, ok := st.Streams[c.Name]; ok {
		return st, fmt.Errorf("%w: %s", ErrStreamExists, c.Name)
	}
	if len(c.Placement) != c.ShardCount {
		return st, fmt.Errorf("%w: placement for %d shards, want %d", ErrInvalidCommand, len(c.Placement), c.ShardCount)
	}
	ranges, err := EvenRanges(c.ShardCount)
	if err != nil {
		return st, fmt.Errorf("%w: %v", ErrInvalidCommand, err)
	}
	s := &Stream{
		Name: c.Name, ID: st.NextStreamID + 1, Status: StreamCreating, Mode: c.Mode,
		RetentionHours: c.RetentionHours, CreatedAt: c.CreatedAt, Tags: c.Tags,
		NextShardIndex: uint64(c.ShardCount), Limits: c.Limits,
	}
	for i, r := range ranges {
		sh := &Shard{Index: uint64(i), HashStart: r.Start.String(), HashEnd: r.End.String(), OpenedAt: c.CreatedAt,
			Replicas: append([]string(nil), c.Placement[i]...), hashRange: r}
		s.Shards = append(s.Shards, sh)
	}
	next := st.withStream(c.Name, s)
	next.NextStreamID = s.ID
	return next, nil
}

func (st *State) deleteStream(c *DeleteStreamCmd) (*State, error) {
	s, ok := st.Streams[c.Name]
	if !ok {
		return st, fmt.Errorf("%w: %s", ErrStreamNotFound, c.Name)
	}
	if s.Status == StreamDeleting {
		return st, nil
	}
	if len(s.Consumers) > 0 && !c.EnforceConsumerDeletion {
		return st, fmt.Errorf("%w: %s has %d; deregister them or set enforce_consumer_deletion", ErrStreamHasConsumers, c.Name, len(s.Consumers))
	}
	s = s.clone()
	s.Status = StreamDeleting
	s.Consumers = nil
	return st.withStream(c.Name, s), nil
}

func (st *State) setRetention(c *SetRetentionCmd) (*State, error) {
	s, ok := st.Streams[c.Name]
	if !ok {
		return st, fmt.Errorf("%w: %s", ErrStreamNotFound, c.Name)
	}
	if s.Status != StreamActive {
		return st, fmt.Errorf("%w: %s is %s", ErrStreamInUse, c.Name, s.Status)
	}
	if c.Hours < MinRetentionHours || c.Hours > MaxRetentionHours {
		return st, fmt.Errorf("%w: retention %d hours is outside [%d, %d]", ErrInvalidCommand, c.Hours, MinRetentionHours, MaxRetentionHours)
	}
	if c.Increase && c.Hours < s.RetentionHours {
		return st, fmt.Errorf("%w: retention %d hours is below the current %d; use DecreaseStreamRetentionPeriod", ErrInvalidCommand, c.Hours, s.RetentionHours)
	}
	if !c.Increase && c.Hours > s.RetentionHours {
		return st, fmt.Errorf("%w: retention %d hours is above the current %d; use IncreaseStreamRetentionPeriod", ErrInvalidCommand, c.Hours, s.RetentionHours)
	}
	s = s.clone()
	s.RetentionHours = c.Hours
	return st.withStream(c.Name, s), nil
}

// streamByID finds a stream by id; ids are never reused.
func (st *State) streamByID(id uint64) (*Stream, bool) {
	for _, s := range st.Streams {
		if s.ID == id {
			return s, true
		}
	}
	return nil, false
}

func (st *State) shardReady(c *ShardReadyCmd) (*State, error) {
	s, ok := st.streamByID(c.StreamID)
	if !ok {
		return st, nil
	}
	if sh, found := s.ShardByIndex(c.ShardIndex); !found || sh.Ready {
		return st, nil // stale report: nothing to do
	}
	s = s.clone()
	sh, _ := s.ShardByIndex(c.ShardIndex)
	sh.Ready = true
	if s.Status == StreamCreating {
		all := true
		for _, sh := range s.Shards {
			all = all && sh.Ready
		}
		if all {
			s.Status = StreamActive
		}
	}
	return st.withStream(s.Name, s), nil
}

func (st *State) replicaStopped(c *ReplicaStoppedCmd) (*State, error) {
	s, ok := st.streamByID(c.StreamID)
	if !ok || s.Status != StreamDeleting {
		return st, nil
	}
	if _, found := s.ShardByIndex(c.ShardIndex); !found {
		return st, nil
	}
	s = s.clone()
	sh, _ := s.ShardByIndex(c.ShardIndex)
	kept := sh.Replicas[:0]
	for _, n := range sh.Replicas {
		if n != c.Node {
			kept = append(kept, n)
		}
	}
	sh.Replicas = kept
	for _, sh := range s.Shards {
		if len(sh.Replicas) > 0 {
			return st.withStream(s.Name, s), nil
		}
	}
	return st.withStream(s.Name, nil), nil
}

// shardForMove finds a stream's shard for a move command.
func (st *State) shardForMove(streamID, index uint64) (*Stream, *Shard, error) {
	s, ok := st.streamByID(streamID)
	if !ok {
		return nil, nil, fmt.Errorf("%w: shard %d of stream %d", ErrStreamNotFound, index, streamID)
	}
	if _, found := s.ShardByIndex(index); !found {
		return nil, nil, fmt.Errorf("%w: shard %d of stream %d", ErrStreamNotFound, index, streamID)
	}
	s = s.clone()
	sh, _ := s.ShardByIndex(index)
	return s, sh, nil
}

func (st *State) moveReplica(c *MoveReplicaCmd) (*State, error) {
	s, sh, err := st.shardForMove(c.StreamID, c.ShardIndex)
	if err != nil {
		return st, err
	}
	switch {
	case sh.Moving != nil:
		return st, fmt.Errorf("%w: %s is already moving a replica", ErrInvalidCommand, sh.ID())
	case sh.Frozen:
		return st, fmt.Errorf("%w: %s is frozen: its replicas run no raft group to move", ErrInvalidCommand, sh.ID())
	case !slices.Contains(sh.Replicas, c.From):
		return st, fmt.Errorf("%w: %s has no replica on %s", ErrInvalidCommand, sh.ID(), c.From)
	case slices.Contains(sh.Replicas, c.To):
		return st, fmt.Errorf("%w: %s already has a replica on %s", ErrInvalidCommand, sh.ID(), c.To)
	}
	sh.Moving = &Move{From: c.From, To: c.To, Reason: c.Reason}
	return st.withStream(s.Name, s), nil
}

func (st *State) moveCaughtUp(c *MoveCaughtUpCmd) (*State, error) {
	s, sh, err := st.shardForMove(c.StreamID, c.ShardIndex)
	if err != nil || sh.Moving == nil || sh.Moving.To != c.To || sh.Moving.CaughtUp {
		return st, nil // stale report
	}
	sh.Moving.CaughtUp = true
	return st.withStream(s.Name, s), nil
}

func (st *State) moveDone(c *MoveDoneCmd) (*State, error) {
	s, sh, err := st.shardForMove(c.StreamID, c.ShardIndex)
	if err != nil || sh.Moving == nil || sh.Moving.To != c.To {
		return st, nil
	}
	for i, n := range sh.Replicas {
		if n == sh.Moving.From {
			sh.Replicas[i] = sh.Moving.To
		}
	}
	sh.Moving = nil
	sh.Frozen = sh.frozenNow()
	return st.withStream(s.Name, s), nil
}
