package tests

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/riffle-streams/riffle/client"
	"github.com/riffle-streams/riffle/cluster"
	"github.com/riffle-streams/riffle/node"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// sdkClient dials the SDK client to the given nodes.
func sdkClient(t testing.TB, addrs ...string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, addrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// sdkPut is a record put through the producer and what became of it.
type sdkPut struct {
	key, data string
	future    *client.PutFuture
	res       client.PutResult
	err       error
}

// putRecords puts n records over the given number of keys (data
// "prefix:key/n"), calling midway(i) before the i-th Put, closes the
// producer and returns every record with its result, in Put order.
func putRecords(t testing.TB, p *client.Producer, prefix string, n, keys int, midway func(i int, puts []*sdkPut)) []*sdkPut {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	puts := make([]*sdkPut, 0, n)
	for i := range n {
		if midway != nil {
			midway(i, puts)
		}
		key := fmt.Sprintf("key-%02d", i%keys)
		r := &sdkPut{key: key, data: fmt.Sprintf("%s:%s/%05d", prefix, key, i/keys)}
		r.future = p.Put(ctx, key, []byte(r.data))
		puts = append(puts, r)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, r := range puts {
		select {
		case <-r.future.Done():
		default:
			t.Fatalf("record %d has no result after Close", i)
		}
		r.res, r.err = r.future.Wait(ctx)
	}
	return puts
}

// tally counts the outcomes of puts and fails the test on any failure
// other than an unknown outcome.
func tally(t testing.TB, puts []*sdkPut) (acked, unknown int) {
	t.Helper()
	for _, r := range puts {
		switch {
		case r.err == nil:
			acked++
		case errors.Is(r.err, client.ErrOutcomeUnknown):
			unknown++
		default:
			t.Errorf("%s: %v", r.data, r.err)
		}
	}
	return acked, unknown
}

// checkKeyOrder checks that each key's acknowledged records got increasing
// sequence numbers in Put order.
func checkKeyOrder(t testing.TB, puts []*sdkPut) {
	t.Helper()
	last := map[string]*sdkPut{}
	for _, r := range puts {
		if r.err != nil {
			continue
		}
		if prev := last[r.key]; prev != nil {
			if prev.res.ShardID != r.res.ShardID || !seqLess(prev.res.SequenceNumber, r.res.SequenceNumber) {
				t.Errorf("%s: %s at %s/%s acknowledged before %s at %s/%s", r.key,
					prev.data, prev.res.ShardID, prev.res.SequenceNumber, r.data, r.res.ShardID, r.res.SequenceNumber)
			}
		}
		last[r.key] = r
	}
}

// readStream reads every shard of an unsplit stream with the SDK's polling
// reader until every acknowledged record has been seen and the reader is
// at the tip, and returns each shard's records in order.
func readStream(t testing.TB, cl *client.Client, stream string, shards int, puts []*sdkPut, cfg client.ReaderConfig) map[string][]*rifflev1.Record {
	t.Helper()
	want := map[string]map[string]string{} // shard -> seq -> data
	for _, r := range puts {
		if r.err == nil {
			if want[r.res.ShardID] == nil {
				want[r.res.ShardID] = map[string]string{}
			}
			want[r.res.ShardID][r.res.SequenceNumber] = r.data
		}
	}
	out := map[string][]*rifflev1.Record{}
	for s := range shards {
		shard := fmt.Sprintf("shardId-%012d", s)
		r := client.NewShardReader(cl, stream, shard, client.TrimHorizon(), cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		missing := len(want[shard])
		for {
			b, err := r.Next(ctx)
			if err != nil {
				cancel()
				r.Close()
				t.Fatalf("%s: read %d records, %d acknowledged ones missing: %v", shard, len(out[shard]), missing, err)
			}
			if b.ShardID != shard {
				t.Fatalf("reader of %s returned records of %s", shard, b.ShardID)
			}
			for _, rec := range b.Records {
				out[shard] = append(out[shard], rec)
				if data, ok := want[shard][rec.SequenceNumber]; ok {
					if data != string(rec.Data) {
						t.Fatalf("%s %s: read %q, acknowledged %q", shard, rec.SequenceNumber, rec.Data, data)
					}
					missing--
				}
			}
			if missing == 0 && b.MillisBehindLatest == 0 {
				break
			}
		}
		cancel()
		r.Close()
	}
	return out
}

// checkNoDuplicates checks contract 4 for a producer that never retries a
// write of unknown outcome: no record is stored twice.
func checkNoDuplicates(t testing.TB, stored map[string][]*rifflev1.Record) (total int) {
	t.Helper()
	seen := map[string]string{}
	for shard, recs := range stored {
		for _, r := range recs {
			if prev, dup := seen[string(r.Data)]; dup {
				t.Errorf("%s stored twice: %s and %s/%s", r.Data, prev, shard, r.SequenceNumber)
			}
			seen[string(r.Data)] = shard + "/" + r.SequenceNumber
			total++
		}
	}
	return total
}

// TestSDKProducerSurvivesNodeLoss checks the SDK against contract 1-4 on
// three nodes while one is killed: 5,000 records over 50 keys put through
// a producer dialled to every node; every future resolves, either
// acknowledged or of unknown outcome (nothing else); every acknowledged
// record is read back by the polling reader with its data; each key's
// acknowledged sequence numbers increase in Put order; and nothing is
// stored twice, since the producer never resends a write of unknown
// outcome.
func TestSDKProducerSurvivesNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startCluster(t, 3)
	const stream, shards = "sdk", 4
	createStream(t, c.nodes[0].client, stream, shards)
	var addrs []string
	for _, n := range c.nodes {
		waitActive(t, n.client, stream)
		addrs = append(addrs, n.GRPCAddr())
	}
	cl := sdkClient(t, addrs...)
	ctx := context.Background()
	p, err := client.NewProducer(ctx, cl, stream, client.ProducerConfig{
		Linger: 5 * time.Millisecond,
		// A small buffer keeps Put in step with the cluster, so that the
		// kill lands while records are in flight.
		MaxBufferedRecords: 400,
		Retry:              client.RetryPolicy{MaxAttempts: 12, MaxDelay: 2 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Time{}
	victim := settledLeader(t, c, stream) // it leads shard 0 at least
	puts := putRecords(t, p, "a", 5000, 50, func(i int, puts []*sdkPut) {
		if i != 1500 {
			return
		}
		// Kill a shard leader once the first thousand are answered.
		for _, r := range puts[:1000] {
			r.future.Wait(ctx)
		}
		c.kill(victim)
		killed = time.Now()
	})
	t.Logf("producer finished %v after the kill", time.Since(killed))
	acked, unknown := tally(t, puts)
	st := p.Stats()
	t.Logf("%d acknowledged, %d of unknown outcome, %d failed otherwise; %d PutRecords calls, %d records resent",
		acked, unknown, len(puts)-acked-unknown, st.Calls, st.Retried)
	checkKeyOrder(t, puts)

	stored := readStream(t, cl, stream, shards, puts, client.ReaderConfig{PollInterval: 50 * time.Millisecond})
	total := checkNoDuplicates(t, stored)
	t.Logf("the stream holds %d records: %d acknowledged, %d of the %d of unknown outcome",
		total, acked, total-acked, unknown)
	if total < acked || total > acked+unknown {
		t.Errorf("stream holds %d records; want between %d and %d", total, acked, acked+unknown)
	}
}

// TestSDKProducerUnderThrottling checks that throttling slows the producer
// down without failing it: with per-shard limits far below what it offers,
// every record is acknowledged (throttled entries are sent again after the
// broker's delay), each key in order, and the polling reader, itself
// throttled by the read limits, reads them all back.
func TestSDKProducerUnderThrottling(t *testing.T) {
	tn := startNodeConfig(t, node.Config{
		DataDir:    tempDataDir(t),
		GossipAddr: freePort(t), // not the default port another test may hold
		ShardLimits: cluster.Limits{
			WriteRecords: 500, WriteBytes: 1 << 20,
			ReadCalls: 5, ReadBytes: 2 << 20,
		},
	})
	const stream, shards = "throttled", 2
	createStream(t, tn.client, stream, shards)
	cl := sdkClient(t, tn.GRPCAddr())
	p, err := client.NewProducer(context.Background(), cl, stream, client.ProducerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	puts := putRecords(t, p, "t", 4000, 40, nil)
	st := p.Stats()
	t.Logf("4000 records in %v: %d calls, %d entries throttled, %d records resent", time.Since(start), st.Calls, st.Throttled, st.Retried)
	if st.Throttled == 0 {
		t.Fatal("no write was throttled: the test checks nothing unless the broker enforces the limits")
	}
	if acked, unknown := tally(t, puts); acked != len(puts) {
		t.Errorf("%d of %d acknowledged, %d of unknown outcome", acked, len(puts), unknown)
	}
	checkKeyOrder(t, puts)
	stored := readStream(t, cl, stream, shards, puts, client.ReaderConfig{})
	if total := checkNoDuplicates(t, stored); total != len(puts) {
		t.Errorf("the stream holds %d records, want %d", total, len(puts))
	}
}

// TestSDKSubscribersAcrossNodeKill checks enhanced fan-out through the
// SDK: two registered consumers subscribe to every shard while records are
// written and a node is killed, with a short subscription lifetime so that
// subscriptions also end cleanly and are taken up again. Each subscriber
// receives exactly its shard's records, each once and in the shard's
// order.
func TestSDKSubscribersAcrossNodeKill(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: fastRaft,
		subLifetime: 2 * time.Second, subHeartbeat: 200 * time.Millisecond})
	const stream, shards = "fan", 2
	createStream(t, c.nodes[0].client, stream, shards)
	var addrs []string
	for _, n := range c.nodes {
		waitActive(t, n.client, stream)
		addrs = append(addrs, n.GRPCAddr())
	}
	ctx := context.Background()
	var arns []string
	for _, name := range []string{"c1", "c2"} {
		out, err := c.nodes[0].client.RegisterStreamConsumer(ctx, &rifflev1.RegisterStreamConsumerRequest{StreamName: stream, ConsumerName: name})
		if err != nil {
			t.Fatal(err)
		}
		arn := out.GetConsumer().GetConsumerArn()
		waitFor(t, 20*time.Second, name+" ACTIVE", func() error {
			d, err := c.nodes[0].client.DescribeStreamConsumer(ctx, &rifflev1.DescribeStreamConsumerRequest{ConsumerArn: arn})
			if err != nil {
				return err
			}
			if s := d.GetConsumerDescription().GetConsumerStatus(); s != rifflev1.ConsumerStatus_CONSUMER_STATUS_ACTIVE {
				return fmt.Errorf("status %v", s)
			}
			return nil
		})
		arns = append(arns, arn)
	}
	cl := sdkClient(t, addrs...)

	// One subscriber per consumer and shard, each drained by a goroutine
	// that ends when its subscriber is closed.
	type received struct {
		sub  *client.Subscriber
		mu   sync.Mutex
		recs []*rifflev1.Record
		err  error
	}
	subs := map[string]*received{} // "consumer shard" -> received
	var wg sync.WaitGroup
	for ci, arn := range arns {
		for s := range shards {
			shard := fmt.Sprintf("shardId-%012d", s)
			r := &received{sub: client.NewSubscriber(cl, arn, shard, client.TrimHorizon(), client.SubscriberConfig{
				Retry: client.RetryPolicy{MaxAttempts: 20, MaxDelay: time.Second},
			})}
			subs[fmt.Sprintf("c%d %s", ci+1, shard)] = r
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					b, err := r.sub.Next(ctx)
					r.mu.Lock()
					if err != nil {
						if !errors.Is(err, client.ErrConsumerClosed) {
							r.err = err
						}
						r.mu.Unlock()
						return
					}
					r.recs = append(r.recs, b.Records...)
					r.mu.Unlock()
				}
			}()
		}
	}
	defer func() {
		for _, r := range subs {
			r.sub.Close()
		}
		wg.Wait()
	}()

	producer := func() *client.Producer {
		p, err := client.NewProducer(ctx, cl, stream, client.ProducerConfig{
			Linger: 5 * time.Millisecond, MaxBufferedRecords: 200,
			Retry: client.RetryPolicy{MaxAttempts: 12, MaxDelay: 2 * time.Second},
		})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	receivedCount := func(r *received) int {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.err != nil {
			t.Fatalf("subscriber: %v", r.err)
		}
		return len(r.recs)
	}

	// Phase 1: records, then every subscription outlives its lifetime and
	// is taken up again.
	puts := putRecords(t, producer(), "a", 1000, 30, nil)
	for name, r := range subs {
		waitFor(t, time.Minute, name+" subscribes again after its lifetime", func() error {
			if st := r.sub.Stats(); st.Subscriptions < 2 {
				return fmt.Errorf("%d subscriptions", st.Subscriptions)
			}
			return nil
		})
	}
	// Phase 2: the node serving shard 0's subscriptions (its leader's)
	// is killed while records are written.
	victim := settledLeader(t, c, stream)
	puts = append(puts, putRecords(t, producer(), "b", 2000, 30, func(i int, puts []*sdkPut) {
		if i == 600 {
			for _, r := range puts[:300] {
				r.future.Wait(ctx)
			}
			c.kill(victim)
		}
	})...)
	acked, unknown := tally(t, puts)
	t.Logf("%d acknowledged, %d of unknown outcome", acked, unknown)
	checkKeyOrder(t, puts)
	stored := readStream(t, cl, stream, shards, puts, client.ReaderConfig{PollInterval: 50 * time.Millisecond})

	for name, r := range subs {
		shard := name[3:]
		want := stored[shard]
		waitFor(t, time.Minute, name+" receives every record", func() error {
			if n := receivedCount(r); n < len(want) {
				return fmt.Errorf("%d of %d records", n, len(want))
			}
			return nil
		})
		r.mu.Lock()
		got := r.recs
		r.mu.Unlock()
		if len(got) != len(want) {
			t.Errorf("%s: received %d records, the shard holds %d", name, len(got), len(want))
		}
		for i := range min(len(got), len(want)) {
			if got[i].SequenceNumber != want[i].SequenceNumber || string(got[i].Data) != string(want[i].Data) {
				t.Errorf("%s: record %d is %s %q, the shard has %s %q", name, i,
					got[i].SequenceNumber, got[i].Data, want[i].SequenceNumber, want[i].Data)
				break
			}
		}
		st := r.sub.Stats()
		t.Logf("%s: %d records, %d subscriptions, %d failed", name, len(got), st.Subscriptions, st.Failures)
		if shard == "shardId-000000000000" && st.Failures == 0 {
			t.Errorf("%s: no subscription failed although the node serving it was killed", name)
		}
	}
}
