package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/riffle-streams/riffle/cluster"
	"github.com/riffle-streams/riffle/node"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// registerConsumer registers a consumer and waits until it is ACTIVE.
func registerConsumer(t testing.TB, c rifflev1.StreamsClient, stream, name string) string {
	t.Helper()
	ctx := context.Background()
	out, err := c.RegisterStreamConsumer(ctx, &rifflev1.RegisterStreamConsumerRequest{StreamName: stream, ConsumerName: name})
	if err != nil {
		t.Fatalf("RegisterStreamConsumer %s: %v", name, err)
	}
	arn := out.Consumer.ConsumerArn
	waitFor(t, 10*time.Second, name+" ACTIVE", func() error {
		d, err := c.DescribeStreamConsumer(ctx, &rifflev1.DescribeStreamConsumerRequest{ConsumerArn: arn})
		if err != nil {
			return err
		}
		if s := d.ConsumerDescription.ConsumerStatus; s != rifflev1.ConsumerStatus_CONSUMER_STATUS_ACTIVE {
			return fmt.Errorf("status %v", s)
		}
		return nil
	})
	return arn
}

// killAtEnd ends the test by killing c's nodes rather than shutting them
// down: a graceful shutdown of a node waits up to its 10 s deadline for
// peers' raft pipeline streams to close, a cost these tests need not pay.
func killAtEnd(t testing.TB, c *testCluster) {
	t.Cleanup(func() {
		for i, n := range c.nodes {
			if n != nil && n.conn != nil {
				c.kill(i)
			}
		}
	})
}

// singleNode starts one node with cfg on ports of its own, gossip too, so
// that it can run beside other single-node tests on the machine.
func singleNode(t testing.TB, cfg node.Config) *testNode {
	t.Helper()
	cfg.GossipAddr = freePort(t)
	return startNodeConfig(t, cfg)
}

// settledLeader waits until shard 0 of stream is led by its preferred
// replica, where the balancer leaves leaderships, and returns that node.
// Subscriptions are served on the leader's node; a test of what the leader
// does must not race the balancer's first move.
func settledLeader(t testing.TB, c *testCluster, stream string) int {
	t.Helper()
	leader := -1
	waitFor(t, 30*time.Second, "the preferred replica leading "+stream, func() error {
		for i, n := range c.nodes {
			if n == nil || n.conn == nil {
				continue
			}
			st := n.Host().Meta().State().Streams[stream]
			if st == nil {
				continue
			}
			sh := st.Shards[0]
			if r, err := n.Host().Shard(st, sh); err == nil && r.IsLeader() && sh.Replicas[0] == n.Host().NodeID() {
				leader = i
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	return leader
}

func shardID(i int) string { return cluster.ShardID(uint64(i)) }

func trimHorizon() *rifflev1.StartingPosition {
	return &rifflev1.StartingPosition{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON}
}

// follower is a subscriber as a client library would write one: it
// subscribes a consumer to a shard and, whenever a call ends (its
// lifetime, or a retryable error), subscribes again after the last
// continuation number, through the next node when the call failed. It
// keeps every record it receives; the test owns it and stops it.
type follower struct {
	clients  []rifflev1.StreamsClient
	shard    string
	dropData bool
	cancel   context.CancelFunc
	done     chan struct{}

	mu         sync.Mutex
	req        *rifflev1.SubscribeToShardRequest // the next subscription
	records    []*rifflev1.Record
	events     int
	subscribes int
	retries    []error // calls that ended with a retryable error
	fatal      error   // a call that ended with any other error
	finished   bool    // the last event of a closed shard arrived
}

// follow starts a follower; clients[0] takes the first subscription.
func follow(t testing.TB, clients []rifflev1.StreamsClient, arn, shard string, start *rifflev1.StartingPosition) *follower {
	return startFollower(t, clients, arn, shard, start, false)
}

// startFollower starts a follower that keeps records without their data
// when dropData is set, so that its memory does not grow with the data.
func startFollower(t testing.TB, clients []rifflev1.StreamsClient, arn, shard string, start *rifflev1.StartingPosition, dropData bool) *follower {
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{clients: clients, shard: shard, cancel: cancel, done: make(chan struct{}), dropData: dropData,
		req: &rifflev1.SubscribeToShardRequest{ConsumerArn: arn, ShardId: shard, StartingPosition: start}}
	go f.run(ctx)
	t.Cleanup(f.stop)
	return f
}

func (f *follower) stop() {
	f.cancel()
	<-f.done
}

func (f *follower) run(ctx context.Context) {
	defer close(f.done)
	next := 0
	for ctx.Err() == nil {
		f.mu.Lock()
		f.subscribes++
		req := f.req
		f.mu.Unlock()
		stream, err := f.clients[next%len(f.clients)].SubscribeToShard(ctx, req)
		for err == nil {
			var ev *rifflev1.SubscribeToShardEvent
			if ev, err = stream.Recv(); err == nil {
				f.receive(ev)
			}
		}
		if ctx.Err() != nil {
			return
		}
		f.mu.Lock()
		finished := f.finished
		if !errors.Is(err, io.EOF) {
			if resumable(err) {
				f.retries = append(f.retries, err)
			} else {
				f.fatal = err
			}
		}
		fatal := f.fatal
		f.mu.Unlock()
		if finished || fatal != nil {
			return
		}
		if !errors.Is(err, io.EOF) {
			next++ // try another node
			select {
			case <-time.After(50 * time.Millisecond): // a client's retry backoff
			case <-ctx.Done():
				return
			}
		}
	}
}

// receive keeps an event's records and moves the resume position after its
// continuation number.
func (f *follower) receive(ev *rifflev1.SubscribeToShardEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events++
	for _, r := range ev.Records {
		if f.dropData {
			r = &rifflev1.Record{SequenceNumber: r.SequenceNumber}
		}
		f.records = append(f.records, r)
	}
	pos := &rifflev1.StartingPosition{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER,
		SequenceNumber: ev.ContinuationSequenceNumber}
	switch {
	case len(ev.ChildShards) > 0:
		f.finished = true
	case ev.ContinuationSequenceNumber == "":
		// Nothing precedes the position: the documented resume point.
		pos = trimHorizon()
	}
	f.req = &rifflev1.SubscribeToShardRequest{ConsumerArn: f.req.ConsumerArn, ShardId: f.req.ShardId, StartingPosition: pos}
}

func (f *follower) snapshot() (recs []*rifflev1.Record, subscribes int, retries []error, fatal error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*rifflev1.Record(nil), f.records...), f.subscribes, append([]error(nil), f.retries...), f.fatal
}

// waitFor waits until the follower has received every one of seqs, and
// fails at once when its subscription ended for good.
func (f *follower) waitFor(t testing.TB, timeout time.Duration, seqs []string) {
	t.Helper()
	want := map[string]bool{}
	for _, s := range seqs {
		want[s] = true
	}
	waitFor(t, timeout, fmt.Sprintf("%d records through %s", len(seqs), f.shard), func() error {
		recs, _, _, fatal := f.snapshot()
		if fatal != nil {
			t.Fatalf("subscription to %s ended: %v", f.shard, fatal)
		}
		missing := len(want)
		for _, r := range recs {
			if want[r.SequenceNumber] {
				missing--
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d not yet received", missing, len(want))
		}
		return nil
	})
}

// resumable reports whether a subscription that ended with err can be
// resumed from its continuation number: the server said the call may be
// retried, or the connection to the node broke.
func resumable(err error) bool {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unavailable, codes.Canceled:
		return true
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Metadata["retryable"] == "true"
		}
	}
	return false
}

// checkExactlyOnce checks contract 3 for a subscriber: it received exactly
// the shard's records (as GetRecords reads them), in order, none twice,
// none missing, and among them every acknowledged write.
func checkExactlyOnce(t testing.TB, what string, got, shard []*rifflev1.Record, acked []string) {
	t.Helper()
	for i := 1; i < len(got); i++ {
		if !seqLess(got[i-1].SequenceNumber, got[i].SequenceNumber) {
			t.Fatalf("%s: record %d (%s) does not follow record %d (%s): duplicate or out of order",
				what, i, got[i].SequenceNumber, i-1, got[i-1].SequenceNumber)
		}
	}
	if len(got) != len(shard) {
		t.Fatalf("%s: received %d records, the shard holds %d", what, len(got), len(shard))
	}
	for i := range got {
		if got[i].SequenceNumber != shard[i].SequenceNumber || !bytes.Equal(got[i].Data, shard[i].Data) {
			t.Fatalf("%s: record %d is %s %q, the shard has %s %q", what, i, got[i].SequenceNumber, got[i].Data, shard[i].SequenceNumber, shard[i].Data)
		}
	}
	have := map[string]bool{}
	for _, r := range got {
		have[r.SequenceNumber] = true
	}
	for _, s := range acked {
		if !have[s] {
			t.Fatalf("%s: acknowledged record %s never received", what, s)
		}
	}
}

// TestSubscribersGetEveryRecordOnce checks enhanced fan-out on three nodes:
// two consumers subscribed to every shard of a four-shard stream, through
// different nodes (most calls relayed to the shard leader), each receive
// every record written meanwhile exactly once, in order, as GetRecords
// reads the shard, on a single subscription each.
func TestSubscribersGetEveryRecordOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startCluster(t, 3)
	killAtEnd(t, c)
	clients := []rifflev1.StreamsClient{c.nodes[0].client, c.nodes[1].client, c.nodes[2].client}
	createStream(t, clients[0], "fan", 4)
	arns := []string{registerConsumer(t, clients[1], "fan", "a"), registerConsumer(t, clients[2], "fan", "b")}
	type key struct{ consumer, shard int }
	followers := map[key]*follower{}
	for ci, arn := range arns {
		for sh := 0; sh < 4; sh++ {
			first := (sh + ci) % 3
			order := []rifflev1.StreamsClient{clients[first], clients[(first+1)%3], clients[(first+2)%3]}
			followers[key{ci, sh}] = follow(t, order, arn, shardID(sh), trimHorizon())
		}
	}

	var mu sync.Mutex
	acked := map[string][]string{}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < 10; b++ {
				req := &rifflev1.PutRecordsRequest{StreamName: "fan"}
				for i := 0; i < 50; i++ {
					k := fmt.Sprintf("w%d-%d-%d", w, b, i)
					req.Records = append(req.Records, &rifflev1.PutRecordsRequestEntry{PartitionKey: k, Data: []byte(k)})
				}
				out, err := clients[w%3].PutRecords(context.Background(), req)
				if err != nil {
					t.Errorf("PutRecords: %v", err)
					return
				}
				mu.Lock()
				for _, r := range out.Records {
					if r.ErrorCode != "" {
						t.Errorf("PutRecords entry: %s %s", r.ErrorCode, r.ErrorMessage)
						continue
					}
					acked[r.ShardId] = append(acked[r.ShardId], r.SequenceNumber)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	total := 0
	for sh := 0; sh < 4; sh++ {
		shard := readShard(t, clients[sh%3], "fan", shardID(sh))
		total += len(acked[shardID(sh)])
		for ci := range arns {
			f := followers[key{ci, sh}]
			f.waitFor(t, 20*time.Second, acked[shardID(sh)])
			got, subscribes, retries, _ := f.snapshot()
			checkExactlyOnce(t, fmt.Sprintf("consumer %d, %s", ci, shardID(sh)), got, shard, acked[shardID(sh)])
			if subscribes != 1 {
				t.Errorf("consumer %d, %s: %d subscriptions (retries %v), want 1", ci, shardID(sh), subscribes, retries)
			}
		}
	}
	if total != 2000 {
		t.Fatalf("%d records acknowledged, want 2000", total)
	}
}

// TestSubscriptionLifetimeResumesWithoutGapOrDuplicate checks that a
// subscription ends cleanly after its lifetime and that a subscriber that
// resumes after the continuation number of its last event gets every
// record once while writes go on across the boundaries.
func TestSubscriptionLifetimeResumesWithoutGapOrDuplicate(t *testing.T) {
	tn := singleNode(t, node.Config{DataDir: tempDataDir(t), SubscriptionLifetime: time.Second})
	c := tn.client
	createStream(t, c, "life", 1)
	arn := registerConsumer(t, c, "life", "l")
	f := follow(t, []rifflev1.StreamsClient{c}, arn, shardID(0), trimHorizon())

	var acked []string
	for i := 0; ; i++ {
		_, subscribes, retries, fatal := f.snapshot()
		if fatal != nil || len(retries) > 0 {
			t.Fatalf("subscription ended with %v (retryable: %v)", fatal, retries)
		}
		if subscribes >= 5 {
			break // four lifetimes passed during the writes
		}
		out, err := c.PutRecord(context.Background(), &rifflev1.PutRecordRequest{StreamName: "life", PartitionKey: "k", Data: []byte(strconv.Itoa(i))})
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, out.SequenceNumber)
	}
	f.waitFor(t, 10*time.Second, acked)
	f.stop()
	got, subscribes, _, _ := f.snapshot()
	checkExactlyOnce(t, "across lifetimes", got, readShard(t, c, "life", shardID(0)), acked)
	t.Logf("%d records over %d subscriptions", len(got), subscribes)
}

// TestSubscriptionStartingPositions checks that a subscription starts where
// GetShardIterator with the same position would, for every iterator type;
// that before anything is sent the continuation is the record before the
// position, and empty at the start of a shard; that a quiet shard gets
// an event every heartbeat; that events hold at most 1 MiB; and that
// millis_behind_latest says how far behind a subscriber starting at old
// records is, and reaches 0 at the tip.
func TestSubscriptionStartingPositions(t *testing.T) {
	const heartbeat = 200 * time.Millisecond
	tn := singleNode(t, node.Config{DataDir: tempDataDir(t), SubscriptionHeartbeat: heartbeat})
	c, ctx := tn.client, context.Background()
	createStream(t, c, "pos", 1)

	// An empty shard: nothing precedes the position.
	if ev := firstEvent(t, c, registerConsumer(t, c, "pos", "empty"), trimHorizon()); len(ev.Records) != 0 || ev.ContinuationSequenceNumber != "" || len(ev.ChildShards) != 0 {
		t.Fatalf("first event on an empty shard: %v; want no records, no continuation, no child shards", ev)
	}

	for i := 0; i < 100; i++ {
		if _, err := c.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "pos", PartitionKey: "k", Data: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	recs := readShard(t, c, "pos", shardID(0))
	for i, pos := range []*rifflev1.StartingPosition{
		{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_SEQUENCE_NUMBER, SequenceNumber: recs[40].SequenceNumber},
		{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER, SequenceNumber: recs[40].SequenceNumber},
		{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER, SequenceNumber: recs[99].SequenceNumber},
		{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON},
		{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_TIMESTAMP, Timestamp: recs[60].ApproximateArrivalTimestamp},
		{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_LATEST},
	} {
		it, err := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: "pos", ShardId: shardID(0),
			ShardIteratorType: pos.Type, StartingSequenceNumber: pos.SequenceNumber, Timestamp: pos.Timestamp})
		if err != nil {
			t.Fatal(err)
		}
		arn := registerConsumer(t, c, "pos", fmt.Sprintf("p%d", i))
		stream, err := c.SubscribeToShard(ctx, &rifflev1.SubscribeToShardRequest{ConsumerArn: arn, ShardId: shardID(0), StartingPosition: pos})
		if err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil {
			t.Fatalf("%v: %v", pos, err)
		}
		// Nothing new was written: what GetRecords returns from the
		// iterator is what the first event carries.
		gr, err := c.GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: it.ShardIterator})
		if err != nil {
			t.Fatal(err)
		}
		if len(gr.Records) == 0 {
			// At the tip: the next record written is the first received,
			// and the continuation names the record before it.
			if len(first.Records) != 0 || first.ContinuationSequenceNumber != recs[len(recs)-1].SequenceNumber || first.MillisBehindLatest != 0 {
				t.Fatalf("%v: first event %v; want no records, continuation %s", pos, first, recs[len(recs)-1].SequenceNumber)
			}
			out, err := c.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "pos", PartitionKey: "k", Data: []byte("new")})
			if err != nil {
				t.Fatal(err)
			}
			next, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if len(next.Records) != 1 || next.Records[0].SequenceNumber != out.SequenceNumber || next.ContinuationSequenceNumber != out.SequenceNumber {
				t.Fatalf("%v: after a write: %v; want the record %s", pos, next, out.SequenceNumber)
			}
			recs = append(recs, next.Records[0])
			if pos.Type == rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_LATEST {
				checkHeartbeats(t, stream, heartbeat, out.SequenceNumber)
			}
			continue
		}
		if len(first.Records) != len(gr.Records) || first.Records[0].SequenceNumber != gr.Records[0].SequenceNumber ||
			first.ContinuationSequenceNumber != gr.Records[len(gr.Records)-1].SequenceNumber {
			t.Fatalf("%v: subscription starts at %s with %d records, GetShardIterator at %s with %d",
				pos, first.Records[0].SequenceNumber, len(first.Records), gr.Records[0].SequenceNumber, len(gr.Records))
		}
	}

	// Far behind: 4 MiB written before subscribing arrive in events of at
	// most 1 MiB that say how far behind they are.
	createStream(t, c, "far", 1)
	for b := 0; b < 8; b++ {
		req := &rifflev1.PutRecordsRequest{StreamName: "far"}
		for i := 0; i < 5; i++ {
			req.Records = append(req.Records, &rifflev1.PutRecordsRequestEntry{PartitionKey: "k", Data: make([]byte, 100<<10)})
		}
		if _, err := c.PutRecords(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := c.SubscribeToShard(sctx, &rifflev1.SubscribeToShardRequest{ConsumerArn: registerConsumer(t, c, "far", "far"),
		ShardId: shardID(0), StartingPosition: trimHorizon()})
	if err != nil {
		t.Fatal(err)
	}
	received, maxBehind := 0, int64(0)
	for received < 40 {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, r := range ev.Records {
			size += len(r.Data) + len(r.PartitionKey)
		}
		if size > 1<<20 {
			t.Fatalf("event of %d bytes; at most 1 MiB", size)
		}
		received += len(ev.Records)
		maxBehind = max(maxBehind, ev.MillisBehindLatest)
		if received == 40 && ev.MillisBehindLatest != 0 {
			t.Fatalf("at the tip millis_behind_latest is %d, want 0", ev.MillisBehindLatest)
		}
	}
	if maxBehind <= 0 {
		t.Fatalf("a subscriber starting 4 MiB behind was never told it was behind")
	}
}

// firstEvent returns the first event of a subscription.
func firstEvent(t testing.TB, c rifflev1.StreamsClient, arn string, pos *rifflev1.StartingPosition) *rifflev1.SubscribeToShardEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := c.SubscribeToShard(ctx, &rifflev1.SubscribeToShardRequest{ConsumerArn: arn, ShardId: shardID(0), StartingPosition: pos})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// checkHeartbeats reads a quiet subscription's next events: empty, about a
// heartbeat apart, each with the continuation and nothing behind.
func checkHeartbeats(t testing.TB, stream grpc.ServerStreamingClient[rifflev1.SubscribeToShardEvent], heartbeat time.Duration, continuation string) {
	t.Helper()
	last := time.Now()
	for i := 0; i < 4; i++ {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		gap := time.Since(last)
		last = time.Now()
		if len(ev.Records) != 0 || ev.ContinuationSequenceNumber != continuation || ev.MillisBehindLatest != 0 {
			t.Fatalf("heartbeat %d: %v; want an empty event with continuation %s", i, ev, continuation)
		}
		if i > 0 && (gap < heartbeat*3/4 || gap > 3*heartbeat) {
			t.Fatalf("heartbeat %d came %v after the previous; heartbeat is %v", i, gap, heartbeat)
		}
	}
}

// expectStreamException checks how a subscription ended.
func expectStreamException(t testing.TB, what string, err error, exception string, code codes.Code) {
	t.Helper()
	expectException(t, what, exception, code, func() error { return err })
}

// recvUntilError reads a subscription until it ends and returns how.
func recvUntilError(stream grpc.ServerStreamingClient[rifflev1.SubscribeToShardEvent]) error {
	for {
		if _, err := stream.Recv(); err != nil {
			return err
		}
	}
}

// TestSubscriptionReplacement checks Kinesis's rule for a second
// subscription of a consumer to a shard, through different nodes of a
// cluster: within 5 seconds of the first it is refused with ResourceInUse;
// after that it takes over, and the first ends with ResourceInUse.
func TestSubscriptionReplacement(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startCluster(t, 3)
	killAtEnd(t, c)
	createStream(t, c.nodes[0].client, "repl", 1)
	settledLeader(t, c, "repl")
	arn := registerConsumer(t, c.nodes[0].client, "repl", "r")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := &rifflev1.SubscribeToShardRequest{ConsumerArn: arn, ShardId: shardID(0), StartingPosition: trimHorizon()}
	first, err := c.nodes[1].client.SubscribeToShard(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Recv(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()

	early, err := c.nodes[2].client.SubscribeToShard(ctx, req)
	if err == nil {
		if _, err = early.Recv(); err == nil {
			t.Fatalf("a second subscription %v after the first was accepted", time.Since(started))
		}
	}
	if time.Since(started) < 4*time.Second { // well within the 5 s
		expectStreamException(t, "second subscription within 5 s", err, "ResourceInUseException", codes.FailedPrecondition)
	}

	// The hold lasts 5 seconds; a subscriber that waits for it waits here.
	waitFor(t, 10*time.Second, "5 seconds after the first subscription", func() error {
		if d := time.Since(started); d < 5100*time.Millisecond {
			return fmt.Errorf("%v", d)
		}
		return nil
	})
	second, err := c.nodes[0].client.SubscribeToShard(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Recv(); err != nil {
		t.Fatalf("a subscription 5 s after the first: %v", err)
	}
	err = recvUntilError(first)
	expectStreamException(t, "replaced subscription", err, "ResourceInUseException", codes.FailedPrecondition)
	if resumable(err) {
		t.Errorf("a replaced subscription is retryable: %v", err)
	}
	// The new one is served: a record written now arrives.
	out, err := c.nodes[2].client.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "repl", PartitionKey: "k", Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := second.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if len(ev.Records) > 0 {
			if ev.Records[0].SequenceNumber != out.SequenceNumber {
				t.Fatalf("got %s, wrote %s", ev.Records[0].SequenceNumber, out.SequenceNumber)
			}
			break
		}
	}
}

// TestSubscriptionsSurviveLeaderLoss checks that subscriptions outlive the
// loss of the shard leader's node: a subscriber connected to the leader and
// one relayed through another node both resume from their continuation
// numbers through surviving nodes, and across the whole run each receives
// every acknowledged record once, in order, with no gap.
func TestSubscriptionsSurviveLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startCluster(t, 3)
	killAtEnd(t, c)
	createStream(t, c.nodes[0].client, "lose", 1)
	leader := settledLeader(t, c, "lose")
	other := (leader + 1) % 3
	third := (leader + 2) % 3
	arn1 := registerConsumer(t, c.nodes[0].client, "lose", "direct")
	arn2 := registerConsumer(t, c.nodes[0].client, "lose", "relayed")
	direct := follow(t, []rifflev1.StreamsClient{c.nodes[leader].client, c.nodes[other].client, c.nodes[third].client}, arn1, shardID(0), trimHorizon())
	relayed := follow(t, []rifflev1.StreamsClient{c.nodes[other].client, c.nodes[third].client, c.nodes[leader].client}, arn2, shardID(0), trimHorizon())

	var acked []string
	write := func(n int, via []int) {
		for i := 0; len(acked) < n; i++ {
			wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			out, err := c.nodes[via[i%len(via)]].client.PutRecord(wctx, &rifflev1.PutRecordRequest{
				StreamName: "lose", PartitionKey: "k", Data: []byte(fmt.Sprint(len(acked)))})
			cancel()
			if err == nil {
				acked = append(acked, out.SequenceNumber)
			}
		}
	}
	write(200, []int{0, 1, 2})
	direct.waitFor(t, 10*time.Second, acked[:100])
	relayed.waitFor(t, 10*time.Second, acked[:100])
	c.kill(leader)
	write(400, []int{other, third})
	direct.waitFor(t, 20*time.Second, acked)
	relayed.waitFor(t, 20*time.Second, acked)
	shard := readShard(t, c.nodes[other].client, "lose", shardID(0))
	for name, f := range map[string]*follower{"direct": direct, "relayed": relayed} {
		f.stop()
		got, subscribes, retries, _ := f.snapshot()
		checkExactlyOnce(t, name, got, shard, acked)
		if subscribes < 2 {
			t.Errorf("%s: %d subscriptions; the leader's loss should have ended the first", name, subscribes)
		}
		t.Logf("%s: %d records, %d subscriptions, ended by %v", name, len(got), subscribes, retries)
	}
}

// heapAfterGC is the live heap of this process.
func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestSlowSubscriberIsBounded checks that backpressure is bounded: a
// subscriber that stops reading while 64 MiB are written costs the server
// about one event of memory, not the backlog, and a second consumer of the
// same shard keeps receiving at full pace meanwhile.
func TestSlowSubscriberIsBounded(t *testing.T) {
	tn := singleNode(t, node.Config{DataDir: tempDataDir(t)})
	c, ctx := tn.client, context.Background()
	createStream(t, c, "slow", 1)
	stalledARN := registerConsumer(t, c, "slow", "stalled")
	fast := startFollower(t, []rifflev1.StreamsClient{c}, registerConsumer(t, c, "slow", "fast"), shardID(0), trimHorizon(), true)

	// Writes of 64 KiB, one raft entry each: the shard's raft log cache
	// keeps the last 256 entries in memory whoever reads, so it is filled
	// before the baseline and stays the same size after it.
	put := func(n int) []string {
		var seqs []string
		for b := 0; b < n; b++ {
			req := &rifflev1.PutRecordsRequest{StreamName: "slow"}
			for i := 0; i < 16; i++ {
				req.Records = append(req.Records, &rifflev1.PutRecordsRequestEntry{PartitionKey: "k", Data: make([]byte, 4<<10)})
			}
			out, err := c.PutRecords(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range out.Records {
				seqs = append(seqs, r.SequenceNumber)
			}
		}
		return seqs
	}
	fast.waitFor(t, 20*time.Second, put(300))

	// The stalled subscriber has a connection of its own with a fixed
	// flow-control window: what it buffers is client memory, which this
	// process also holds, and gRPC's window tuning would otherwise let it
	// grow with the other subscriber's traffic on a shared connection.
	conn, err := grpc.NewClient(tn.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(1<<20),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(node.MaxMessageBytes)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stalled, err := rifflev1.NewStreamsClient(conn).SubscribeToShard(sctx, &rifflev1.SubscribeToShardRequest{
		ConsumerArn: stalledARN, ShardId: shardID(0), StartingPosition: &rifflev1.StartingPosition{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_LATEST}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stalled.Recv(); err != nil { // subscribed; it reads no more
		t.Fatal(err)
	}

	before := heapAfterGC()
	start := time.Now()
	seqs := put(1024) // 64 MiB
	wrote := time.Since(start)
	fast.waitFor(t, 20*time.Second, seqs)
	caughtUp := time.Since(start)
	after := heapAfterGC()
	growth := int64(after) - int64(before)
	t.Logf("64 MiB written in %v; the reading consumer had all of it after %v; heap %.1f -> %.1f MiB (growth %.1f MiB) with a stalled subscriber",
		wrote.Round(time.Millisecond), caughtUp.Round(time.Millisecond), float64(before)/(1<<20), float64(after)/(1<<20), float64(growth)/(1<<20))
	if growth > 24<<20 {
		t.Fatalf("heap grew by %.1f MiB while a stalled subscriber fell 64 MiB behind", float64(growth)/(1<<20))
	}
	if lag := caughtUp - wrote; lag > 2*time.Second {
		t.Fatalf("the reading consumer finished %v after the writes: slowed by the stalled one", lag)
	}
	// The stalled subscriber was held back, not dropped: it reads on.
	ev, err := stalled.Recv()
	if err != nil || len(ev.Records) == 0 || ev.Records[0].SequenceNumber != seqs[0] {
		t.Fatalf("the stalled subscriber reading again: %v %v; want records from %s", ev, err, seqs[0])
	}
}

// eventLog records when a subscriber received how many bytes.
type eventLog struct {
	at    []time.Time
	total []int
}

// TestFanOutLimitPerConsumer checks the per-consumer fan-out limit: with
// 256 KiB/s per consumer per shard, each of two consumers reading a
// backlog receives within a few percent of 256 KiB/s once the first
// second's burst is over, each with its own allowance (neither slows the
// other), and the fan-out series (bytes, records, paced time, millis
// behind, active subscriptions) show it in /metrics.
func TestFanOutLimitPerConsumer(t *testing.T) {
	const limit = 256 << 10
	tn := singleNode(t, node.Config{DataDir: tempDataDir(t), ShardLimits: cluster.Limits{FanOutBytes: limit}})
	c, ctx := tn.client, context.Background()
	createStream(t, c, "paced", 1)
	for b := 0; b < 6; b++ { // 3 MiB, more than 5 seconds' worth
		req := &rifflev1.PutRecordsRequest{StreamName: "paced"}
		for i := 0; i < 64; i++ {
			req.Records = append(req.Records, &rifflev1.PutRecordsRequestEntry{PartitionKey: "k", Data: make([]byte, 8<<10)})
		}
		if _, err := c.PutRecords(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	arns := []string{registerConsumer(t, c, "paced", "one"), registerConsumer(t, c, "paced", "two")}
	logs := make([]eventLog, len(arns))
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i, arn := range arns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream, err := c.SubscribeToShard(sctx, &rifflev1.SubscribeToShardRequest{ConsumerArn: arn, ShardId: shardID(0), StartingPosition: trimHorizon()})
			if err != nil {
				t.Error(err)
				return
			}
			total := 0
			for time.Since(start) < 5*time.Second {
				ev, err := stream.Recv()
				if err != nil {
					t.Error(err)
					return
				}
				for _, r := range ev.Records {
					total += len(r.Data) + len(r.PartitionKey)
				}
				logs[i].at = append(logs[i].at, time.Now())
				logs[i].total = append(logs[i].total, total)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, l := range logs {
		// The rate between the first event after 1 s and the last one.
		k := 0
		for k < len(l.at) && l.at[k].Sub(start) < time.Second {
			k++
		}
		last := len(l.at) - 1
		if k >= last {
			t.Fatalf("consumer %d: too few events after the first second (%d)", i, len(l.at))
		}
		rate := float64(l.total[last]-l.total[k]) / l.at[last].Sub(l.at[k]).Seconds()
		t.Logf("consumer %d: %.1f KiB/s over %v (limit %d KiB/s); %d bytes in the first second",
			i, rate/1024, l.at[last].Sub(l.at[k]).Round(time.Millisecond), limit>>10, l.total[k])
		if math.Abs(rate-limit)/limit > 0.05 {
			t.Errorf("consumer %d received %.1f KiB/s; the limit is %d KiB/s", i, rate/1024, limit>>10)
		}
	}
	resp, err := http.Get("http://" + tn.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, name := range []string{"one", "two"} {
		re := regexp.MustCompile(`riffle_fanout_paced_seconds_total\{consumer="` + name + `",shard="shardId-000000000000",stream="paced"\} ([0-9.e+]+)`)
		m := re.FindSubmatch(body)
		if m == nil {
			t.Fatalf("no paced seconds for consumer %s in /metrics", name)
		}
		if v, _ := strconv.ParseFloat(string(m[1]), 64); v < 2 {
			t.Errorf("consumer %s waited %.2f s on its limit by the metrics; it read a backlog at the limit for 4 s", name, v)
		}
		for _, series := range []string{
			`riffle_fanout_bytes_total\{consumer="` + name + `",shard="shardId-000000000000",stream="paced"\} [1-9]`,
			`riffle_fanout_records_total\{consumer="` + name + `",shard="shardId-000000000000",stream="paced"\} [1-9]`,
			`riffle_fanout_millis_behind_latest\{consumer="` + name + `",shard="shardId-000000000000",stream="paced"\} [1-9]`,
			`riffle_subscriptions_active\{consumer="` + name + `",shard="shardId-000000000000",stream="paced"\} 1\n`,
		} {
			if !regexp.MustCompile(series).Match(body) {
				t.Errorf("/metrics lacks %s", series)
			}
		}
	}
}

// TestDeregisterEndsSubscriptions checks that deregistering a consumer
// ends its subscriptions with ResourceNotFound within about a second, also
// one relayed through a node that does not serve it.
func TestDeregisterEndsSubscriptions(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startCluster(t, 3)
	killAtEnd(t, c)
	createStream(t, c.nodes[0].client, "dereg", 2)
	arn := registerConsumer(t, c.nodes[0].client, "dereg", "d")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st := c.nodes[0].Host().Meta().State().Streams["dereg"]
	var streams []grpc.ServerStreamingClient[rifflev1.SubscribeToShardEvent]
	for sh := 0; sh < 2; sh++ {
		// Through a node that does not lead the shard: relayed.
		via := 0
		waitFor(t, 10*time.Second, "a follower of "+shardID(sh), func() error {
			for i, n := range c.nodes {
				if r, err := n.Host().Shard(st, st.Shards[sh]); err == nil && r.Leader() != "" && !r.IsLeader() {
					via = i
					return nil
				}
			}
			return fmt.Errorf("no follower knows a leader")
		})
		stream, err := c.nodes[via].client.SubscribeToShard(ctx, &rifflev1.SubscribeToShardRequest{ConsumerArn: arn, ShardId: shardID(sh), StartingPosition: trimHorizon()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		streams = append(streams, stream)
	}
	if _, err := c.nodes[0].client.DeregisterStreamConsumer(ctx, &rifflev1.DeregisterStreamConsumerRequest{ConsumerArn: arn}); err != nil {
		t.Fatal(err)
	}
	deregistered := time.Now()
	for sh, stream := range streams {
		err := recvUntilError(stream)
		took := time.Since(deregistered)
		expectStreamException(t, fmt.Sprintf("subscription to %s after deregistration", shardID(sh)), err, "ResourceNotFoundException", codes.NotFound)
		if took > 2*time.Second {
			t.Errorf("subscription to %s ended %v after deregistration", shardID(sh), took)
		}
	}
}

// TestShutdownEndsSubscriptions checks that a node shutting down ends the
// subscriptions it serves at once, with a retryable ServiceUnavailable,
// instead of holding its shutdown until their lifetime is over.
func TestShutdownEndsSubscriptions(t *testing.T) {
	tn := singleNode(t, node.Config{DataDir: tempDataDir(t)})
	createStream(t, tn.client, "bye", 1)
	arn := registerConsumer(t, tn.client, "bye", "b")
	// A connection of its own: the harness closes its own before stopping.
	conn, err := grpc.NewClient(tn.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := rifflev1.NewStreamsClient(conn).SubscribeToShard(ctx, &rifflev1.SubscribeToShardRequest{
		ConsumerArn: arn, ShardId: shardID(0), StartingPosition: trimHorizon()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- recvUntilError(stream) }()
	start := time.Now()
	tn.stop(t)
	took := time.Since(start)
	expectStreamException(t, "subscription on a node shutting down", <-ended, "ServiceUnavailable", codes.Unavailable)
	if took > 5*time.Second {
		t.Fatalf("shutdown with a subscription open took %v", took)
	}
}
