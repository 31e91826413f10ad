package tests

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// nodesClient is the Nodes API through node i.
func (c *testCluster) nodesClient(i int) rifflev1.NodesClient {
	return rifflev1.NewNodesClient(c.nodes[i].conn)
}

// replicaSpread counts the replicas per node in i's copy of the metadata
// and reports whether they differ by at most one over nodes, with no move
// in flight.
func replicaSpread(c *testCluster, i int, stream string, nodes []string) (map[string]int, error) {
	st := c.nodes[i].Host().Meta().State().Streams[stream]
	counts := map[string]int{}
	for _, sh := range st.Shards {
		if sh.Moving != nil {
			return counts, fmt.Errorf("%s moving %+v", sh.ID(), *sh.Moving)
		}
		for _, r := range sh.Replicas {
			counts[r]++
		}
	}
	lo, hi := 1<<30, 0
	for _, n := range nodes {
		lo, hi = min(lo, counts[n]), max(hi, counts[n])
	}
	if hi-lo > 1 {
		return counts, fmt.Errorf("replicas per node %v", counts)
	}
	return counts, nil
}

// checkGroupsMatchMetadata waits until every shard of stream has rf
// distinct replicas in the metadata and its raft group, as its leader
// sees it, has exactly those as voters and nothing else: no move left a
// shard short of voters or with a stray member.
func checkGroupsMatchMetadata(t *testing.T, c *testCluster, live []int, stream string, rf int) {
	t.Helper()
	waitFor(t, 20*time.Second, "raft groups matching the metadata", func() error {
		st := c.nodes[live[0]].Host().Meta().State().Streams[stream]
		for _, sh := range st.Shards {
			if sh.Moving != nil {
				return fmt.Errorf("%s still moving %+v", sh.ID(), *sh.Moving)
			}
			if len(sh.Replicas) != rf || len(slices.Compact(slices.Sorted(slices.Values(sh.Replicas)))) != rf {
				return fmt.Errorf("%s replicas %v", sh.ID(), sh.Replicas)
			}
			var cfg *raft.Configuration
			for _, i := range live {
				r, err := c.nodes[i].Host().Shard(st, sh)
				if err != nil || !r.IsLeader() {
					continue
				}
				f := r.Raft().GetConfiguration()
				if err := f.Error(); err != nil {
					return err
				}
				got := f.Configuration()
				cfg = &got
			}
			if cfg == nil {
				return fmt.Errorf("%s: no leader among the live nodes", sh.ID())
			}
			var voters []string
			for _, srv := range cfg.Servers {
				if srv.Suffrage != raft.Voter {
					return fmt.Errorf("%s: %s is a %v", sh.ID(), srv.ID, srv.Suffrage)
				}
				voters = append(voters, string(srv.ID))
			}
			if !slices.Equal(slices.Sorted(slices.Values(voters)), slices.Sorted(slices.Values(sh.Replicas))) {
				return fmt.Errorf("%s: voters %v, metadata replicas %v", sh.ID(), voters, sh.Replicas)
			}
		}
		return nil
	})
}

// createStreamPatiently creates a stream and waits until it is ACTIVE, as
// createStream does, but gives a machine busy with other work a minute:
// a creation caught by a metadata election is sent again (ResourceInUse
// then says the first one took).
func createStreamPatiently(t *testing.T, c rifflev1.StreamsClient, name string, shards int32) {
	t.Helper()
	waitFor(t, 60*time.Second, "CreateStream "+name, func() error {
		_, err := c.CreateStream(context.Background(), &rifflev1.CreateStreamRequest{StreamName: name, ShardCount: shards})
		switch {
		case err == nil, status.Code(err) == codes.FailedPrecondition:
			return nil
		case !retryable(err) && status.Code(err) != codes.Unknown:
			t.Fatalf("CreateStream %s: %v", name, err)
		}
		return err
	})
	waitFor(t, 60*time.Second, name+" ACTIVE", func() error {
		out, err := c.DescribeStreamSummary(context.Background(), &rifflev1.DescribeStreamSummaryRequest{StreamName: name})
		if err != nil {
			return err
		}
		if s := out.StreamDescriptionSummary.StreamStatus; s != rifflev1.StreamStatus_STREAM_STATUS_ACTIVE {
			return fmt.Errorf("status %v", s)
		}
		return nil
	})
}

// ackedOf keeps the writes of a load whose outcome is known.
func ackedOf(writes []reshardWrite) []ack {
	var out []ack
	for _, w := range writes {
		if !w.uncertain {
			out = append(out, ack{w.shard, w.seq, w.data})
		}
	}
	return out
}

// waitWrites waits until the load has made n more writes.
func waitWrites(t *testing.T, load *reshardLoad, n int, what string) {
	t.Helper()
	n0 := load.count()
	waitFor(t, 60*time.Second, what, func() error {
		if got := load.count() - n0; got < n {
			return fmt.Errorf("%d writes", got)
		}
		return nil
	})
}

// TestNewNodeTakesItsShareOfReplicas checks balancing: a node added to a
// three-node cluster with a six-shard stream receives replicas (each move:
// non-voter, caught up, promoted, old replica removed) until replicas per
// node differ by at most one, while writes go on; every shard ends with
// three voters, and every acknowledged write is read back on every node,
// the new one included.
func TestNewNodeTakesItsShareOfReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("four nodes")
	}
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: steadyRaft})
	killAtEnd(t, c)
	const stream = "spread"
	createStreamPatiently(t, c.nodes[0].client, stream, 6)
	load := startReshardLoad(t, clientsOf(c, 0, 1, 2), stream, 4, 40)
	waitWrites(t, load, 30, "writes before the join")
	t0 := time.Now()
	n4 := c.addNode()
	nodes := []string{"n1", "n2", "n3", "n4"}
	var counts map[string]int
	waitFor(t, 60*time.Second, "replicas balanced over four nodes", func() (err error) {
		counts, err = replicaSpread(c, 0, stream, nodes)
		return err
	})
	t.Logf("balanced %v after the join: %v", time.Since(t0).Round(time.Millisecond), counts)
	if counts["n4"] < 4 {
		t.Errorf("n4 holds %d replicas: %v", counts["n4"], counts)
	}
	waitWrites(t, load, 30, "writes after balancing")
	writes := load.finish()
	checkGroupsMatchMetadata(t, c, []int{0, 1, 2, n4}, stream, 3)
	sameEverywhere(t, c, stream, []int{0, 1, 2, n4}, ackedOf(writes))

	var completed uint64
	for _, n := range c.nodes {
		_, done := n.Host().MoveStats()
		completed += done
	}
	if completed < 4 {
		t.Errorf("moves completed %d, want at least 4", completed)
	}
	var exported float64
	for _, n := range c.nodes {
		m := adminMetrics(t, n)
		if !strings.Contains(m, "riffle_replica_moves_in_flight 0") {
			t.Errorf("%s /metrics lacks riffle_replica_moves_in_flight 0", n.Host().NodeID())
		}
		for _, line := range strings.Split(m, "\n") {
			if v, ok := strings.CutPrefix(line, "riffle_replica_moves_completed_total "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				exported += f
			}
		}
	}
	if exported != float64(completed) {
		t.Errorf("/metrics riffle_replica_moves_completed_total sums to %v, the hosts counted %d", exported, completed)
	}
	resp, err := c.nodesClient(n4).DescribeNode(context.Background(), &rifflev1.DescribeNodeRequest{NodeId: "n4"})
	if err != nil || resp.Node.Replicas != int32(counts["n4"]) || resp.Node.State != rifflev1.NodeState_NODE_STATE_ALIVE {
		t.Errorf("DescribeNode n4: %v, %v", resp, err)
	}
}

// TestDrainEmptiesNode checks `node drain` end to end on four nodes: the
// drained node ends with no replica, no shard leadership and no metadata
// vote while writes go on and nothing acknowledged is lost; a drain that
// would leave fewer nodes than a shard's replicas and a drain of an
// unknown node are refused; undrain lets the node take replicas again.
func TestDrainEmptiesNode(t *testing.T) {
	if testing.Short() {
		t.Skip("four nodes")
	}
	c := startClusterOpts(t, &testCluster{t: t, expect: 4, raft: steadyRaft})
	killAtEnd(t, c)
	ctx := context.Background()
	const stream = "drain"
	createStreamPatiently(t, c.nodes[0].client, stream, 6)
	// n2 must lead something for the test to show leaderships leave it.
	waitFor(t, 20*time.Second, "n2 leading a shard", func() error {
		if c.nodes[1].Host().LeaderCount() == 0 {
			return errors.New("no leadership on n2")
		}
		return nil
	})
	load := startReshardLoad(t, clientsOf(c, 0, 2, 3), stream, 4, 40)
	waitWrites(t, load, 30, "writes before the drain")

	nodes := c.nodesClient(2)
	if _, err := nodes.DrainNode(ctx, &rifflev1.DrainNodeRequest{NodeId: "n9"}); status.Code(err) != codes.NotFound {
		t.Errorf("draining an unknown node: %v", err)
	}
	t0 := time.Now()
	var resp *rifflev1.DrainNodeResponse
	// Refused while gossip, on a loaded machine, briefly holds a node for
	// dead (three nodes cannot take a drain): try again then.
	waitFor(t, 20*time.Second, "DrainNode accepted", func() (err error) {
		resp, err = nodes.DrainNode(ctx, &rifflev1.DrainNodeRequest{NodeId: "n2"})
		if err != nil && status.Code(err) != codes.InvalidArgument {
			t.Fatalf("DrainNode: %v", err)
		}
		return err
	})
	if !resp.Node.Draining || resp.Node.State != rifflev1.NodeState_NODE_STATE_DRAINING {
		t.Errorf("after DrainNode: %v", resp.Node)
	}
	// A second drain would leave two nodes for shards of three replicas.
	if _, err := nodes.DrainNode(ctx, &rifflev1.DrainNodeRequest{NodeId: "n3"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("second drain: %v", err)
	}
	sawProgress := false
	waitFor(t, 60*time.Second, "n2 drained", func() error {
		d, err := nodes.DescribeNode(ctx, &rifflev1.DescribeNodeRequest{NodeId: "n2"})
		if err != nil {
			return err
		}
		if d.Node.MovesOut > 0 {
			sawProgress = true
		}
		if d.Node.State != rifflev1.NodeState_NODE_STATE_DRAINED {
			return fmt.Errorf("%v", d.Node)
		}
		return nil
	})
	t.Logf("n2 drained %v after DrainNode", time.Since(t0).Round(time.Millisecond))
	if !sawProgress {
		t.Error("DescribeNode never showed a move in flight off n2")
	}
	waitWrites(t, load, 30, "writes after the drain")
	writes := load.finish()

	st := c.nodes[0].Host().Meta().State().Streams[stream]
	for _, sh := range st.Shards {
		if slices.Contains(sh.Replicas, "n2") {
			t.Errorf("%s still on n2: %v", sh.ID(), sh.Replicas)
		}
	}
	waitFor(t, 10*time.Second, "n2 stopped its replicas", func() error {
		for _, sh := range st.Shards {
			if _, err := c.nodes[1].Host().Shard(st, sh); !errors.Is(err, cluster.ErrNoReplica) {
				return fmt.Errorf("%s still runs on n2", sh.ID())
			}
		}
		return nil
	})
	list, err := c.nodesClient(0).ListNodes(ctx, &rifflev1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range list.Nodes {
		switch {
		case n.NodeId == "n2" && (n.Replicas != 0 || n.Leaders != 0 || n.MetadataRole == rifflev1.MetadataRole_METADATA_ROLE_VOTER ||
			n.MetadataRole == rifflev1.MetadataRole_METADATA_ROLE_LEADER || n.State != rifflev1.NodeState_NODE_STATE_DRAINED):
			t.Errorf("n2 after the drain: %v", n)
		case n.NodeId != "n2" && (n.Replicas != 6 || n.State != rifflev1.NodeState_NODE_STATE_ALIVE || n.Leaders < 0):
			t.Errorf("%s after the drain: %v", n.NodeId, n)
		}
	}
	checkGroupsMatchMetadata(t, c, []int{0, 2, 3}, stream, 3)
	sameEverywhere(t, c, stream, []int{0, 2, 3}, ackedOf(writes))

	// Undrained, n2 takes replicas again.
	if _, err := nodes.UndrainNode(ctx, &rifflev1.UndrainNodeRequest{NodeId: "n2"}); err != nil {
		t.Fatalf("UndrainNode: %v", err)
	}
	waitFor(t, 60*time.Second, "replicas back on n2", func() error {
		_, err := replicaSpread(c, 0, stream, []string{"n1", "n2", "n3", "n4"})
		return err
	})
}

// TestReplicaMoveSurvivesMetadataLeaderKill checks the crash safety of
// moves (cluster/moves.go): the metadata leader is killed -9 while a
// balancing move is in flight; the moves resume under the new leader and
// after the old one restarts, every shard ends with exactly three voters
// matching its metadata, and no acknowledged write is lost.
func TestReplicaMoveSurvivesMetadataLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("four nodes")
	}
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: steadyRaft})
	killAtEnd(t, c)
	const stream = "movecrash"
	createStreamPatiently(t, c.nodes[0].client, stream, 6)
	leader, others := c.metaLeader(t)
	load := startReshardLoad(t, clientsOf(c, others...), stream, 4, 40)
	waitWrites(t, load, 30, "writes before the join")
	n4 := c.addNode()
	waitFor(t, 15*time.Second, "a move in flight", func() error {
		for _, sh := range c.nodes[leader].Host().Meta().State().Streams[stream].Shards {
			if sh.Moving != nil {
				return nil
			}
		}
		return errors.New("no move yet")
	})
	c.kill(leader)
	t.Logf("killed the metadata leader n%d mid-move", leader+1)
	waitWrites(t, load, 30, "writes after the kill")
	c.restart(leader)
	waitFor(t, 60*time.Second, "replicas balanced after the restart", func() error {
		_, err := replicaSpread(c, n4, stream, []string{"n1", "n2", "n3", "n4"})
		return err
	})
	writes := load.finish()
	all := []int{0, 1, 2, n4}
	checkGroupsMatchMetadata(t, c, all, stream, 3)
	sameEverywhere(t, c, stream, all, ackedOf(writes))
}

// TestReplicaMoveRollsBackWhenTargetDies checks the other crash of a move
// (cluster/moves.go): the node receiving replicas is killed -9 mid-move and
// stays dead past the grace period; its move is cancelled and rolled back
// (or, if it had completed, rebuilt elsewhere like any dead replica), and
// every shard ends on the three live nodes with exactly three voters and
// every acknowledged write.
func TestReplicaMoveRollsBackWhenTargetDies(t *testing.T) {
	if testing.Short() {
		t.Skip("four nodes")
	}
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: steadyRaft, deadNodeGrace: 2 * time.Second})
	killAtEnd(t, c)
	const stream = "targetdies"
	createStreamPatiently(t, c.nodes[0].client, stream, 6)
	load := startReshardLoad(t, clientsOf(c, 0, 1, 2), stream, 4, 40)
	waitWrites(t, load, 30, "writes before the join")
	n4 := c.addNode()
	waitFor(t, 30*time.Second, "a move to n4 in flight", func() error {
		for _, sh := range c.nodes[0].Host().Meta().State().Streams[stream].Shards {
			if sh.Moving != nil && sh.Moving.To == "n4" {
				return nil
			}
		}
		return errors.New("no move to n4 yet")
	})
	c.kill(n4)
	waitFor(t, 60*time.Second, "every shard back on n1, n2, n3", func() error {
		for _, sh := range c.nodes[0].Host().Meta().State().Streams[stream].Shards {
			if sh.Moving != nil || slices.Contains(sh.Replicas, "n4") {
				return fmt.Errorf("%s replicas %v moving %v", sh.ID(), sh.Replicas, sh.Moving)
			}
		}
		return nil
	})
	waitWrites(t, load, 30, "writes after the roll-back")
	writes := load.finish()
	checkGroupsMatchMetadata(t, c, []int{0, 1, 2}, stream, 3)
	sameEverywhere(t, c, stream, []int{0, 1, 2}, ackedOf(writes))
}
