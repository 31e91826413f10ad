package tests

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/riffle-streams/riffle/node"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// hibernateAfter is the idle time of the hibernation tests' nodes.
const hibernateAfter = 300 * time.Millisecond

// asleep counts the hibernating replicas over the running nodes.
func (c *testCluster) asleep() int {
	n := 0
	for _, tn := range c.nodes {
		if tn != nil {
			n += tn.Host().Hibernating()
		}
	}
	return n
}

// waitAsleep waits until want replicas hibernate.
func (c *testCluster) waitAsleep(want int) {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, fmt.Sprintf("%d replicas hibernating", want), func() error {
		if n := c.asleep(); n != want {
			return fmt.Errorf("%d hibernating", n)
		}
		return nil
	})
}

// putShard writes one record to shard i of an n-shard stream through node
// node and returns its sequence number.
func (c *testCluster) putShard(node int, stream string, n, i int, data string) string {
	c.t.Helper()
	out, err := c.nodes[node].client.PutRecord(context.Background(), &rifflev1.PutRecordRequest{
		StreamName: stream, PartitionKey: data, Data: []byte(data), ExplicitHashKey: shardStart(n, i)})
	if err != nil {
		c.t.Fatalf("PutRecord %s to shard %d through n%d: %v", data, i, node+1, err)
	}
	return out.SequenceNumber
}

// checkShards reads every shard through every node and compares with the
// acknowledged records, in order.
func (c *testCluster) checkShards(stream string, want map[string][]string) {
	c.t.Helper()
	for i, tn := range c.nodes {
		for shard, seqs := range want {
			var got []string
			for _, r := range readShard(c.t, tn.client, stream, shard) {
				got = append(got, r.SequenceNumber)
			}
			if !slices.Equal(got, seqs) {
				c.t.Errorf("n%d reads %s as %v, acknowledged %v", i+1, shard, got, seqs)
			}
		}
	}
}

// TestHibernateIdleShardsWakeOnRequest: with raft's default timeouts (an
// election after 1 to 2 s of silence), idle shards hibernate on all three
// replicas, no node leads them while they sleep, a write or a read through
// any node wakes its shard and is served, woken shards elect a leader in
// well under raft's election timeout (a replica woken by a request
// campaigns at once), every acknowledged record is read back through every
// node after each round, and the shards go back to sleep.
func TestHibernateIdleShardsWakeOnRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, hibernateAfter: hibernateAfter})
	const shards = 4
	createStream(t, c.nodes[0].client, "hib", shards)
	c.waitAsleep(3 * shards)
	for i, tn := range c.nodes {
		if led, _ := tn.Host().LedGroups(); len(led) != 0 {
			t.Errorf("n%d leads %v while every shard hibernates", i+1, led)
		}
	}

	want := map[string][]string{}
	for round := range 3 {
		for i := range shards {
			node := (round + i) % 3
			seq := c.putShard(node, "hib", shards, i, fmt.Sprintf("r%d-s%d", round, i))
			want[shardID(i)] = append(want[shardID(i)], seq)
		}
		c.checkShards("hib", want)
		c.waitAsleep(3 * shards)
	}

	var wakes, seconds float64
	for _, tn := range c.nodes {
		st := tn.Host().HibernationStats()
		wakes += float64(st.RequestWakes)
		seconds += st.RequestWakeSeconds
	}
	if wakes == 0 {
		t.Fatal("no request woke a shard")
	}
	// Without the election at once, a woken group waits out raft's
	// heartbeat timeout (1 s at least) before anyone campaigns.
	if mean := seconds / wakes; mean >= 0.9 {
		t.Errorf("a request waited %.0f ms on average for its woken shard's leader", mean*1000)
	}
	t.Logf("%v wakes by requests, %.1f ms to a leader on average", wakes, seconds/wakes*1000)
}

// TestHibernationSurvivesCrashes: every node killed (kill -9) while its
// shards hibernate, and again right after a write woke them, starts again
// with every acknowledged record; the shards go back to sleep and wake for
// the next writes.
func TestHibernationSurvivesCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: fastRaft, hibernateAfter: hibernateAfter})
	const shards = 3
	createStream(t, c.nodes[0].client, "hibc", shards)
	want := map[string][]string{}
	put := func(tag string) {
		for i := range shards {
			seq := c.putShard(i%3, "hibc", shards, i, fmt.Sprintf("%s-%d", tag, i))
			want[shardID(i)] = append(want[shardID(i)], seq)
		}
	}
	killAll := func() {
		for i := range c.nodes {
			c.kill(i)
		}
		// Together: one node alone has no metadata quorum to be ready.
		var wg sync.WaitGroup
		for i := range c.nodes {
			wg.Go(func() { c.nodes[i] = c.startNode(i) })
		}
		wg.Wait()
		for i, tn := range c.nodes {
			if tn == nil {
				t.Fatalf("n%d did not start", i+1)
			}
		}
		for i := range c.nodes {
			c.waitReady(i)
		}
	}
	put("a")
	c.waitAsleep(3 * shards)
	killAll()
	c.checkShards("hibc", want)
	c.waitAsleep(3 * shards)
	put("b") // wakes every shard
	killAll()
	c.checkShards("hibc", want)
	put("c")
	c.checkShards("hibc", want)
	c.waitAsleep(3 * shards)
}

// TestSubscriptionKeepsShardAwake: a shard with a subscriber never
// hibernates (the replica serving it refuses), the others do, and a record
// written meanwhile reaches the subscriber.
func TestSubscriptionKeepsShardAwake(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: fastRaft, hibernateAfter: hibernateAfter})
	const shards = 3
	cl := c.nodes[0].client
	createStream(t, cl, "hibs", shards)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	desc, err := cl.DescribeStreamSummary(ctx, &rifflev1.DescribeStreamSummaryRequest{StreamName: "hibs"})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := cl.RegisterStreamConsumer(ctx, &rifflev1.RegisterStreamConsumerRequest{
		StreamArn: desc.StreamDescriptionSummary.StreamArn, ConsumerName: "awake"})
	if err != nil {
		t.Fatal(err)
	}
	var sub rifflev1.Streams_SubscribeToShardClient
	waitFor(t, 10*time.Second, "subscription", func() error {
		var err error
		sub, err = cl.SubscribeToShard(ctx, &rifflev1.SubscribeToShardRequest{ConsumerArn: reg.Consumer.ConsumerArn,
			ShardId: shardID(1), StartingPosition: &rifflev1.StartingPosition{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_LATEST}})
		if err != nil {
			return err
		}
		_, err = sub.Recv() // the first event: the subscription is served
		return err
	})
	c.waitAsleep(3 * (shards - 1))
	// It stays so for many idle periods: the subscribed shard keeps running.
	deadline := time.Now().Add(10 * hibernateAfter)
	for time.Now().Before(deadline) {
		if n := c.asleep(); n > 3*(shards-1) {
			t.Fatalf("%d replicas hibernate while shard 1 has a subscriber", n)
		}
		time.Sleep(hibernateAfter / 3)
	}
	seq := c.putShard(2, "hibs", shards, 1, "pushed")
	for {
		ev, err := sub.Recv()
		if err != nil {
			t.Fatalf("subscription ended before the record came: %v", err)
		}
		if i := slices.IndexFunc(ev.Records, func(r *rifflev1.Record) bool { return r.SequenceNumber == seq }); i >= 0 {
			break
		}
	}
}

// TestHibernationMetrics: /metrics reports the node's hibernating replicas
// and its sleeps and wakes.
func TestHibernationMetrics(t *testing.T) {
	tn := startNodeConfig(t, node.Config{DataDir: tempDataDir(t), HibernateAfter: hibernateAfter})
	createStream(t, tn.client, "hibm", 2)
	metric := func(name string) float64 { t.Helper(); return adminMetric(t, tn, name) }
	waitFor(t, 30*time.Second, "two replicas hibernating", func() error {
		if n := metric("riffle_shards_hibernating"); n != 2 {
			return fmt.Errorf("riffle_shards_hibernating %v", n)
		}
		return nil
	})
	if n := metric("riffle_hibernations_total"); n < 2 {
		t.Errorf("riffle_hibernations_total %v with two replicas asleep", n)
	}
	if _, err := tn.client.PutRecord(context.Background(), &rifflev1.PutRecordRequest{StreamName: "hibm", PartitionKey: "k", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if n := metric("riffle_request_wakes_total"); n != 1 {
		t.Errorf("riffle_request_wakes_total %v after one write to a hibernating stream", n)
	}
	if n := metric("riffle_wakes_total"); n < 1 {
		t.Errorf("riffle_wakes_total %v", n)
	}
	if n := metric("riffle_shards_hibernating"); n != 1 {
		t.Errorf("riffle_shards_hibernating %v with one of two shards woken", n)
	}
}
