package gateway

import (
	"context"
	"errors"
	"regexp"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Consumer groups (docs/consumer-groups.md). Heartbeats and leaves need the
// metadata leader's memory of workers: a node that does not lead passes
// them to the leader's public API. Checkpoints and releases are metadata
// commands, which any node proposes.

// groupsServer implements riffle.v1.ConsumerGroups.
type groupsServer struct {
	rifflev1.UnimplementedConsumerGroupsServer
	s *Server
}

// RegisterGroups adds the ConsumerGroups service to g.
func (s *Server) RegisterGroups(g *grpc.Server) {
	rifflev1.RegisterConsumerGroupsServer(g, groupsServer{s: s})
}

var groupNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,128}$`)

func checkGroupName(field, name string) *Error {
	if !groupNamePattern.MatchString(name) {
		return validation("%s %q must match [a-zA-Z0-9_.-]{1,128}", field, truncate(name))
	}
	return nil
}

// LeaseLost is the exception of a checkpoint or release by a worker that
// no longer holds the lease.
const LeaseLost = "LeaseLostException"

// viaMetaLeader runs call on the metadata leader's public API when this
// node does not lead; handled is false when the call is to be served here.
func viaMetaLeader[T any](ctx context.Context, s *Server, call func(context.Context, rifflev1.ConsumerGroupsClient) (T, error)) (resp T, handled bool, err error) {
	if s.host.IsMetaLeader() {
		return resp, false, nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(proxiedHeader)) > 0 {
		return resp, true, unavailable("this node does not lead the metadata group (any more); try again")
	}
	leader := s.host.MetaLeader()
	if leader == "" {
		return resp, true, unavailable("no metadata leader yet")
	}
	conn, err := s.host.NodeConn(leader)
	if err != nil {
		return resp, true, unavailable("metadata leader %s: %v", leader, err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, proxiedHeader, "1")
	resp, err = call(ctx, rifflev1.NewConsumerGroupsClient(conn))
	if err != nil {
		// The leader's own exception as it sent it; a broken call is
		// retryable, heartbeats and leaves being safe to repeat.
		if e, ok := upstreamError(leader, err).(*Error); ok && e.Exception != ServiceUnavailable {
			err = e
		} else {
			err = unavailable("metadata leader %s: %v", leader, err)
		}
	}
	return resp, true, err
}

// Heartbeat implements riffle.v1.ConsumerGroups.
func (gs groupsServer) Heartbeat(ctx context.Context, req *rifflev1.HeartbeatRequest) (*rifflev1.HeartbeatResponse, error) {
	if verr := checkGroupName("group_name", req.GroupName); verr != nil {
		return nil, verr
	}
	if verr := checkGroupName("worker_id", req.WorkerId); verr != nil {
		return nil, verr
	}
	if verr := checkStreamName(req.StreamName); verr != nil {
		return nil, verr
	}
	dur := time.Duration(req.LeaseDurationMillis) * time.Millisecond
	if req.LeaseDurationMillis != 0 && (dur < cluster.MinGroupLeaseDuration || dur > cluster.MaxGroupLeaseDuration) {
		return nil, invalidArgument("lease_duration_millis %d is outside [%d, %d]", req.LeaseDurationMillis,
			cluster.MinGroupLeaseDuration.Milliseconds(), cluster.MaxGroupLeaseDuration.Milliseconds())
	}
	if resp, handled, err := viaMetaLeader(ctx, gs.s, func(ctx context.Context, c rifflev1.ConsumerGroupsClient) (*rifflev1.HeartbeatResponse, error) {
		return c.Heartbeat(ctx, req)
	}); handled {
		return resp, err
	}
	g, leases, err := gs.s.host.GroupHeartbeat(ctx, req.GroupName, req.StreamName, req.WorkerId, dur)
	if err != nil {
		return nil, err
	}
	resp := &rifflev1.HeartbeatResponse{
		LeaseDurationMillis:     g.LeaseDuration.Milliseconds(),
		HeartbeatIntervalMillis: max(g.LeaseDuration.Milliseconds()/4, 100),
	}
	for _, l := range leases {
		resp.Leases = append(resp.Leases, shardLease(l))
	}
	return resp, nil
}

func shardLease(l cluster.GroupLease) *rifflev1.ShardLease {
	return &rifflev1.ShardLease{ShardId: l.Shard, Owner: l.Owner, LeaseCounter: l.Counter,
		Checkpoint: l.Checkpoint, HandoverTo: l.HandoverTo, ParentShardIds: l.Parents}
}

// leaseRequest validates what checkpoints and releases share.
func leaseRequest(group, worker, shard string, counter uint64) *Error {
	if verr := checkGroupName("group_name", group); verr != nil {
		return verr
	}
	if verr := checkGroupName("worker_id", worker); verr != nil {
		return verr
	}
	if verr := checkShardID(shard); verr != nil {
		return verr
	}
	if counter == 0 {
		return validation("lease_counter is required: the counter of the lease from Heartbeat")
	}
	return nil
}

// Checkpoint implements riffle.v1.ConsumerGroups.
func (gs groupsServer) Checkpoint(ctx context.Context, req *rifflev1.CheckpointRequest) (*rifflev1.CheckpointResponse, error) {
	if verr := leaseRequest(req.GroupName, req.WorkerId, req.ShardId, req.LeaseCounter); verr != nil {
		return nil, verr
	}
	if req.SequenceNumber != cluster.ShardEndCheckpoint {
		if _, _, verr := parseSequenceNumber("sequence_number", req.SequenceNumber); verr != nil {
			return nil, verr
		}
	}
	cmd := cluster.Command{GroupCheckpoint: &cluster.GroupCheckpointCmd{Group: req.GroupName, Shard: req.ShardId,
		Worker: req.WorkerId, Counter: req.LeaseCounter, Sequence: req.SequenceNumber}}
	if err := gs.s.host.ProposeMeta(ctx, cmd); err != nil {
		return nil, err
	}
	return &rifflev1.CheckpointResponse{}, nil
}

// ReleaseLease implements riffle.v1.ConsumerGroups.
func (gs groupsServer) ReleaseLease(ctx context.Context, req *rifflev1.ReleaseLeaseRequest) (*rifflev1.ReleaseLeaseResponse, error) {
	if verr := leaseRequest(req.GroupName, req.WorkerId, req.ShardId, req.LeaseCounter); verr != nil {
		return nil, verr
	}
	cmd := cluster.Command{ReleaseLeases: &cluster.ReleaseLeasesCmd{Group: req.GroupName, Worker: req.WorkerId,
		Leases: []cluster.LeaseRef{{Shard: req.ShardId, Counter: req.LeaseCounter}}}}
	if err := gs.s.host.ProposeMeta(ctx, cmd); err != nil {
		return nil, err
	}
	gs.s.logger.Info("consumer group lease released", "group", req.GroupName, "worker", req.WorkerId, "shard", req.ShardId)
	return &rifflev1.ReleaseLeaseResponse{}, nil
}

// LeaveConsumerGroup implements riffle.v1.ConsumerGroups.
func (gs groupsServer) LeaveConsumerGroup(ctx context.Context, req *rifflev1.LeaveConsumerGroupRequest) (*rifflev1.LeaveConsumerGroupResponse, error) {
	if verr := checkGroupName("group_name", req.GroupName); verr != nil {
		return nil, verr
	}
	if verr := checkGroupName("worker_id", req.WorkerId); verr != nil {
		return nil, verr
	}
	if resp, handled, err := viaMetaLeader(ctx, gs.s, func(ctx context.Context, c rifflev1.ConsumerGroupsClient) (*rifflev1.LeaveConsumerGroupResponse, error) {
		return c.LeaveConsumerGroup(ctx, req)
	}); handled {
		return resp, err
	}
	if err := gs.s.host.GroupLeave(ctx, req.GroupName, req.WorkerId); err != nil {
		return nil, err
	}
	return &rifflev1.LeaveConsumerGroupResponse{}, nil
}

// group finds a group in the metadata, caught up with the leader.
func (gs groupsServer) group(ctx context.Context, name string) (*cluster.State, *cluster.Group, error) {
	if verr := checkGroupName("group_name", name); verr != nil {
		return nil, nil, verr
	}
	// Checkpoints are written through any node: catch up with the leader
	// so that a description shows every acknowledged one (an error leaves
	// this node's copy, which is answered from).
	if err := gs.s.host.SyncMeta(ctx); err != nil {
		gs.s.logger.Info("metadata catch-up failed; answering from this node's copy", "group", name, "err", err)
	}
	st := gs.s.host.Meta().State()
	g, ok := st.Groups[name]
	if !ok {
		return nil, nil, notFound("consumer group %s not found", name)
	}
	return st, g, nil
}

func describeGroup(st *cluster.State, g *cluster.Group) *rifflev1.ConsumerGroupDescription {
	d := &rifflev1.ConsumerGroupDescription{GroupName: g.Name, StreamName: g.Stream,
		LeaseDurationMillis: g.LeaseDuration.Milliseconds(), CreationTimestamp: timestamppb.New(g.CreatedAt)}
	for _, l := range st.GroupLeases(g) {
		d.Leases = append(d.Leases, shardLease(l))
	}
	return d
}

// DescribeConsumerGroup implements riffle.v1.ConsumerGroups.
func (gs groupsServer) DescribeConsumerGroup(ctx context.Context, req *rifflev1.DescribeConsumerGroupRequest) (*rifflev1.DescribeConsumerGroupResponse, error) {
	st, g, err := gs.group(ctx, req.GroupName)
	if err != nil {
		return nil, err
	}
	return &rifflev1.DescribeConsumerGroupResponse{Group: describeGroup(st, g)}, nil
}

// ListConsumerGroups implements riffle.v1.ConsumerGroups.
func (gs groupsServer) ListConsumerGroups(ctx context.Context, req *rifflev1.ListConsumerGroupsRequest) (*rifflev1.ListConsumerGroupsResponse, error) {
	if req.StreamName != "" {
		if verr := checkStreamName(req.StreamName); verr != nil {
			return nil, verr
		}
	}
	if err := gs.s.host.SyncMeta(ctx); err != nil {
		gs.s.logger.Info("metadata catch-up failed; answering from this node's copy", "err", err)
	}
	st := gs.s.host.Meta().State()
	names := make([]string, 0, len(st.Groups))
	for n, g := range st.Groups {
		if req.StreamName == "" || g.Stream == req.StreamName {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	resp := &rifflev1.ListConsumerGroupsResponse{}
	for _, n := range names {
		resp.Groups = append(resp.Groups, describeGroup(st, st.Groups[n]))
	}
	return resp, nil
}

// DeleteConsumerGroup implements riffle.v1.ConsumerGroups.
func (gs groupsServer) DeleteConsumerGroup(ctx context.Context, req *rifflev1.DeleteConsumerGroupRequest) (*rifflev1.DeleteConsumerGroupResponse, error) {
	if _, _, err := gs.group(ctx, req.GroupName); err != nil {
		return nil, err
	}
	err := gs.s.host.ProposeMeta(ctx, cluster.Command{DeleteGroup: &cluster.DeleteGroupCmd{Name: req.GroupName}})
	if err != nil && !errors.Is(err, cluster.ErrGroupNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, notFound("consumer group %s not found", req.GroupName)
	}
	gs.s.logger.Info("consumer group deleted", "group", req.GroupName)
	return &rifflev1.DeleteConsumerGroupResponse{}, nil
}
