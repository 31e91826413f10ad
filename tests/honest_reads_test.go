package tests

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Contract 7 (issue 13): a read never says it is at the end of a shard
// (MillisBehindLatest 0 and no records) while acknowledged records lie
// beyond what it returned, whichever replica serves it.

// errClaimedEnd is readToClaimedEnd's failure when its deadline passes
// before any response claimed the end.
var errClaimedEnd = errors.New("no response claimed the shard's end")

// readToClaimedEnd follows a shard's iterator chain from TRIM_HORIZON
// through one node and returns what it read when a response first claims
// the end: no records and MillisBehindLatest 0 (or no next iterator, the
// end of a closed shard). Errors the server calls retryable are retried
// with the same iterator; any other error fails the read.
func readToClaimedEnd(ctx context.Context, c rifflev1.StreamsClient, stream, shard string) ([]*rifflev1.Record, error) {
	var iter string
	for iter == "" {
		it, err := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: stream, ShardId: shard,
			ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON})
		switch {
		case err == nil:
			iter = it.ShardIterator
		case status.Code(err) == codes.Unavailable && ctx.Err() == nil:
			pause(ctx, 50*time.Millisecond) // a node just started: its replica may be opening
		default:
			return nil, fmt.Errorf("GetShardIterator %s: %w", shard, err)
		}
	}
	var out []*rifflev1.Record
	for {
		gr, err := c.GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: iter})
		if err != nil {
			if status.Code(err) == codes.Unavailable && ctx.Err() == nil {
				pause(ctx, 50*time.Millisecond)
				continue
			}
			if ctx.Err() != nil {
				return out, fmt.Errorf("%w within the deadline (%d records read)", errClaimedEnd, len(out))
			}
			return out, fmt.Errorf("GetRecords %s: %w", shard, err)
		}
		out = append(out, gr.Records...)
		if gr.NextShardIterator == "" || (len(gr.Records) == 0 && gr.MillisBehindLatest == 0) {
			return out, nil
		}
		iter = gr.NextShardIterator
	}
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// TestLaggingFollowerNeverClaimsTheEnd: a follower learns that entries
// are committed only with the leader's next append, here seconds away. Read
// right after a write was acknowledged, it has not applied the write: it
// must not answer "nothing beyond" (today's bounded wait used to end in
// exactly that); it passes the read to the leader instead.
func TestLaggingFollowerNeverClaimsTheEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	lazy := fastRaft
	// Followers learn of a commit 3 to 6 s late, past the second a read
	// waits for its replica to catch up. (The metadata group too: the
	// stream takes a few of those to become ACTIVE everywhere.)
	lazy.CommitTimeout = 3 * time.Second
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: lazy})
	if _, err := c.nodes[0].client.CreateStream(context.Background(), &rifflev1.CreateStreamRequest{StreamName: "lagging", ShardCount: 1}); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		waitFor(t, 60*time.Second, "lagging ACTIVE on every node", func() error {
			out, err := n.client.DescribeStreamSummary(context.Background(), &rifflev1.DescribeStreamSummaryRequest{StreamName: "lagging"})
			if err != nil {
				return err
			}
			if s := out.StreamDescriptionSummary.StreamStatus; s != rifflev1.StreamStatus_STREAM_STATUS_ACTIVE {
				return fmt.Errorf("status %v", s)
			}
			return nil
		})
	}
	leader := shardLeader(t, c, "lagging")
	follower := c.nodes[(leader+1)%3]
	reg, err := follower.client.RegisterStreamConsumer(context.Background(), &rifflev1.RegisterStreamConsumerRequest{StreamName: "lagging", ConsumerName: "lagging"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "consumer ACTIVE on the follower's node", func() error {
		d, err := follower.client.DescribeStreamConsumer(context.Background(), &rifflev1.DescribeStreamConsumerRequest{ConsumerArn: reg.Consumer.ConsumerArn})
		if err != nil {
			return err
		}
		if s := d.ConsumerDescription.ConsumerStatus; s != rifflev1.ConsumerStatus_CONSUMER_STATUS_ACTIVE {
			return fmt.Errorf("status %v", s)
		}
		return nil
	})
	var acked []string
	for i := range 4 {
		data := fmt.Sprintf("r-%d", i)
		out, err := c.nodes[leader].client.PutRecord(context.Background(), &rifflev1.PutRecordRequest{StreamName: "lagging", PartitionKey: "k", Data: []byte(data)})
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, out.SequenceNumber)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		recs, err := readToClaimedEnd(ctx, follower.client, "lagging", "shardId-000000000000")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != len(acked) || recs[len(recs)-1].SequenceNumber != out.SequenceNumber {
			t.Fatalf("write %d acknowledged at %s; the follower read %d records and then said it was at the end", i, out.SequenceNumber, len(recs))
		}
	}
	// A subscription the follower serves itself (as it does for a call
	// passed on to it, marked so by the gateway's header) says 0 behind
	// only once it has pushed every acknowledged record.
	subCtx, cancelSub := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-riffle-proxied", "1"), 30*time.Second)
	defer cancelSub()
	sub, err := follower.client.SubscribeToShard(subCtx, &rifflev1.SubscribeToShardRequest{ConsumerArn: reg.Consumer.ConsumerArn,
		ShardId: "shardId-000000000000", StartingPosition: trimHorizon()})
	if err != nil {
		t.Fatal(err)
	}
	pushed := 0
	for {
		ev, err := sub.Recv()
		if err != nil {
			t.Fatalf("subscription through the follower: %v after %d records", err, pushed)
		}
		pushed += len(ev.Records)
		if ev.MillisBehindLatest == 0 {
			if pushed != len(acked) {
				t.Fatalf("the follower's subscription said 0 behind after %d of %d acknowledged records", pushed, len(acked))
			}
			break
		}
	}
	cancelSub()

	// A reader that is not at the end yet hears it is behind from every
	// response until it is.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	it, err := follower.client.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: "lagging", ShardId: "shardId-000000000000",
		ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON})
	if err != nil {
		t.Fatal(err)
	}
	gr, err := follower.client.GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: it.ShardIterator, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(gr.Records) != 2 || gr.MillisBehindLatest == 0 {
		t.Fatalf("the first 2 of %d records: got %d, MillisBehindLatest %d; want 2 and behind", len(acked), len(gr.Records), gr.MillisBehindLatest)
	}
}

// TestRestartedNodeReadsAreHonest reproduces issue 13's report with real
// processes: three nodes, n1 killed with SIGKILL while six writers go on
// through the others, then started again. Reads through n1 right after it
// answers again return every acknowledged record before any response says
// the shard has nothing more.
func TestRestartedNodeReadsAreHonest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	root := t.TempDir()
	var gossip, addrs []string
	for range 3 {
		gossip, addrs = append(gossip, freePort(t)), append(addrs, freePort(t))
	}
	spawn := func(i int) *process {
		return spawnServe(t, filepath.Join(root, fmt.Sprintf("n%d", i+1)), addrs[i], "--node-id", fmt.Sprintf("n%d", i+1),
			"--gossip-addr", gossip[i], "--join", strings.Join(gossip, ","), "--bootstrap-expect", "3")
	}
	nodes := []*process{spawn(0), spawn(1), spawn(2)}
	for _, p := range nodes {
		p.waitServing(t)
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	createStream(t, n2.client, "restart", 3)
	waitActive(t, n1.client, "restart")

	n1.kill(t)
	type ack struct{ shard, seq string }
	var mu sync.Mutex
	var wg sync.WaitGroup
	var acks []ack
	ctx, stop := context.WithTimeout(context.Background(), 8*time.Second)
	for w := range 6 {
		via := []*process{n2, n3}[w%2]
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("w%d-%d", w, i)
				out, err := via.client.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "restart", PartitionKey: key, Data: make([]byte, 512)})
				if err == nil {
					mu.Lock()
					acks = append(acks, ack{out.ShardId, out.SequenceNumber})
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	stop()
	t.Logf("%d records acknowledged while n1 was down", len(acks))

	n1 = spawn(0)
	n1.waitServing(t)
	for i := range 3 {
		shard := fmt.Sprintf("shardId-%012d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		recs, err := readToClaimedEnd(ctx, n1.client, "restart", shard)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, r := range recs {
			have[r.SequenceNumber] = true
		}
		missing := 0
		for _, a := range acks {
			if a.shard == shard && !have[a.seq] {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("%s through the restarted n1: %d records, then a response saying nothing follows; %d acknowledged records missing", shard, len(recs), missing)
		}
	}
}

// TestRestartedNodeWaitsForItsOwnReplica (issue 13): right after a restart
// a node answers the API before its shard replicas have opened. A call for
// one of them waits for it rather than being passed to another node,
// which on a single node is this one again ("no replica ... already passed
// on").
func TestRestartedNodeWaitsForItsOwnReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := filepath.Join(t.TempDir(), "data")
	addr, gossip := freePort(t), freePort(t)
	p := spawnServe(t, dir, addr, "--gossip-addr", gossip)
	p.waitServing(t)
	createStream(t, p.client, "reopen", 4)
	for i := range 40 {
		key := fmt.Sprintf("k%d", i)
		if _, err := p.client.PutRecord(context.Background(), &rifflev1.PutRecordRequest{StreamName: "reopen", PartitionKey: key, Data: []byte(key)}); err != nil {
			t.Fatal(err)
		}
	}
	p.kill(t)
	p = spawnServe(t, dir, addr, "--gossip-addr", gossip)
	waitFor(t, 20*time.Second, "DescribeStreamSummary answers after the restart", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := p.client.DescribeStreamSummary(ctx, &rifflev1.DescribeStreamSummaryRequest{StreamName: "reopen"})
		return err
	})
	total := 0
	for i := range 4 {
		shard := fmt.Sprintf("shardId-%012d", i)
		it, err := p.client.GetShardIterator(context.Background(), &rifflev1.GetShardIteratorRequest{StreamName: "reopen", ShardId: shard,
			ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON})
		if err != nil {
			t.Fatalf("GetShardIterator %s right after the restart: %v", shard, err)
		}
		gr, err := p.client.GetRecords(context.Background(), &rifflev1.GetRecordsRequest{ShardIterator: it.ShardIterator})
		if err != nil {
			t.Fatalf("GetRecords %s right after the restart: %v", shard, err)
		}
		total += len(gr.Records)
	}
	if total != 40 {
		t.Fatalf("read %d of the 40 records right after the restart", total)
	}
}
