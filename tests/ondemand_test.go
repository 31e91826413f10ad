package tests

import (
	"context"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

var onDemandMode = &rifflev1.StreamModeDetails{StreamMode: rifflev1.StreamMode_STREAM_MODE_ON_DEMAND}

// hotWriter puts batches of 50 records with one partition key, more than the
// shard's limit lets in, through every node in turn. Throttled records
// were not applied and are dropped; each record's place is kept for the
// lineage checks.
type hotWriter struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	writes []reshardWrite
}

func startHotWriter(clients []rifflev1.StreamsClient, stream, key string) *hotWriter {
	ctx, cancel := context.WithCancel(context.Background())
	w := &hotWriter{cancel: cancel}
	w.wg.Go(func() {
		n := 0
		for i := 0; ctx.Err() == nil; i++ {
			batch := make([]reshardWrite, 50)
			req := &rifflev1.PutRecordsRequest{StreamName: stream}
			for j := range batch {
				n++
				batch[j] = reshardWrite{n: n, key: key, data: fmt.Sprintf("%s/%d", key, n), start: time.Now()}
				req.Records = append(req.Records, &rifflev1.PutRecordsRequestEntry{PartitionKey: key, Data: []byte(batch[j].data)})
			}
			cctx, ccancel := context.WithTimeout(context.Background(), 15*time.Second)
			out, err := clients[i%len(clients)].PutRecords(cctx, req)
			ccancel()
			var kept []reshardWrite
			for j, wr := range batch {
				switch {
				case err != nil:
					// The whole call failed: unknown outcome, or not applied.
					if st, _ := status.FromError(err); st.Code() == codes.Unknown {
						wr.uncertain = true
						kept = append(kept, wr)
					}
				case out.Records[j].ErrorCode == "":
					wr.shard, wr.seq, wr.acked = out.Records[j].ShardId, out.Records[j].SequenceNumber, time.Now()
					kept = append(kept, wr)
				case out.Records[j].ErrorCode != "ProvisionedThroughputExceededException":
					wr.uncertain = true
					kept = append(kept, wr)
				}
			}
			w.mu.Lock()
			w.writes = append(w.writes, kept...)
			w.mu.Unlock()
			if err != nil || out.FailedRecordCount > 0 {
				select { // a client's backoff when throttled
				case <-time.After(20 * time.Millisecond):
				case <-ctx.Done():
				}
			}
		}
	})
	return w
}

func (w *hotWriter) finish() []reshardWrite {
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]reshardWrite(nil), w.writes...)
}

// openShards lists a stream's open shards.
func openShards(t *testing.T, c rifflev1.StreamsClient, stream string) []*rifflev1.Shard {
	t.Helper()
	list, err := c.ListShards(context.Background(), &rifflev1.ListShardsRequest{StreamName: stream})
	if err != nil {
		t.Fatalf("ListShards: %v", err)
	}
	var open []*rifflev1.Shard
	for _, sh := range list.Shards {
		if sh.SequenceNumberRange.EndingSequenceNumber == "" {
			open = append(open, sh)
		}
	}
	return open
}

// summaryOf is the stream's DescribeStreamSummary.
func summaryOf(t *testing.T, c rifflev1.StreamsClient, stream string) *rifflev1.StreamDescriptionSummary {
	t.Helper()
	out, err := c.DescribeStreamSummary(context.Background(), &rifflev1.DescribeStreamSummaryRequest{StreamName: stream})
	if err != nil {
		t.Fatalf("DescribeStreamSummary %s: %v", stream, err)
	}
	return out.StreamDescriptionSummary
}

// TestOnDemandHotKey checks on-demand scaling end to end on three nodes
// with shortened windows: a new ON_DEMAND stream has 4 even shards; one
// partition key written as fast as its shard's limit allows makes the
// metadata leader split that shard (the key ends in a child); once the
// writer stops, the cold children are merged back and the stream returns
// to its 4 even ranges. Every acknowledged record of the hot key is read
// exactly once through the lineage, in order.
func TestOnDemandHotKey(t *testing.T) {
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: steadyRaft,
		limits:   cluster.Limits{WriteRecords: 40},
		onDemand: cluster.OnDemandOptions{SplitAfter: time.Second, MergeAfter: 2 * time.Second, Interval: 200 * time.Millisecond}})
	killAtEnd(t, c)
	ctx := context.Background()
	cl := c.nodes[0].client
	const stream = "hot"
	if _, err := cl.CreateStream(ctx, &rifflev1.CreateStreamRequest{StreamName: stream, StreamModeDetails: onDemandMode}); err != nil {
		t.Fatalf("CreateStream ON_DEMAND: %v", err)
	}
	waitActive(t, cl, stream)
	sum := summaryOf(t, c.nodes[1].client, stream)
	if sum.OpenShardCount != 4 || sum.StreamModeDetails.GetStreamMode() != rifflev1.StreamMode_STREAM_MODE_ON_DEMAND {
		t.Fatalf("new ON_DEMAND stream: %d open shards, mode %v; want 4, ON_DEMAND", sum.OpenShardCount, sum.StreamModeDetails.GetStreamMode())
	}
	checkScaled(t, cl, stream, 4)
	hotHash := cluster.PartitionHash("hot")
	holder := func() *rifflev1.Shard {
		for _, sh := range openShards(t, cl, stream) {
			r := cluster.HashRange{Start: mustKey(t, sh.HashKeyRange.StartingHashKey), End: mustKey(t, sh.HashKeyRange.EndingHashKey)}
			if r.Contains(hotHash) {
				return sh
			}
		}
		t.Fatal("no open shard holds the hot key")
		return nil
	}
	root := holder().ShardId

	t0 := time.Now()
	w := startHotWriter(clientsOf(c, 0, 1, 2), stream, "hot")
	waitFor(t, 20*time.Second, "the hot shard split", func() error {
		if h := holder(); h.ShardId == root || h.ParentShardId == "" {
			return fmt.Errorf("the hot key is still in %s", h.ShardId)
		}
		return nil
	})
	split := time.Since(t0)
	writes := w.finish()
	peak := len(openShards(t, cl, stream))
	t1 := time.Now()
	waitFor(t, 30*time.Second, "the cold children merged back", func() error {
		s := summaryOf(t, cl, stream)
		if s.StreamStatus != rifflev1.StreamStatus_STREAM_STATUS_ACTIVE || s.OpenShardCount != 4 {
			return fmt.Errorf("%v with %d open shards", s.StreamStatus, s.OpenShardCount)
		}
		return nil
	})
	t.Logf("hot key: split %v after the writer started (%d open shards at the peak); merged back %v after it stopped",
		split.Round(time.Millisecond), peak, time.Since(t1).Round(time.Millisecond))
	checkScaled(t, cl, stream, 4)
	if h := holder(); h.AdjacentParentShardId == "" {
		t.Errorf("the hot key's shard %s is not a merge of the split's children", h.ShardId)
	}
	got := lineageReadRoots(t, c.nodes[2].client, stream)
	checkLineage(t, writes, got)
	checkClosed(t, cl, stream, got)
}

func mustKey(t *testing.T, s string) *big.Int {
	t.Helper()
	k, err := cluster.ParseHashKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestOnDemandModeAndLimits checks the capacity-mode API on one node:
// CreateStream ON_DEMAND with a shard count is InvalidArgument; the user's
// SplitShard, MergeShards and UpdateShardCount on an ON_DEMAND stream are
// InvalidArgument and change nothing; UpdateStreamMode (by ARN) switches
// both ways keeping the shards, refuses the current mode (InvalidArgument),
// a missing ARN (Validation), an unknown one (ResourceNotFound), a switch
// while a split runs (ResourceInUse) and a third switch in 24 hours
// (LimitExceeded); a 2-shard PROVISIONED stream turned
// ON_DEMAND is scaled up to 4; and UpdateShardCount past the daily limit
// (set to 2 here) is LimitExceeded.
func TestOnDemandModeAndLimits(t *testing.T) {
	c := startClusterOpts(t, &testCluster{t: t, expect: 1, raft: steadyRaft, scalingOpsPerDay: 2})
	killAtEnd(t, c)
	ctx := context.Background()
	cl := c.nodes[0].client

	_, err := cl.CreateStream(ctx, &rifflev1.CreateStreamRequest{StreamName: "od", ShardCount: 3, StreamModeDetails: onDemandMode})
	expectCode(t, "CreateStream ON_DEMAND with a shard count", err, codes.InvalidArgument, "InvalidArgumentException")
	if _, err := cl.CreateStream(ctx, &rifflev1.CreateStreamRequest{StreamName: "od", StreamModeDetails: onDemandMode}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, cl, "od")
	_, err = cl.SplitShard(ctx, &rifflev1.SplitShardRequest{StreamName: "od", ShardToSplit: "shardId-000000000000", NewStartingHashKey: "1"})
	expectCode(t, "SplitShard on ON_DEMAND", err, codes.InvalidArgument, "InvalidArgumentException")
	_, err = cl.MergeShards(ctx, &rifflev1.MergeShardsRequest{StreamName: "od", ShardToMerge: "shardId-000000000000", AdjacentShardToMerge: "shardId-000000000001"})
	expectCode(t, "MergeShards on ON_DEMAND", err, codes.InvalidArgument, "InvalidArgumentException")
	_, err = cl.UpdateShardCount(ctx, &rifflev1.UpdateShardCountRequest{StreamName: "od", TargetShardCount: 5, ScalingType: uniform})
	expectCode(t, "UpdateShardCount on ON_DEMAND", err, codes.InvalidArgument, "InvalidArgumentException")
	if s := summaryOf(t, cl, "od"); s.StreamStatus != rifflev1.StreamStatus_STREAM_STATUS_ACTIVE || s.OpenShardCount != 4 {
		t.Fatalf("after refused calls: %v, %d open shards", s.StreamStatus, s.OpenShardCount)
	}

	arn := summaryOf(t, cl, "od").StreamArn
	mode := func(arn string, m rifflev1.StreamMode) error {
		_, err := cl.UpdateStreamMode(ctx, &rifflev1.UpdateStreamModeRequest{StreamArn: arn, StreamModeDetails: &rifflev1.StreamModeDetails{StreamMode: m}})
		return err
	}
	switchTo := func(stream string, m rifflev1.StreamMode, shards int32) {
		t.Helper()
		arn := summaryOf(t, cl, stream).StreamArn
		if err := mode(arn, m); err != nil {
			t.Fatalf("UpdateStreamMode %s to %v: %v", stream, m, err)
		}
		waitActive(t, cl, stream)
		if s := summaryOf(t, cl, stream); s.StreamModeDetails.GetStreamMode() != m || s.OpenShardCount != shards {
			t.Fatalf("%s after switching to %v: mode %v, %d open shards, want %d", stream, m, s.StreamModeDetails.GetStreamMode(), s.OpenShardCount, shards)
		}
	}
	expectCode(t, "UpdateStreamMode to the current mode", mode(arn, rifflev1.StreamMode_STREAM_MODE_ON_DEMAND), codes.InvalidArgument, "InvalidArgumentException")
	expectCode(t, "UpdateStreamMode without an ARN", mode("", rifflev1.StreamMode_STREAM_MODE_PROVISIONED), codes.InvalidArgument, "ValidationException")
	expectCode(t, "UpdateStreamMode without a mode", mode(arn, rifflev1.StreamMode_STREAM_MODE_UNSPECIFIED), codes.InvalidArgument, "ValidationException")
	expectCode(t, "UpdateStreamMode of an unknown stream", mode(cluster.StreamARN("nope"), rifflev1.StreamMode_STREAM_MODE_PROVISIONED), codes.NotFound, "ResourceNotFoundException")
	switchTo("od", rifflev1.StreamMode_STREAM_MODE_PROVISIONED, 4)
	// PROVISIONED again: the user may reshard it.
	if _, err := cl.SplitShard(ctx, &rifflev1.SplitShardRequest{StreamName: "od", ShardToSplit: "shardId-000000000000", NewStartingHashKey: "1"}); err != nil {
		t.Fatalf("SplitShard after switching to PROVISIONED: %v", err)
	}
	// The split holds the stream UPDATING until its children have elected.
	expectCode(t, "UpdateStreamMode while a split runs", mode(arn, rifflev1.StreamMode_STREAM_MODE_ON_DEMAND), codes.FailedPrecondition, "ResourceInUseException")
	waitActive(t, cl, "od")
	switchTo("od", rifflev1.StreamMode_STREAM_MODE_ON_DEMAND, 5)
	expectCode(t, "a third UpdateStreamMode in 24 hours", mode(arn, rifflev1.StreamMode_STREAM_MODE_PROVISIONED), codes.ResourceExhausted, "LimitExceededException")

	// Below the on-demand minimum: the switch scales the stream up to 4.
	createStream(t, cl, "small", 2)
	switchTo("small", rifflev1.StreamMode_STREAM_MODE_ON_DEMAND, 4)
	checkScaled(t, cl, "small", 4)

	// Kinesis's rolling-day limit on UpdateShardCount (2 here).
	createStream(t, cl, "prov", 4)
	for _, target := range []int{5, 4} {
		if _, err := cl.UpdateShardCount(ctx, &rifflev1.UpdateShardCountRequest{StreamName: "prov", TargetShardCount: int32(target), ScalingType: uniform}); err != nil {
			t.Fatalf("UpdateShardCount to %d: %v", target, err)
		}
		waitActive(t, cl, "prov")
	}
	_, err = cl.UpdateShardCount(ctx, &rifflev1.UpdateShardCountRequest{StreamName: "prov", TargetShardCount: 5, ScalingType: uniform})
	expectCode(t, "a third UpdateShardCount in 24 hours", err, codes.ResourceExhausted, "LimitExceededException")
	if s := summaryOf(t, cl, "prov"); s.StreamStatus != rifflev1.StreamStatus_STREAM_STATUS_ACTIVE {
		t.Errorf("after the refused scaling: %v", s.StreamStatus)
	}
	checkScaled(t, cl, "prov", 4)
}
