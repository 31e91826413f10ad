package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/riffle-streams/riffle/cluster"
	"github.com/riffle-streams/riffle/gateway/kinesis"
	"github.com/riffle-streams/riffle/node"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// testCluster is N in-process nodes on loopback that gossip and replicate.
type testCluster struct {
	t      testing.TB
	dirs   []string
	gossip []string
	nodes  []*testNode
	// deadNodeGrace is passed to every node; zero keeps the default.
	deadNodeGrace time.Duration
	// raft is every node's raft timing.
	raft   shardlog.RaftTiming
	expect int
	// limits are every node's default shard limits; zero is unlimited.
	limits cluster.Limits
	// subLifetime and subHeartbeat set subscription timing; zero keeps
	// the defaults.
	subLifetime, subHeartbeat time.Duration
	// clock, when set, is every node's clock (node.Config.Clock), and
	// retentionCheck how often they apply retention; zero keeps the
	// default.
	clock          *testClock
	retentionCheck time.Duration
	// onDemand and scalingOpsPerDay tune on-demand scaling and the daily
	// UpdateShardCount limit; zero keeps the defaults.
	onDemand         cluster.OnDemandOptions
	scalingOpsPerDay int
	// segmentMaxBytes sets when shard segments roll; zero keeps the default.
	segmentMaxBytes int64
	// hibernateAfter is every node's node.Config.HibernateAfter; zero
	// keeps the default.
	hibernateAfter time.Duration
	// kinesisCreds, when set, are the keys every node's Kinesis API
	// requires signatures from.
	kinesisCreds kinesis.Credentials
	// logs keeps each node's latest log lines (all of its runs), printed
	// when the test fails; with -v the lines go to the test log as written.
	logs   []*logTail
	logsMu sync.Mutex
}

// startCluster starts n nodes with bootstrap-expect n and waits until every
// one is ready.
func startCluster(t testing.TB, n int) *testCluster {
	return startClusterWith(t, n, 0)
}

// startClusterWith is startCluster with a dead-node grace period.
func startClusterWith(t testing.TB, n int, grace time.Duration) *testCluster {
	t.Helper()
	return startClusterOpts(t, &testCluster{t: t, deadNodeGrace: grace, expect: n, raft: fastRaft})
}

// startClusterOpts starts c.expect nodes configured by c.
func startClusterOpts(t testing.TB, c *testCluster) *testCluster {
	t.Helper()
	n := c.expect
	base := t.TempDir()
	for i := 0; i < n; i++ {
		c.dirs = append(c.dirs, filepath.Join(base, fmt.Sprintf("n%d", i+1)))
		c.gossip = append(c.gossip, freePort(t))
	}
	c.nodes = make([]*testNode, n)
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.nodes[i] = c.startNode(i)
		}()
	}
	wg.Wait()
	for i := range c.nodes {
		if c.nodes[i] == nil {
			t.FailNow()
		}
		c.waitReady(i)
	}
	return c
}

// startNode (re)starts node i on its data directory and gossip port, with a
// new gRPC port each time, like a node rescheduled on a new address.
func (c *testCluster) startNode(i int) *testNode {
	logger := slog.New(slog.NewTextHandler(c.logTail(i), &slog.HandlerOptions{Level: slog.LevelInfo}))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(testWriter{c.t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	n, err := node.Start(context.Background(), node.Config{
		NodeID:             fmt.Sprintf("n%d", i+1),
		DataDir:            c.dirs[i],
		GRPCAddr:           "127.0.0.1:0",
		GossipAddr:         c.gossip[i],
		AdminAddr:          "127.0.0.1:0",
		KinesisAddr:        "127.0.0.1:0",
		KinesisCredentials: c.kinesisCreds,
		Join:               c.gossip,
		BootstrapExpect:    c.expect,
		FastGossip:         true,
		Raft:               c.raft,
		BalanceInterval:    300 * time.Millisecond,
		DeadNodeGrace:      c.deadNodeGrace,
		ShardLimits:        c.limits,

		SubscriptionLifetime:   c.subLifetime,
		SubscriptionHeartbeat:  c.subHeartbeat,
		RetentionCheckInterval: c.retentionCheck,
		SegmentMaxBytes:        c.segmentMaxBytes,
		HibernateAfter:         c.hibernateAfter,
		Clock:                  c.clock.nowFunc(),
		OnDemand:               c.onDemand,
		ScalingOpsPerDay:       c.scalingOpsPerDay,
		Logger:                 logger,
	})
	if err != nil {
		c.t.Errorf("start node %d: %v", i+1, err)
		return nil
	}
	conn, err := grpc.NewClient(n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(node.MaxMessageBytes), grpc.MaxCallSendMsgSize(node.MaxMessageBytes)))
	if err != nil {
		c.t.Error(err)
		return nil
	}
	tn := &testNode{Node: n, dir: c.dirs[i], client: rifflev1.NewStreamsClient(conn), conn: conn}
	c.t.Cleanup(func() { tn.stop(c.t) })
	return tn
}

func (c *testCluster) waitReady(i int) {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, fmt.Sprintf("n%d ready", i+1), func() error {
		return c.nodes[i].NotReady()
	})
}

// addNode starts one more node that joins the running cluster.
func (c *testCluster) addNode() int {
	c.t.Helper()
	i := len(c.nodes)
	c.dirs = append(c.dirs, filepath.Join(c.t.TempDir(), fmt.Sprintf("n%d", i+1)))
	c.gossip = append(c.gossip, freePort(c.t))
	c.nodes = append(c.nodes, c.startNode(i))
	if c.nodes[i] == nil {
		c.t.FailNow()
	}
	c.waitReady(i)
	return i
}

// logTail returns node i's log tail, made on first use; the first one
// made registers the cleanup that prints every tail if the test failed.
func (c *testCluster) logTail(i int) *logTail {
	c.logsMu.Lock()
	defer c.logsMu.Unlock()
	if len(c.logs) == 0 {
		c.t.Cleanup(func() {
			if !c.t.Failed() {
				return
			}
			c.logsMu.Lock()
			defer c.logsMu.Unlock()
			for j, l := range c.logs {
				if l != nil {
					c.t.Logf("the last log lines of n%d:\n%s", j+1, l.String())
				}
			}
		})
	}
	for len(c.logs) <= i {
		c.logs = append(c.logs, nil)
	}
	if c.logs[i] == nil {
		c.logs[i] = &logTail{max: 300}
	}
	return c.logs[i]
}

// kill stops node i abruptly, as a crash would.
func (c *testCluster) kill(i int) {
	c.nodes[i].conn.Close()
	c.nodes[i].conn = nil
	c.nodes[i].Kill()
}

// restart brings a killed node back on its data and waits until it is ready.
func (c *testCluster) restart(i int) {
	c.t.Helper()
	c.nodes[i] = c.startNode(i)
	if c.nodes[i] == nil {
		c.t.FailNow()
	}
	c.waitReady(i)
}

// retryable reports whether a put failed without being applied, so that a
// client may send it again without creating a duplicate.
func retryable(err error) bool {
	st, _ := status.FromError(err)
	return st.Code() == codes.Unavailable || st.Code() == codes.FailedPrecondition
}

// TestClusterReplicatesAndSurvivesNodeLoss checks contract 1-3 on three
// nodes: a stream created through one node is served by all; records
// written through every node are read identically from every node; when one
// node is killed writes continue through the others with no acknowledged
// record lost; the node restarted on a new address catches up and serves
// every record with the same sequence numbers.
func TestClusterReplicatesAndSurvivesNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startCluster(t, 3)
	createStream(t, c.nodes[0].client, "rep", 3)
	for _, n := range c.nodes {
		waitActive(t, n.client, "rep")
	}

	var acks []ack
	put := func(n *testNode, data string) error {
		out, err := n.client.PutRecord(context.Background(), &rifflev1.PutRecordRequest{StreamName: "rep", PartitionKey: data, Data: []byte(data)})
		if err == nil {
			acks = append(acks, ack{out.ShardId, out.SequenceNumber, data})
		}
		return err
	}
	for i := 0; i < 300; i++ {
		if err := put(c.nodes[i%3], fmt.Sprintf("a-%d", i)); err != nil {
			t.Fatalf("put %d through n%d: %v", i, i%3+1, err)
		}
	}
	sameEverywhere(t, c, "rep", []int{0, 1, 2}, acks)

	// Kill n3 and keep writing through n1 and n2.
	c.kill(2)
	start := time.Now()
	var firstOK time.Duration
	for i := 0; i < 300; i++ {
		data := fmt.Sprintf("b-%d", i)
		waitFor(t, 20*time.Second, "write after node loss", func() error {
			err := put(c.nodes[i%2], data)
			if err != nil && !retryable(err) {
				t.Fatalf("put %s: non-retryable %v", data, err)
			}
			return err
		})
		if firstOK == 0 {
			firstOK = time.Since(start)
		}
	}
	t.Logf("first write after killing n3 succeeded after %v", firstOK)
	sameEverywhere(t, c, "rep", []int{0, 1}, acks)

	c.restart(2)
	for _, n := range c.nodes {
		waitActive(t, n.client, "rep")
	}
	sameEverywhere(t, c, "rep", []int{0, 1, 2}, acks)
}

// ack is an acknowledged write.
type ack struct{ shard, seq, data string }

// sameEverywhere checks that every node in idx serves each shard with the
// same records and that every acknowledged record is among them.
func sameEverywhere(t testing.TB, c *testCluster, stream string, idx []int, acks []ack) {
	t.Helper()
	want := map[string]map[string]string{}
	for _, a := range acks {
		if want[a.shard] == nil {
			want[a.shard] = map[string]string{}
		}
		want[a.shard][a.seq] = a.data
	}
	shards := len(c.nodes[idx[0]].Host().Meta().State().Streams[stream].Shards)
	for s := 0; s < shards; s++ {
		shard := fmt.Sprintf("shardId-%012d", s)
		var reference []*rifflev1.Record
		for _, i := range idx {
			var got []*rifflev1.Record
			// A follower serves what it has applied; wait until it has
			// everything acknowledged.
			waitFor(t, 20*time.Second, fmt.Sprintf("n%d holds all of %s", i+1, shard), func() error {
				got = readShard(t, c.nodes[i].client, stream, shard)
				have := map[string]string{}
				for _, r := range got {
					have[r.SequenceNumber] = string(r.Data)
				}
				for seq, data := range want[shard] {
					if have[seq] != data {
						return fmt.Errorf("acknowledged %s at %s missing (%d records)", data, seq, len(got))
					}
				}
				return nil
			})
			if reference == nil {
				reference = got
				continue
			}
			if len(got) != len(reference) {
				t.Fatalf("%s: n%d serves %d records, n%d serves %d", shard, i+1, len(got), idx[0]+1, len(reference))
			}
			for k := range got {
				if got[k].SequenceNumber != reference[k].SequenceNumber || string(got[k].Data) != string(reference[k].Data) {
					t.Fatalf("%s: n%d and n%d differ at %d", shard, i+1, idx[0]+1, k)
				}
			}
		}
	}
}

// TestShardLeadersBalanceAndHandOff checks that shard leaderships spread
// evenly over three nodes, and that a node shut down cleanly hands its
// leaderships over so that writes to its shards go on at once.
func TestShardLeadersBalanceAndHandOff(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startCluster(t, 3)
	createStream(t, c.nodes[0].client, "bal", 6)
	waitFor(t, 60*time.Second, "two leaderships per node", func() error {
		var counts []int
		for _, n := range c.nodes {
			counts = append(counts, n.Host().LeaderCount())
		}
		for _, k := range counts {
			if k != 2 {
				return fmt.Errorf("leaderships per node %v", counts)
			}
		}
		return nil
	})

	// Shut n1 down cleanly; its shards must have new leaders before it is
	// gone, so writes to every shard succeed right after.
	c.nodes[0].stop(t)
	for s := 0; s < 6; s++ {
		data := fmt.Sprintf("after-handoff-%d", s)
		start := time.Now()
		waitFor(t, 10*time.Second, "write after handoff", func() error {
			_, err := c.nodes[1+s%2].client.PutRecord(context.Background(), &rifflev1.PutRecordRequest{
				StreamName: "bal", PartitionKey: data, Data: []byte(data), ExplicitHashKey: shardStart(6, s)})
			return err
		})
		if d := time.Since(start); d > time.Second {
			t.Errorf("shard %d took %v to accept a write after a clean shutdown", s, d)
		}
	}
}

// shardStart is the first hash key of shard i of n evenly split shards.
func shardStart(n, i int) string {
	ranges, _ := cluster.EvenRanges(n)
	return ranges[i].Start.String()
}

// TestDeadNodeReplicasRebuilt checks that the replicas of a node dead for
// longer than the grace period are rebuilt on a node that held none of
// them (added as non-voter, caught up, promoted; the dead one removed), and
// that the new replicas serve every acknowledged record.
func TestDeadNodeReplicasRebuilt(t *testing.T) {
	if testing.Short() {
		t.Skip("four nodes")
	}
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, deadNodeGrace: 2 * time.Second, raft: steadyRaft})
	createStream(t, c.nodes[0].client, "move", 3)
	var acks []ack
	for i := 0; i < 150; i++ {
		data := fmt.Sprintf("m-%d", i)
		// The balancer hands new shards' leaderships to their preferred
		// replicas meanwhile; a write caught by that is sent again.
		waitFor(t, 10*time.Second, "write before the move", func() error {
			out, err := c.nodes[i%3].client.PutRecord(context.Background(), &rifflev1.PutRecordRequest{StreamName: "move", PartitionKey: data, Data: []byte(data)})
			if err == nil {
				acks = append(acks, ack{out.ShardId, out.SequenceNumber, data})
			} else if !retryable(err) && status.Code(err) != codes.Unknown {
				t.Fatalf("put %s: %v", data, err)
			}
			return err
		})
	}
	// n4 joins, and balancing starts moving replicas onto it; n3's death
	// then makes the dead-node rebuild take over.
	n4 := c.addNode()
	c.kill(2)
	waitFor(t, 60*time.Second, "replicas moved from n3 to n4", func() error {
		st := c.nodes[0].Host().Meta().State().Streams["move"]
		for _, sh := range st.Shards {
			if sh.Moving != nil || !slices.Contains(sh.Replicas, "n4") || slices.Contains(sh.Replicas, "n3") {
				return fmt.Errorf("%s replicas %v moving %v", sh.ID(), sh.Replicas, sh.Moving)
			}
		}
		return nil
	})
	// Writes go on, and n4 serves everything, old and new.
	for i := 0; i < 30; i++ {
		data := fmt.Sprintf("after-move-%d", i)
		// Leaderships move to preferred replicas meanwhile; a write caught
		// by that has an unknown outcome and a client sends it again.
		waitFor(t, 10*time.Second, "write after the move", func() error {
			out, err := c.nodes[n4].client.PutRecord(context.Background(), &rifflev1.PutRecordRequest{StreamName: "move", PartitionKey: data, Data: []byte(data)})
			if err == nil {
				acks = append(acks, ack{out.ShardId, out.SequenceNumber, data})
			} else if !retryable(err) && status.Code(err) != codes.Unknown {
				t.Fatalf("put %s: %v", data, err)
			}
			return err
		})
	}
	sameEverywhere(t, c, "move", []int{0, 1, n4}, acks)
}

// TestDuplicateNodeIDRefused checks that a second node started with the id
// of a live node is refused with a clear error and disturbs nothing.
func TestDuplicateNodeIDRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startCluster(t, 3)
	_, err := node.Start(context.Background(), node.Config{
		NodeID:          "n2",
		DataDir:         filepath.Join(t.TempDir(), "dup"),
		GRPCAddr:        "127.0.0.1:0",
		GossipAddr:      freePort(t),
		AdminAddr:       "",
		Join:            c.gossip,
		BootstrapExpect: 3,
		FastGossip:      true,
		Raft:            fastRaft,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if !errors.Is(err, cluster.ErrDuplicateNodeID) {
		t.Fatalf("a second n2 started: %v", err)
	}
	createStream(t, c.nodes[1].client, "still-fine", 1)
}

// TestForeignDataDirRefused checks that a node whose data directory belongs
// to another cluster is refused when it tries to join this one.
func TestForeignDataDirRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("four nodes")
	}
	dir := filepath.Join(t.TempDir(), "other")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := node.Config{NodeID: "x1", DataDir: dir, GRPCAddr: "127.0.0.1:0", GossipAddr: freePort(t), FastGossip: true, Raft: fastRaft, Logger: quiet}
	other, err := node.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "other cluster ready", func() error {
		if _, err := os.Stat(filepath.Join(dir, "cluster-id")); err != nil {
			return err
		}
		return nil
	})
	if err := other.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	c := startCluster(t, 3)
	cfg.Join, cfg.BootstrapExpect, cfg.GossipAddr = c.gossip, 3, freePort(t)
	if n, err := node.Start(context.Background(), cfg); !errors.Is(err, cluster.ErrForeignCluster) {
		if err == nil {
			n.Kill()
		}
		t.Fatalf("a node with another cluster's data joined: %v", err)
	}
}

// TestMetadataSurvivesLossOfItsLeader checks that killing the metadata
// leader loses no stream and that metadata changes go on through the
// survivors, whichever node receives them.
func TestMetadataSurvivesLossOfItsLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startCluster(t, 3)
	createStream(t, c.nodes[1].client, "before", 2)
	leader := -1
	for i, n := range c.nodes {
		if n.Host().Meta().IsLeader() {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no metadata leader")
	}
	c.kill(leader)
	survivor := c.nodes[(leader+1)%3]
	createStream(t, survivor.client, "after", 2)
	for _, i := range []int{(leader + 1) % 3, (leader + 2) % 3} {
		for _, name := range []string{"before", "after"} {
			waitActive(t, c.nodes[i].client, name)
		}
	}
	c.restart(leader)
	waitActive(t, c.nodes[leader].client, "after")
}

// TestRestartDoesNotResurrectDeletedStreams checks that a node restarted
// after a stream was deleted does not start that stream's groups again while
// it replays old metadata (they would campaign forever), and keeps no data.
func TestRestartDoesNotResurrectDeletedStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startCluster(t, 3)
	createStream(t, c.nodes[0].client, "gone", 2)
	// Many metadata entries between the creation and the deletion make the
	// restarted node's replay long enough to be seen half-way.
	createStream(t, c.nodes[0].client, "busy", 1)
	for i := 0; i < 150; i++ {
		ctx := context.Background()
		if _, err := c.nodes[0].client.IncreaseStreamRetentionPeriod(ctx, &rifflev1.IncreaseStreamRetentionPeriodRequest{StreamName: "busy", RetentionPeriodHours: 48}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.nodes[0].client.DecreaseStreamRetentionPeriod(ctx, &rifflev1.DecreaseStreamRetentionPeriodRequest{StreamName: "busy", RetentionPeriodHours: 24}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.nodes[0].client.DeleteStream(context.Background(), &rifflev1.DeleteStreamRequest{StreamName: "gone"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "stream removed on every node", func() error {
		for i, n := range c.nodes {
			if n.Host().Meta().State().Streams["gone"] != nil {
				return fmt.Errorf("n%d still has it", i+1)
			}
		}
		return nil
	})
	c.kill(2)
	c.restart(2)
	createStream(t, c.nodes[2].client, "fresh", 1) // the node is in service
	waitFor(t, 10*time.Second, "no replica of the deleted stream", func() error {
		dirs, _ := filepath.Glob(filepath.Join(c.dirs[2], "shards", "s1-*"))
		if len(dirs) > 0 {
			return fmt.Errorf("data of the deleted stream on n3: %v", dirs)
		}
		return nil
	})
}

// TestNodeWithoutReplicaServesReads checks that in a cluster of four, where
// each shard lives on three nodes, every node serves every shard's reads,
// identically, by passing them to a replica when it holds none.
func TestNodeWithoutReplicaServesReads(t *testing.T) {
	if testing.Short() {
		t.Skip("four nodes")
	}
	c := startCluster(t, 4)
	createStream(t, c.nodes[0].client, "wide", 4)
	var acks []ack
	for i := 0; i < 200; i++ {
		data := fmt.Sprintf("w-%d", i)
		out, err := c.nodes[i%4].client.PutRecord(context.Background(), &rifflev1.PutRecordRequest{StreamName: "wide", PartitionKey: data, Data: []byte(data)})
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack{out.ShardId, out.SequenceNumber, data})
	}
	missing := 0
	for _, n := range c.nodes {
		st := n.Host().Meta().State().Streams["wide"]
		for _, sh := range st.Shards {
			if _, err := n.Host().Shard(st, sh); err != nil {
				missing++
			}
		}
	}
	if missing == 0 {
		t.Fatal("every node holds every shard: the test needs a node without a replica")
	}
	sameEverywhere(t, c, "wide", []int{0, 1, 2, 3}, acks)
}

// TestFollowerReadSeesAcknowledgedWrite checks that a reader following a
// shard on a follower, right after a write was acknowledged through another
// node, reads that write: the follower holds the entry and waits the few
// milliseconds until it learns it is committed instead of answering stale.
func TestFollowerReadSeesAcknowledgedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	slow := fastRaft
	slow.CommitTimeout = 200 * time.Millisecond // followers learn commits late
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: slow})
	createStream(t, c.nodes[0].client, "fresh-read", 1)
	leader := shardLeader(t, c, "fresh-read")
	follower := c.nodes[(leader+1)%3]
	writer := c.nodes[(leader+2)%3]
	for i := 0; i < 20; i++ {
		data := fmt.Sprintf("r-%d", i)
		out, err := writer.client.PutRecord(context.Background(), &rifflev1.PutRecordRequest{StreamName: "fresh-read", PartitionKey: "k", Data: []byte(data)})
		if err != nil {
			t.Fatal(err)
		}
		recs := readShard(t, follower.client, "fresh-read", "shardId-000000000000")
		if len(recs) == 0 || recs[len(recs)-1].SequenceNumber != out.SequenceNumber {
			t.Fatalf("write %d acknowledged at %s; the follower's read ends before it (%d records)", i, out.SequenceNumber, len(recs))
		}
	}
	// LATEST taken on the follower right after a write starts after it.
	for i := 0; i < 10; i++ {
		before := fmt.Sprintf("before-latest-%d", i)
		if _, err := writer.client.PutRecord(context.Background(), &rifflev1.PutRecordRequest{StreamName: "fresh-read", PartitionKey: "k", Data: []byte(before)}); err != nil {
			t.Fatal(err)
		}
		latest := &rifflev1.GetShardIteratorRequest{StreamName: "fresh-read", ShardId: "shardId-000000000000",
			ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_LATEST}
		it, err := follower.client.GetShardIterator(context.Background(), latest)
		if err != nil {
			t.Fatal(err)
		}
		after := fmt.Sprintf("after-latest-%d", i)
		if _, err := writer.client.PutRecord(context.Background(), &rifflev1.PutRecordRequest{StreamName: "fresh-read", PartitionKey: "k", Data: []byte(after)}); err != nil {
			t.Fatal(err)
		}
		gr, err := follower.client.GetRecords(context.Background(), &rifflev1.GetRecordsRequest{ShardIterator: it.ShardIterator})
		if err != nil {
			t.Fatal(err)
		}
		if len(gr.Records) == 0 || string(gr.Records[0].Data) != after {
			var got []string
			for _, r := range gr.Records {
				got = append(got, string(r.Data))
			}
			t.Fatalf("LATEST on the follower then GetRecords: %v, want %s first", got, after)
		}
	}
}
