package tests

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Consumer groups (docs/consumer-groups.md): leases and checkpoints kept by
// the cluster, shards assigned by the metadata leader.

// deliveries records what a group's workers processed, in order.
type deliveries struct {
	mu  sync.Mutex
	log []delivery
}

type delivery struct {
	worker, shard, seq, key string
}

func (d *deliveries) handler(worker string) client.RecordHandler {
	return func(ctx context.Context, shard string, records []*rifflev1.Record) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, r := range records {
			d.log = append(d.log, delivery{worker: worker, shard: shard, seq: r.SequenceNumber, key: r.PartitionKey})
		}
		return nil
	}
}

// counts returns how often each sequence number (per shard) was delivered.
func (d *deliveries) counts() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := map[string]int{}
	for _, x := range d.log {
		n[x.shard+"/"+x.seq]++
	}
	return n
}

// missing lists the put records not delivered yet.
func (d *deliveries) missing(put map[string]bool) []string {
	got := d.counts()
	var miss []string
	for k := range put {
		if got[k] == 0 {
			miss = append(miss, k)
		}
	}
	sort.Strings(miss)
	return miss
}

// putGroupRecords writes n records with keys prefix-i and returns the
// acknowledged ones as shard/seq. Failed entries are sent again (on a
// loaded machine shard leaderships move): a failure of unknown outcome may
// store a record twice, which only adds to what the group delivers.
func putGroupRecords(t testing.TB, c rifflev1.StreamsClient, stream, prefix string, n int) map[string]bool {
	t.Helper()
	put := map[string]bool{}
	var pending []*rifflev1.PutRecordsRequestEntry
	for j := 0; j < n; j++ {
		pending = append(pending, &rifflev1.PutRecordsRequestEntry{PartitionKey: fmt.Sprintf("%s-%d", prefix, j), Data: []byte(fmt.Sprint(j))})
	}
	waitFor(t, 20*time.Second, "records acknowledged", func() error {
		var failed []*rifflev1.PutRecordsRequestEntry
		var last string
		for i := 0; i < len(pending); i += 100 {
			batch := pending[i:min(i+100, len(pending))]
			resp, err := c.PutRecords(context.Background(), &rifflev1.PutRecordsRequest{StreamName: stream, Records: batch})
			if err != nil {
				failed, last = append(failed, batch...), err.Error()
				continue
			}
			for k, r := range resp.Records {
				if r.ErrorCode != "" {
					failed, last = append(failed, batch[k]), r.ErrorMessage
				} else {
					put[r.ShardId+"/"+r.SequenceNumber] = true
				}
			}
		}
		if pending = failed; len(pending) > 0 {
			return fmt.Errorf("%d not acknowledged, last error: %s", len(pending), last)
		}
		return nil
	})
	return put
}

// aboveCheckpoint reports whether seq lies after checkpoint cp ("" for
// none).
func aboveCheckpoint(cp, seq string) bool { return cp == "" || seqLess(cp, seq) }

// runningWorker is a client.Worker running in its own goroutine.
type runningWorker struct {
	w      *client.Worker
	cancel context.CancelFunc
	done   chan error
}

func startWorker(t testing.TB, addr string, cfg client.WorkerConfig, d *deliveries) *runningWorker {
	t.Helper()
	c, err := client.Dial(context.Background(), []string{addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = 2 * time.Second
	}
	cfg.Reader.PollInterval = 50 * time.Millisecond
	w, err := client.NewWorker(c, cfg, d.handler(cfg.WorkerID))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rw := &runningWorker{w: w, cancel: cancel, done: make(chan error, 1)}
	go func() { rw.done <- w.Run(ctx) }()
	t.Cleanup(rw.stop)
	return rw
}

// stop shuts the worker down gracefully; safe to call twice.
func (rw *runningWorker) stop() {
	rw.cancel()
	<-rw.done
	rw.done <- nil
}

func groupsClient(tn *testNode) rifflev1.ConsumerGroupsClient {
	return rifflev1.NewConsumerGroupsClient(tn.conn)
}

// TestGroupSharesShardsEvenly checks that three workers, connected to
// different nodes, share 8 shards 3/3/2 with each shard held by one worker,
// and together deliver every record.
func TestGroupSharesShardsEvenly(t *testing.T) {
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: steadyRaft})
	createStream(t, c.nodes[0].client, "even", 8)
	d := &deliveries{}
	var workers []*runningWorker
	for i := 0; i < 3; i++ {
		workers = append(workers, startWorker(t, c.nodes[i].GRPCAddr(), client.WorkerConfig{Group: "g", Stream: "even", WorkerID: fmt.Sprintf("w%d", i), LeaseDuration: 4 * time.Second}, d))
	}
	waitFor(t, 20*time.Second, "8 shards shared 3/3/2", func() error {
		var sizes []int
		held := map[string]bool{}
		for _, w := range workers {
			sizes = append(sizes, len(w.w.Shards()))
			for _, s := range w.w.Shards() {
				if held[s] {
					return fmt.Errorf("%s held twice", s)
				}
				held[s] = true
			}
		}
		sort.Ints(sizes)
		if fmt.Sprint(sizes) != "[2 3 3]" {
			return fmt.Errorf("shares %v", sizes)
		}
		return nil
	})
	put := putGroupRecords(t, c.nodes[1].client, "even", "k", 400)
	waitFor(t, 15*time.Second, "every record delivered", func() error {
		if m := d.missing(put); len(m) > 0 {
			return fmt.Errorf("%d missing", len(m))
		}
		return nil
	})
	desc, err := groupsClient(c.nodes[2]).DescribeConsumerGroup(context.Background(), &rifflev1.DescribeConsumerGroupRequest{GroupName: "g"})
	if err != nil || len(desc.Group.Leases) != 8 || desc.Group.StreamName != "even" {
		t.Fatalf("DescribeConsumerGroup: %v %v", err, desc)
	}
	// Fencing holds whichever node proposes the checkpoint.
	for i, tn := range c.nodes {
		expectException(t, fmt.Sprintf("stale checkpoint through n%d", i+1), "LeaseLostException", codes.FailedPrecondition, func() error {
			_, err := groupsClient(tn).Checkpoint(context.Background(), &rifflev1.CheckpointRequest{GroupName: "g", WorkerId: "w0",
				ShardId: desc.Group.Leases[0].ShardId, LeaseCounter: 1 << 40, SequenceNumber: "1"})
			return err
		})
	}
}

// TestGroupKilledWorkerTakenOver checks failover: a worker stopped
// abruptly (no checkpoint, no release, as kill -9) has its shards taken
// over once its lease expires, and the survivor resumes from the
// checkpoints: no record is skipped, and records are delivered twice only
// above the dead worker's last checkpoint.
func TestGroupKilledWorkerTakenOver(t *testing.T) {
	n := startNode(t, tempDataDir(t))
	createStream(t, n.client, "failover", 4)
	d := &deliveries{}
	a := startWorker(t, n.GRPCAddr(), client.WorkerConfig{Group: "g", Stream: "failover", WorkerID: "a", CheckpointEvery: 50, CheckpointInterval: time.Minute}, d)
	b := startWorker(t, n.GRPCAddr(), client.WorkerConfig{Group: "g", Stream: "failover", WorkerID: "b", CheckpointEvery: 50, CheckpointInterval: time.Minute}, d)
	waitFor(t, 15*time.Second, "2 shards each", func() error {
		if len(a.w.Shards()) != 2 || len(b.w.Shards()) != 2 {
			return fmt.Errorf("a %v, b %v", a.w.Shards(), b.w.Shards())
		}
		return nil
	})
	put := putGroupRecords(t, n.client, "failover", "before", 300)
	waitFor(t, 15*time.Second, "records before the kill delivered", func() error {
		if m := d.missing(put); len(m) > 0 {
			return fmt.Errorf("%d missing", len(m))
		}
		return nil
	})
	// Processed records of a's shards past its last checkpoint (fewer than
	// 50 a shard), delivered again after the takeover.
	more := putGroupRecords(t, n.client, "failover", "tail", 30)
	waitFor(t, 15*time.Second, "tail delivered", func() error {
		if m := d.missing(more); len(m) > 0 {
			return fmt.Errorf("%d missing", len(m))
		}
		return nil
	})
	aShards := a.w.Shards()
	a.w.Kill()
	killed := time.Now()
	desc, err := groupsClient(n).DescribeConsumerGroup(context.Background(), &rifflev1.DescribeConsumerGroupRequest{GroupName: "g"})
	if err != nil {
		t.Fatal(err)
	}
	checkpoint := map[string]string{}
	for _, l := range desc.Group.Leases {
		checkpoint[l.ShardId] = l.Checkpoint
	}
	for k := range more {
		put[k] = true
	}
	for k := range putGroupRecords(t, n.client, "failover", "after", 200) {
		put[k] = true
	}
	waitFor(t, 15*time.Second, "b holds every shard", func() error {
		if len(b.w.Shards()) != 4 {
			return fmt.Errorf("b holds %v", b.w.Shards())
		}
		return nil
	})
	takeover := time.Since(killed)
	waitFor(t, 15*time.Second, "every record delivered", func() error {
		if m := d.missing(put); len(m) > 0 {
			return fmt.Errorf("%d missing, first %s", len(m), m[0])
		}
		return nil
	})
	dups := 0
	for k, times := range d.counts() {
		if times < 2 {
			continue
		}
		dups++
		var shard, seq string
		fmt.Sscanf(k, "shardId-%12s/%s", &shard, &seq)
		shard = "shardId-" + shard
		if !aboveCheckpoint(checkpoint[shard], seq) {
			t.Errorf("%s delivered %d times, yet at or below a's last checkpoint %s", k, times, checkpoint[shard])
		}
	}
	if dups == 0 {
		t.Errorf("no record delivered twice: a's unacknowledged tail should have been")
	}
	t.Logf("a held %v; b took them over %v after the kill (lease 2 s); %d records delivered twice", aShards, takeover.Round(10*time.Millisecond), dups)
	// The lease runs from a's last heartbeat, at most an interval (a
	// quarter lease) before the kill.
	if takeover < 1500*time.Millisecond {
		t.Errorf("shards moved %v after the kill, before the 2 s lease can have expired", takeover)
	}
}

// TestGroupPausedWorkerFenced checks the lease counter: a worker that went
// silent past its lease (a pause) cannot checkpoint or release the shard
// once another worker holds it, with LeaseLostException; the new holder
// can. Bad requests get clear errors.
func TestGroupPausedWorkerFenced(t *testing.T) {
	n := startNode(t, tempDataDir(t))
	createStream(t, n.client, "fenced", 1)
	g := groupsClient(n)
	ctx := context.Background()
	hb := func(worker string) *rifflev1.HeartbeatResponse {
		resp, err := g.Heartbeat(ctx, &rifflev1.HeartbeatRequest{GroupName: "g", StreamName: "fenced", WorkerId: worker, LeaseDurationMillis: 1000})
		if err != nil {
			t.Fatalf("heartbeat %s: %v", worker, err)
		}
		return resp
	}
	a := hb("a")
	if len(a.Leases) != 1 || a.LeaseDurationMillis != 1000 {
		t.Fatalf("a's heartbeat: %v", a)
	}
	lease := a.Leases[0]
	seq := putGroupRecords(t, n.client, "fenced", "k", 1)
	var first string
	for k := range seq {
		first = k[len("shardId-000000000000/"):]
	}
	if _, err := g.Checkpoint(ctx, &rifflev1.CheckpointRequest{GroupName: "g", WorkerId: "a", ShardId: lease.ShardId, LeaseCounter: lease.LeaseCounter, SequenceNumber: first}); err != nil {
		t.Fatalf("holder's checkpoint: %v", err)
	}
	// a pauses; b heartbeats until the lease is its.
	var bl *rifflev1.ShardLease
	waitFor(t, 5*time.Second, "b takes the lease", func() error {
		if r := hb("b"); len(r.Leases) == 1 {
			bl = r.Leases[0]
			return nil
		}
		return fmt.Errorf("not yet")
	})
	if bl.LeaseCounter == lease.LeaseCounter || bl.Checkpoint != first {
		t.Fatalf("b's lease %v, a's %v", bl, lease)
	}
	expectException(t, "paused worker's checkpoint", "LeaseLostException", codes.FailedPrecondition, func() error {
		_, err := g.Checkpoint(ctx, &rifflev1.CheckpointRequest{GroupName: "g", WorkerId: "a", ShardId: lease.ShardId, LeaseCounter: lease.LeaseCounter, SequenceNumber: first})
		return err
	})
	expectException(t, "paused worker's release", "LeaseLostException", codes.FailedPrecondition, func() error {
		_, err := g.ReleaseLease(ctx, &rifflev1.ReleaseLeaseRequest{GroupName: "g", WorkerId: "a", ShardId: lease.ShardId, LeaseCounter: lease.LeaseCounter})
		return err
	})
	if _, err := g.Checkpoint(ctx, &rifflev1.CheckpointRequest{GroupName: "g", WorkerId: "b", ShardId: bl.ShardId, LeaseCounter: bl.LeaseCounter, SequenceNumber: first}); err != nil {
		t.Fatalf("new holder's checkpoint: %v", err)
	}
	expectException(t, "SHARD_END of an open shard", "InvalidArgumentException", codes.InvalidArgument, func() error {
		_, err := g.Checkpoint(ctx, &rifflev1.CheckpointRequest{GroupName: "g", WorkerId: "b", ShardId: bl.ShardId, LeaseCounter: bl.LeaseCounter, SequenceNumber: "SHARD_END"})
		return err
	})
	expectException(t, "bad group name", "ValidationException", codes.InvalidArgument, func() error {
		_, err := g.Heartbeat(ctx, &rifflev1.HeartbeatRequest{GroupName: "bad name", StreamName: "fenced", WorkerId: "a"})
		return err
	})
	expectException(t, "group of another stream", "InvalidArgumentException", codes.InvalidArgument, func() error {
		createStream(t, n.client, "other", 1)
		_, err := g.Heartbeat(ctx, &rifflev1.HeartbeatRequest{GroupName: "g", StreamName: "other", WorkerId: "a"})
		return err
	})
	expectException(t, "unknown stream", "ResourceNotFoundException", codes.NotFound, func() error {
		_, err := g.Heartbeat(ctx, &rifflev1.HeartbeatRequest{GroupName: "g2", StreamName: "nope", WorkerId: "a"})
		return err
	})
	if _, err := g.DeleteConsumerGroup(ctx, &rifflev1.DeleteConsumerGroupRequest{GroupName: "g"}); err != nil {
		t.Fatal(err)
	}
	expectException(t, "deleted group", "ResourceNotFoundException", codes.NotFound, func() error {
		_, err := g.DescribeConsumerGroup(ctx, &rifflev1.DescribeConsumerGroupRequest{GroupName: "g"})
		return err
	})
	expectException(t, "checkpoint in a deleted group", "ResourceNotFoundException", codes.NotFound, func() error {
		_, err := g.Checkpoint(ctx, &rifflev1.CheckpointRequest{GroupName: "g", WorkerId: "b", ShardId: bl.ShardId, LeaseCounter: bl.LeaseCounter, SequenceNumber: first})
		return err
	})
}

// TestGroupSplitParentFirst checks resharding during consumption: after a
// split, the children are processed only once the parent was processed to
// its end, so every record of the parent is delivered before any of a
// child (per-key order across the lineage).
func TestGroupSplitParentFirst(t *testing.T) {
	n := startNode(t, tempDataDir(t))
	createStream(t, n.client, "split", 1)
	d := &deliveries{}
	startWorker(t, n.GRPCAddr(), client.WorkerConfig{Group: "g", Stream: "split", WorkerID: "a"}, d)
	startWorker(t, n.GRPCAddr(), client.WorkerConfig{Group: "g", Stream: "split", WorkerID: "b"}, d)
	put := putGroupRecords(t, n.client, "split", "k", 300)
	if _, err := n.client.SplitShard(context.Background(), &rifflev1.SplitShardRequest{StreamName: "split",
		ShardToSplit: "shardId-000000000000", NewStartingHashKey: "170141183460469231731687303715884105728"}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, n.client, "split")
	for k := range putGroupRecords(t, n.client, "split", "k", 300) {
		put[k] = true
	}
	waitFor(t, 20*time.Second, "every record delivered", func() error {
		if m := d.missing(put); len(m) > 0 {
			return fmt.Errorf("%d missing", len(m))
		}
		return nil
	})
	d.mu.Lock()
	lastParent, firstChild := -1, -1
	for i, x := range d.log {
		if x.shard == "shardId-000000000000" {
			lastParent = i
		} else if firstChild < 0 {
			firstChild = i
		}
	}
	d.mu.Unlock()
	if firstChild < 0 || lastParent > firstChild {
		t.Fatalf("parent's last delivery at %d, children's first at %d", lastParent, firstChild)
	}
	desc, err := groupsClient(n).DescribeConsumerGroup(context.Background(), &rifflev1.DescribeConsumerGroupRequest{GroupName: "g"})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range desc.Group.Leases {
		if l.ShardId == "shardId-000000000000" && l.Checkpoint != "SHARD_END" {
			t.Errorf("parent lease %v", l)
		}
	}
}

// TestGroupGracefulHandover checks rebalancing without loss or repeats:
// a worker joining takes shards the first one hands over after a last
// checkpoint, and a worker shutting down gracefully checkpoints and leaves
// so that the other takes over at once. No record is delivered twice,
// although the periodic checkpoint is far off.
func TestGroupGracefulHandover(t *testing.T) {
	n := startNode(t, tempDataDir(t))
	createStream(t, n.client, "handover", 4)
	d := &deliveries{}
	cfg := client.WorkerConfig{Group: "g", Stream: "handover", CheckpointInterval: time.Hour, LeaseDuration: 3 * time.Second}
	cfg.WorkerID = "a"
	a := startWorker(t, n.GRPCAddr(), cfg, d)
	put := map[string]bool{}
	deliver := func(prefix string) {
		t.Helper()
		for k := range putGroupRecords(t, n.client, "handover", prefix, 200) {
			put[k] = true
		}
		waitFor(t, 15*time.Second, prefix+" delivered", func() error {
			if m := d.missing(put); len(m) > 0 {
				return fmt.Errorf("%d missing", len(m))
			}
			return nil
		})
	}
	waitFor(t, 10*time.Second, "a holds every shard", func() error {
		if len(a.w.Shards()) != 4 {
			return fmt.Errorf("a holds %v", a.w.Shards())
		}
		return nil
	})
	deliver("first")
	cfg.WorkerID = "b"
	b := startWorker(t, n.GRPCAddr(), cfg, d)
	waitFor(t, 15*time.Second, "two shards handed to b", func() error {
		if len(a.w.Shards()) != 2 || len(b.w.Shards()) != 2 {
			return fmt.Errorf("a %v, b %v", a.w.Shards(), b.w.Shards())
		}
		return nil
	})
	deliver("second")
	a.stop()
	stopped := time.Now()
	waitFor(t, 15*time.Second, "b holds every shard", func() error {
		if len(b.w.Shards()) != 4 {
			return fmt.Errorf("b holds %v", b.w.Shards())
		}
		return nil
	})
	t.Logf("b held every shard %v after a's shutdown (lease 3 s)", time.Since(stopped).Round(10*time.Millisecond))
	deliver("third")
	for k, times := range d.counts() {
		if times > 1 {
			t.Errorf("%s delivered %d times", k, times)
		}
	}
}

// TestGroupFanOutWorkers checks workers that receive by enhanced fan-out:
// they register the group's consumer, share the shards, deliver every
// record, and when one shuts down the other subscribes to its shards from
// the checkpoints (once the broker lets the old subscriptions go) with
// nothing delivered twice.
func TestGroupFanOutWorkers(t *testing.T) {
	n := startNode(t, tempDataDir(t))
	createStream(t, n.client, "fanout", 4)
	d := &deliveries{}
	cfg := client.WorkerConfig{Group: "g", Stream: "fanout", FanOut: true, CheckpointInterval: time.Hour}
	cfg.WorkerID = "a"
	a := startWorker(t, n.GRPCAddr(), cfg, d)
	cfg.WorkerID = "b"
	b := startWorker(t, n.GRPCAddr(), cfg, d)
	waitFor(t, 15*time.Second, "2 shards each", func() error {
		if len(a.w.Shards()) != 2 || len(b.w.Shards()) != 2 {
			return fmt.Errorf("a %v, b %v", a.w.Shards(), b.w.Shards())
		}
		return nil
	})
	put := putGroupRecords(t, n.client, "fanout", "first", 200)
	waitFor(t, 15*time.Second, "first records delivered", func() error {
		if m := d.missing(put); len(m) > 0 {
			return fmt.Errorf("%d missing", len(m))
		}
		return nil
	})
	if _, err := n.client.DescribeStreamConsumer(context.Background(), &rifflev1.DescribeStreamConsumerRequest{StreamName: "fanout", ConsumerName: "g"}); err != nil {
		t.Fatalf("the group's consumer: %v", err)
	}
	a.stop()
	for k := range putGroupRecords(t, n.client, "fanout", "second", 200) {
		put[k] = true
	}
	waitFor(t, 20*time.Second, "every record delivered", func() error {
		if m := d.missing(put); len(m) > 0 {
			return fmt.Errorf("%d missing; b holds %v", len(m), b.w.Shards())
		}
		return nil
	})
	for k, times := range d.counts() {
		if times > 1 {
			t.Errorf("%s delivered %d times", k, times)
		}
	}
}

// TestGroupKeepsLeasesAcrossMetadataFailover checks the new leader's grace:
// heartbeat times live only in the metadata leader's memory, so when it
// dies its successor counts every lease owner as heard from at the start of
// its term. Workers that go on heartbeating keep every lease (no counter
// changes), and every record is delivered.
func TestGroupKeepsLeasesAcrossMetadataFailover(t *testing.T) {
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: steadyRaft})
	createStream(t, c.nodes[0].client, "metafail", 4)
	leader, others := c.metaLeader(t)
	addrs := []string{c.nodes[others[0]].GRPCAddr(), c.nodes[others[1]].GRPCAddr()}
	d := &deliveries{}
	var workers []*runningWorker
	for i, addr := range addrs {
		workers = append(workers, startWorker(t, addr, client.WorkerConfig{Group: "g", Stream: "metafail", WorkerID: fmt.Sprintf("w%d", i), LeaseDuration: 4 * time.Second}, d))
	}
	g := groupsClient(c.nodes[others[0]])
	leases := func() (map[string]uint64, error) {
		desc, err := g.DescribeConsumerGroup(context.Background(), &rifflev1.DescribeConsumerGroupRequest{GroupName: "g"})
		if err != nil {
			return nil, err
		}
		out := map[string]uint64{}
		for _, l := range desc.Group.Leases {
			out[l.ShardId+"@"+l.Owner] = l.LeaseCounter
		}
		return out, nil
	}
	waitFor(t, 20*time.Second, "2 shards each", func() error {
		if len(workers[0].w.Shards()) != 2 || len(workers[1].w.Shards()) != 2 {
			return fmt.Errorf("w0 %v, w1 %v", workers[0].w.Shards(), workers[1].w.Shards())
		}
		return nil
	})
	before, err := leases()
	if err != nil {
		t.Fatal(err)
	}
	put := putGroupRecords(t, c.nodes[others[0]].client, "metafail", "before", 200)
	c.kill(leader)
	newLeader := -1
	waitFor(t, 20*time.Second, "a new metadata leader", func() error {
		for _, i := range others {
			if c.nodes[i].Host().Meta().IsLeader() {
				newLeader = i
				return nil
			}
		}
		return fmt.Errorf("none")
	})
	for k := range putGroupRecords(t, c.nodes[others[1]].client, "metafail", "after", 200) {
		put[k] = true
	}
	waitFor(t, 30*time.Second, "every record delivered", func() error {
		if m := d.missing(put); len(m) > 0 {
			return fmt.Errorf("%d missing", len(m))
		}
		return nil
	})
	// Nothing moves, up to past the new leader's grace (a lease from its
	// term's first heartbeat): the workers heartbeat to it.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		after, err := leases()
		if err == nil && fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("leases changed across the metadata failover (new leader n%d): before %v, after %v", newLeader+1, before, after)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
