package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
	"github.com/riffle-streams/riffle/shardlog/wal"
)

// nodesServer implements riffle.v1.Nodes, Riffle's own extension for
// listing and draining nodes. Errors go through the interceptors like the
// Streams service's.
type nodesServer struct {
	rifflev1.UnimplementedNodesServer
	s *Server
}

// peerLeadersTimeout bounds asking a peer how many shards it leads.
const peerLeadersTimeout = 2 * time.Second

// ListNodes implements riffle.v1.Nodes.
func (n nodesServer) ListNodes(ctx context.Context, _ *rifflev1.ListNodesRequest) (*rifflev1.ListNodesResponse, error) {
	nodes := n.s.host.Nodes()
	out := make([]*rifflev1.NodeDescription, len(nodes))
	var wg sync.WaitGroup
	for i, ns := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = n.describe(ctx, ns)
		}()
	}
	wg.Wait()
	return &rifflev1.ListNodesResponse{Nodes: out}, nil
}

// DescribeNode implements riffle.v1.Nodes.
func (n nodesServer) DescribeNode(ctx context.Context, req *rifflev1.DescribeNodeRequest) (*rifflev1.DescribeNodeResponse, error) {
	d, err := n.lookup(ctx, req.GetNodeId())
	if err != nil {
		return nil, err
	}
	return &rifflev1.DescribeNodeResponse{Node: d}, nil
}

// DrainNode implements riffle.v1.Nodes.
func (n nodesServer) DrainNode(ctx context.Context, req *rifflev1.DrainNodeRequest) (*rifflev1.DrainNodeResponse, error) {
	if req.GetNodeId() == "" {
		return nil, invalidArgument("node_id is required")
	}
	if err := n.s.host.DrainNode(ctx, req.GetNodeId()); err != nil {
		return nil, err
	}
	d, err := n.lookup(ctx, req.GetNodeId())
	if err != nil {
		return nil, err
	}
	n.s.logger.Info("node draining", "node", req.GetNodeId())
	return &rifflev1.DrainNodeResponse{Node: d}, nil
}

// UndrainNode implements riffle.v1.Nodes.
func (n nodesServer) UndrainNode(ctx context.Context, req *rifflev1.UndrainNodeRequest) (*rifflev1.UndrainNodeResponse, error) {
	if req.GetNodeId() == "" {
		return nil, invalidArgument("node_id is required")
	}
	if err := n.s.host.UndrainNode(ctx, req.GetNodeId()); err != nil {
		return nil, err
	}
	d, err := n.lookup(ctx, req.GetNodeId())
	if err != nil {
		return nil, err
	}
	n.s.logger.Info("node no longer draining", "node", req.GetNodeId())
	return &rifflev1.UndrainNodeResponse{Node: d}, nil
}

func (n nodesServer) lookup(ctx context.Context, id string) (*rifflev1.NodeDescription, error) {
	if id == "" {
		return nil, invalidArgument("node_id is required")
	}
	ns, err := n.s.host.Node(id)
	if err != nil {
		return nil, err
	}
	return n.describe(ctx, ns), nil
}

// describe fills a node's description. Only the node itself knows which
// groups it leads: a peer is asked (its answer about itself never asks
// further), a dead one shows -1.
func (n nodesServer) describe(ctx context.Context, ns cluster.NodeStatus) *rifflev1.NodeDescription {
	d := &rifflev1.NodeDescription{
		NodeId: ns.ID, Address: ns.GRPCAddr, Alive: ns.Alive, Draining: ns.Draining,
		Replicas: int32(ns.Replicas), MovableReplicas: int32(ns.Movable), Leaders: -1,
		MovesIn: int32(ns.MovesIn), MovesOut: int32(ns.MovesOut), MetadataRole: metadataRole(ns.MetaRole),
	}
	switch {
	case ns.ID == n.s.host.NodeID():
		d.Leaders = int32(n.s.host.LeaderCount())
	case ns.Alive:
		d.Leaders = n.peerLeaders(ctx, ns.ID)
	}
	switch {
	case !ns.Alive:
		d.State = rifflev1.NodeState_NODE_STATE_DEAD
	case ns.Drained() && d.Leaders == 0:
		d.State = rifflev1.NodeState_NODE_STATE_DRAINED
	case ns.Draining:
		d.State = rifflev1.NodeState_NODE_STATE_DRAINING
	default:
		d.State = rifflev1.NodeState_NODE_STATE_ALIVE
	}
	return d
}

// peerLeaders asks a peer how many shard groups it leads; -1 when it does
// not answer in time.
func (n nodesServer) peerLeaders(ctx context.Context, id string) int32 {
	conn, err := n.s.host.NodeConn(id)
	if err != nil {
		return -1
	}
	ctx, cancel := context.WithTimeout(ctx, peerLeadersTimeout)
	defer cancel()
	resp, err := rifflev1.NewNodesClient(conn).DescribeNode(ctx, &rifflev1.DescribeNodeRequest{NodeId: id})
	if err != nil || resp.GetNode().GetNodeId() != id {
		n.s.logger.Debug("asking a peer for its leaderships", "node", id, "err", err)
		return -1
	}
	return resp.GetNode().GetLeaders()
}

func metadataRole(role string) rifflev1.MetadataRole {
	switch role {
	case cluster.MetaRoleLeader:
		return rifflev1.MetadataRole_METADATA_ROLE_LEADER
	case cluster.MetaRoleVoter:
		return rifflev1.MetadataRole_METADATA_ROLE_VOTER
	case cluster.MetaRoleNonvoter:
		return rifflev1.MetadataRole_METADATA_ROLE_NONVOTER
	}
	return rifflev1.MetadataRole_METADATA_ROLE_NONE
}

// registerMoveMetrics exports the replica moves: in flight in the cluster
// (every node reports the same, from the metadata) and completed by this
// node as shard leader.
func registerMoveMetrics(reg prometheus.Registerer, host *cluster.Host) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "riffle_replica_moves_in_flight", Help: "Replica moves (dead-node rebuilds, drains, balancing) in progress in the cluster."},
			func() float64 { n, _ := host.MoveStats(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "riffle_replica_moves_completed_total", Help: "Replica moves this node completed as the shard's leader."},
			func() float64 { _, n := host.MoveStats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "riffle_replicas_failed", Help: "Shard replicas this node refuses to start because their raft state is damaged."},
			func() float64 { return float64(len(host.FailedReplicas())) }),
	)
	// The node's write-ahead log (docs/wal.md): records/writes is how many
	// replica writes share each fdatasync.
	for _, m := range []struct {
		name, help string
		counter    bool
		value      func(wal.Stats) float64
	}{
		{"riffle_wal_writes_total", "Group-commit writes of the node's write-ahead log, each one write and one fdatasync.", true, func(s wal.Stats) float64 { return float64(s.Writes) }},
		{"riffle_wal_records_total", "Records (appends, truncations, checkpoints of every shard replica) the write-ahead log wrote.", true, func(s wal.Stats) float64 { return float64(s.Records) }},
		{"riffle_wal_bytes_total", "Bytes the write-ahead log wrote.", true, func(s wal.Stats) float64 { return float64(s.Bytes) }},
		{"riffle_wal_checkpoints_total", "Idle replicas' logs copied forward so that old segments could be deleted.", true, func(s wal.Stats) float64 { return float64(s.Checkpoints) }},
		{"riffle_wal_segments_deleted_total", "Write-ahead log segments deleted once no replica needed them.", true, func(s wal.Stats) float64 { return float64(s.SegmentsDeleted) }},
		{"riffle_wal_segments", "Write-ahead log segment files on disk.", false, func(s wal.Stats) float64 { return float64(s.Segments) }},
		{"riffle_wal_groups", "Shard replicas with entries in the write-ahead log.", false, func(s wal.Stats) float64 { return float64(s.Groups) }},
	} {
		value := func() float64 { return m.value(host.WALStats()) }
		if m.counter {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: m.name, Help: m.help}, value))
		} else {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: m.name, Help: m.help}, value))
		}
	}
	for _, m := range []struct {
		name, help string
		counter    bool
		value      func(cluster.HibernationStats) float64
	}{
		{"riffle_shards_hibernating", "Shard replicas on this node whose raft group sleeps until the next request (docs/hibernation.md).", false, func(s cluster.HibernationStats) float64 { return float64(s.Asleep) }},
		{"riffle_hibernations_total", "Shard replicas this node put to sleep.", true, func(s cluster.HibernationStats) float64 { return float64(s.Sleeps) }},
		{"riffle_hibernation_refusals_total", "Attempts of this node, as shard leader, to put an idle shard to sleep that a replica refused.", true, func(s cluster.HibernationStats) float64 { return float64(s.Refusals) }},
		{"riffle_wakes_total", "Hibernating shard replicas this node opened again, for a request or a raft message.", true, func(s cluster.HibernationStats) float64 { return float64(s.Wakes) }},
		{"riffle_request_wakes_total", "Wakes for a client's request, which start an election here.", true, func(s cluster.HibernationStats) float64 { return float64(s.RequestWakes) }},
		{"riffle_request_wake_seconds_total", "Time from a request finding its replica asleep to the group knowing a leader, summed over riffle_request_wakes_total.", true, func(s cluster.HibernationStats) float64 { return s.RequestWakeSeconds }},
	} {
		value := func() float64 { return m.value(host.HibernationStats()) }
		if m.counter {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: m.name, Help: m.help}, value))
		} else {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: m.name, Help: m.help}, value))
		}
	}
}
