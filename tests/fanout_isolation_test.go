package tests

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riffle-streams/riffle/client"
	"github.com/riffle-streams/riffle/node"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Enhanced fan-out gives each consumer its own throughput: pollers that
// exhaust a shard's shared GetRecords budget (and are throttled for it) do
// not slow a registered consumer reading the same shard.
func TestFanOutIsUnaffectedByThrottledPollers(t *testing.T) {
	tn := singleNode(t, node.Config{DataDir: tempDataDir(t)})
	// Shared polling budget: 64 KiB/s and 5 calls/s; fan-out: 2 MiB/s per
	// consumer.
	createLimitedStream(t, tn.client, "iso", 1, &rifflev1.ShardLimits{
		ReadBytesPerSecond: int64p(64 << 10), ReadCallsPerSecond: int64p(5), FanOutBytesPerSecond: int64p(2 << 20),
		WriteBytesPerSecond: int64p(0), WriteRecordsPerSecond: int64p(0)})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// 1 MiB backlog: 16 s of the polling budget, half a second of fan-out.
	var acked []string
	data := make([]byte, 8<<10)
	for range 8 {
		req := &rifflev1.PutRecordsRequest{StreamName: "iso"}
		for j := range 16 {
			req.Records = append(req.Records, &rifflev1.PutRecordsRequestEntry{PartitionKey: fmt.Sprint(j), Data: data})
		}
		resp, err := tn.client.PutRecords(ctx, req)
		if err != nil || resp.FailedRecordCount > 0 {
			t.Fatalf("PutRecords: %v (%d failed)", err, resp.GetFailedRecordCount())
		}
		for _, r := range resp.Records {
			acked = append(acked, r.SequenceNumber)
		}
	}

	// Three pollers hammer the shard from the start.
	var throttled, polled atomic.Int64
	pollCtx, stopPolling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			it, err := tn.client.GetShardIterator(pollCtx, &rifflev1.GetShardIteratorRequest{StreamName: "iso", ShardId: shardID(0),
				ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON})
			if err != nil {
				return
			}
			iter := it.ShardIterator
			for pollCtx.Err() == nil {
				resp, err := tn.client.GetRecords(pollCtx, &rifflev1.GetRecordsRequest{ShardIterator: iter, Limit: 10})
				if client.ExceptionName(err) == client.ProvisionedThroughputExceededException {
					throttled.Add(1)
					continue
				}
				if err != nil {
					return
				}
				polled.Add(int64(len(resp.Records)))
				iter = resp.NextShardIterator
			}
		})
	}
	defer func() { stopPolling(); wg.Wait() }()

	arn := registerConsumer(t, tn.client, "iso", "fast")
	start := time.Now()
	f := follow(t, []rifflev1.StreamsClient{tn.client}, arn, shardID(0), trimHorizon())
	f.waitFor(t, 10*time.Second, acked)
	took := time.Since(start)
	recs, _, _, _ := f.snapshot()
	if len(recs) != len(acked) {
		t.Fatalf("fan-out consumer received %d records, %d were written", len(recs), len(acked))
	}
	for i, r := range recs {
		if r.SequenceNumber != acked[i] {
			t.Fatalf("fan-out record %d is %s, want %s", i, r.SequenceNumber, acked[i])
		}
	}
	// At the polling budget the backlog takes 16 s; at the consumer's own
	// 2 MiB/s about half a second (the first second is a burst).
	if took > 4*time.Second {
		t.Errorf("the fan-out consumer took %v for 1 MiB: slowed by the pollers' budget", took)
	}
	if throttled.Load() == 0 {
		t.Errorf("the pollers were never throttled: the test did not exhaust the shared budget")
	}
	t.Logf("fan-out consumer read 1 MiB in %v while 3 pollers got %d records and %d throttles", took, polled.Load(), throttled.Load())
}
