//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// TestEveryNodeServesTheSameRecords checks that any node accepts any call and
// that replicas agree (DESIGN.md: "every node serves the whole public API";
// contract 1, the ack names the shard and the sequence number; contract 3,
// within a shard every reader sees the same records in the same order, with
// nothing missing and nothing that was never written).
//
// A 3-shard stream is created through n1; records are put through each of
// the three nodes (PutRecords and PutRecord); then every shard is read back
// through every node, and the three reads must be identical and hold every
// acknowledged record at its acknowledged sequence number, in the shard its
// partition key hashes to.
func TestEveryNodeServesTheSameRecords(t *testing.T) {
	c := connectCluster(t)
	stream := uniqueStreamName("e2e-every-node")
	shards := c.createStream("n1", stream, 3)

	ctx := context.Background()
	written := map[string]bool{}
	var acks []ackedRecord
	retries := 0
	for _, n := range clusterNodes {
		var entries []*rifflev1.PutRecordsRequestEntry
		for i := range 60 {
			entries = append(entries, &rifflev1.PutRecordsRequestEntry{
				PartitionKey: fmt.Sprintf("key-%s-%d", n.service, i),
				Data:         fmt.Appendf(nil, "%s/batch/%d", n.service, i),
			})
		}
		for _, e := range entries {
			written[string(e.GetData())] = true
		}
		batch, err := putRecords(ctx, stream, []rifflev1.StreamsClient{c.streams(n.service)}, entries, func(err error) {
			retries++
			t.Logf("PutRecords through %s: retrying: %v", n.service, err)
		})
		if err != nil {
			t.Fatalf("PutRecords through %s: %v", n.service, err)
		}
		acks = append(acks, batch...)

		one := &rifflev1.PutRecordRequest{StreamName: stream, PartitionKey: "single-" + n.service, Data: []byte(n.service + "/single")}
		written[string(one.GetData())] = true
		var out *rifflev1.PutRecordResponse
		err = retryCall(ctx, func(ctx context.Context) error { // safe to repeat: a duplicate is allowed for by checkShard
			var err error
			out, err = c.streams(n.service).PutRecord(ctx, one)
			return err
		})
		if err != nil {
			t.Fatalf("PutRecord through %s: %v", n.service, err)
		}
		acks = append(acks, ackedRecord{key: one.GetPartitionKey(), data: string(one.GetData()), shardID: out.GetShardId(), seq: out.GetSequenceNumber()})
	}

	// Routing: every node sent each key to the shard its MD5 falls in.
	for _, a := range acks {
		want, err := shardForKey(shards, a.key)
		if err != nil {
			t.Fatal(err)
		}
		if a.shardID != want {
			t.Errorf("key %q acknowledged in %s, but its hash key is in %s", a.key, a.shardID, want)
		}
	}
	byShard := ackedByShard(acks)
	for _, s := range shards {
		if len(byShard[s.GetShardId()]) == 0 {
			t.Fatalf("no record landed in %s: the test would check nothing there", s.GetShardId())
		}
	}

	// Followers apply what the leader committed a moment later.
	c.waitEveryNodeServes(stream, shards, acks, written)
	t.Logf("%d records through 3 nodes, %d retried calls; every shard identical on n1, n2, n3", len(acks), retries)
}
