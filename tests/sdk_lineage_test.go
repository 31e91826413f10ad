package tests

import (
	"context"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/riffle-streams/riffle/client"
	"github.com/riffle-streams/riffle/node"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// The SDK's consumers follow a shard's lineage on a real broker: a polling
// ShardReader and a fan-out Subscriber started on shard 0 deliver every
// record once across a split and a merge, every record of a parent before
// any of its children, and each key's records in the order they were
// written (contract 5).
func TestSDKConsumersFollowTheLineage(t *testing.T) {
	tn := singleNode(t, node.Config{DataDir: tempDataDir(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const stream = "lineage"
	createStream(t, tn.client, stream, 1)
	arn := registerConsumer(t, tn.client, stream, "follower")
	cl, err := client.Dial(ctx, []string{tn.GRPCAddr()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	reader := client.NewShardReader(cl, stream, "shardId-000000000000", client.TrimHorizon(), client.ReaderConfig{PollInterval: 20 * time.Millisecond})
	defer reader.Close()
	sub := client.NewSubscriber(cl, arn, "shardId-000000000000", client.TrimHorizon(), client.SubscriberConfig{})
	defer sub.Close()

	const keys, perPhase = 20, 200
	written := 0
	put := func(n int) {
		for range n {
			key := fmt.Sprintf("k%d", written%keys)
			if _, err := tn.client.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: stream, PartitionKey: key,
				Data: []byte(fmt.Sprintf("%s/%06d", key, written))}); err != nil {
				t.Fatalf("PutRecord: %v", err)
			}
			written++
		}
	}
	put(perPhase)
	mid := new(big.Int).Lsh(big.NewInt(1), 127).String()
	if _, err := tn.client.SplitShard(ctx, &rifflev1.SplitShardRequest{StreamName: stream, ShardToSplit: "shardId-000000000000", NewStartingHashKey: mid}); err != nil {
		t.Fatalf("SplitShard: %v", err)
	}
	waitActive(t, tn.client, stream)
	put(perPhase)
	if _, err := tn.client.MergeShards(ctx, &rifflev1.MergeShardsRequest{StreamName: stream, ShardToMerge: "shardId-000000000001", AdjacentShardToMerge: "shardId-000000000002"}); err != nil {
		t.Fatalf("MergeShards: %v", err)
	}
	waitActive(t, tn.client, stream)
	put(perPhase)

	generation := map[string]int{"shardId-000000000000": 0, "shardId-000000000001": 1, "shardId-000000000002": 1, "shardId-000000000003": 2}
	for name, next := range map[string]func(context.Context) (client.Batch, error){"reader": reader.Next, "subscriber": sub.Next} {
		seen := map[string]bool{}
		lastOfKey := map[string]string{}
		lastGen := 0
		for len(seen) < written {
			b, err := next(ctx)
			if err != nil {
				t.Fatalf("%s: after %d of %d records: %v", name, len(seen), written, err)
			}
			g, ok := generation[b.ShardID]
			if !ok {
				t.Fatalf("%s: records from unexpected shard %s", name, b.ShardID)
			}
			if len(b.Records) > 0 && g < lastGen {
				t.Fatalf("%s: records of %s (generation %d) after a child's (generation %d): parents must come first", name, b.ShardID, g, lastGen)
			}
			if len(b.Records) > 0 {
				lastGen = g
			}
			for _, r := range b.Records {
				d := string(r.Data)
				if seen[d] {
					t.Fatalf("%s: %s delivered twice", name, d)
				}
				seen[d] = true
				if prev := lastOfKey[r.PartitionKey]; prev != "" && prev > d {
					t.Fatalf("%s: key %s: %s after %s", name, r.PartitionKey, d, prev)
				}
				lastOfKey[r.PartitionKey] = d
			}
		}
		t.Logf("%s: %d records across 4 shards in lineage order", name, len(seen))
	}
}
