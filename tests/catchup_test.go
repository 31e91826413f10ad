package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// localShard returns node n's own replica of a stream's shard, or nil while
// it has none running.
func localShard(n *testNode, stream string, shard int) *shardlog.Shard {
	st, ok := n.Host().Meta().State().Streams[stream]
	if !ok {
		return nil
	}
	sh, ok := st.ShardByIndex(uint64(shard))
	if !ok {
		return nil
	}
	r, err := n.Host().Shard(st, sh)
	if err != nil {
		return nil
	}
	return r
}

// trailingLogs is shardlog's raft TrailingLogs: how many entries a
// snapshot leaves in the raft log.
const trailingLogs = 256

// TestReplicaCatchesUpAfterCompaction checks that a replica that was down
// while the others compacted their raft logs past it catches up by fetching
// records from a peer (raft can only send it a manifest), and then serves
// every acknowledged record with its sequence number, from its own log,
// exactly as the others do. It logs the catch-up rate.
func TestReplicaCatchesUpAfterCompaction(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes, MiBs of writes")
	}
	const (
		stream    = "catchup"
		shardID   = "shardId-000000000000"
		calls     = 640 // PutRecords calls while n3 is down: one raft entry each
		perCall   = 8
		valueSize = 1 << 10
	)
	c := startCluster(t, 3)
	createStream(t, c.nodes[0].client, stream, 1)
	for _, n := range c.nodes {
		waitActive(t, n.client, stream)
	}

	want := map[string][]byte{} // acknowledged: sequence number -> data
	put := func(n *testNode, entries []*rifflev1.PutRecordsRequestEntry) error {
		for len(entries) > 0 {
			out, err := n.client.PutRecords(context.Background(), &rifflev1.PutRecordsRequest{StreamName: stream, Records: entries})
			if err != nil {
				if !retryable(err) {
					t.Fatalf("PutRecords: non-retryable %v", err)
				}
				return err
			}
			var failed []*rifflev1.PutRecordsRequestEntry
			for i, r := range out.Records {
				if r.ErrorCode != "" {
					failed = append(failed, entries[i])
					continue
				}
				want[r.SequenceNumber] = entries[i].Data
			}
			entries = failed
		}
		return nil
	}
	batch := func(tag string, i int) []*rifflev1.PutRecordsRequestEntry {
		entries := make([]*rifflev1.PutRecordsRequestEntry, perCall)
		for k := range entries {
			v := fmt.Sprintf("%s-%d-%d:", tag, i, k)
			entries[k] = &rifflev1.PutRecordsRequestEntry{PartitionKey: v, Data: append([]byte(v), bytes.Repeat([]byte{byte(i + k)}, valueSize-len(v))...)}
		}
		return entries
	}
	for i := range 20 {
		if err := put(c.nodes[i%3], batch("before", i)); err != nil {
			t.Fatalf("put before the kill: %v", err)
		}
	}
	var downNext, downApplied uint64
	waitFor(t, 20*time.Second, "n3 holds the first records", func() error {
		r := localShard(c.nodes[2], stream, 0)
		if r == nil || r.Log().NextOffset() < uint64(len(want)) {
			return fmt.Errorf("n3 behind")
		}
		downNext, downApplied = r.Log().NextOffset(), r.Log().LastApplied()
		return nil
	})

	c.kill(2)
	var bytesWhileDown int64
	for i := range calls {
		entries := batch("down", i)
		waitFor(t, 20*time.Second, "write while n3 is down", func() error { return put(c.nodes[i%2], entries) })
		for _, e := range entries {
			bytesWhileDown += int64(len(e.PartitionKey) + len(e.Data))
		}
	}
	// Snapshot the live replicas so that raft compacts their logs past
	// everything n3 applied: n3 can only get a manifest.
	var target uint64
	for i := range 2 {
		r := localShard(c.nodes[i], stream, 0)
		if err := r.Raft().Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			t.Fatalf("snapshot on n%d: %v", i+1, err)
		}
		stats := r.Raft().Stats()
		snap, _ := strconv.ParseUint(stats["last_snapshot_index"], 10, 64)
		last, _ := strconv.ParseUint(stats["last_log_index"], 10, 64)
		if kept := min(snap, last-trailingLogs); kept <= downApplied {
			t.Fatalf("n%d's raft log still holds entries from %d on; n3 applied %d: test would not need a fetch", i+1, kept+1, downApplied)
		}
		target = max(target, r.Log().NextOffset())
	}
	t.Logf("while n3 was down: %d records (%.1f MiB) in %d raft entries; n3 holds offsets below %d",
		target-downNext, float64(bytesWhileDown)/(1<<20), calls, downNext)

	// Restart n3 and time its catch-up: from the restart, and from the
	// first fetched record on (the fetch alone), watching its log's apply
	// notifications.
	start := time.Now()
	c.nodes[2] = c.startNode(2)
	if c.nodes[2] == nil {
		t.FailNow()
	}
	firstFetched, done := watchCatchUp(t, c.nodes[2], stream, downNext, target, 60*time.Second)
	mib := float64(bytesWhileDown) / (1 << 20)
	fetch := max(done.Sub(firstFetched), time.Millisecond)
	t.Logf("n3 caught up on %.1f MiB in %v from restart (%.1f MiB/s), in %v from the first fetched record (%.1f MiB/s)",
		mib, done.Sub(start).Round(time.Millisecond), mib/done.Sub(start).Seconds(), fetch.Round(time.Millisecond), mib/fetch.Seconds())
	c.waitReady(2)

	// n3 serves, from its own log, every acknowledged record with its
	// sequence number, and exactly what n1 serves.
	got := readShard(t, c.nodes[2].client, stream, shardID)
	have := map[string][]byte{}
	for _, r := range got {
		have[r.SequenceNumber] = r.Data
	}
	for seq, data := range want {
		if !bytes.Equal(have[seq], data) {
			t.Fatalf("n3 lacks acknowledged record %s (%d records served)", seq, len(got))
		}
	}
	ref := readShard(t, c.nodes[0].client, stream, shardID)
	if len(ref) != len(got) {
		t.Fatalf("n3 serves %d records, n1 %d", len(got), len(ref))
	}
	for k := range got {
		if got[k].SequenceNumber != ref[k].SequenceNumber || !bytes.Equal(got[k].Data, ref[k].Data) ||
			!got[k].ApproximateArrivalTimestamp.AsTime().Equal(ref[k].ApproximateArrivalTimestamp.AsTime()) {
			t.Fatalf("n3 and n1 differ at record %d: %s vs %s", k, got[k].SequenceNumber, ref[k].SequenceNumber)
		}
	}

	// n3 goes on applying new writes like the others.
	if err := put(c.nodes[2], batch("after", 0)); err != nil {
		t.Fatalf("put after catch-up: %v", err)
	}
	waitFor(t, 20*time.Second, "n3 applies new writes", func() error {
		if n := localShard(c.nodes[2], stream, 0).Log().NextOffset(); n < target+perCall {
			return fmt.Errorf("n3 at %d", n)
		}
		return nil
	})
}

// watchCatchUp follows node n's replica of a stream's only shard until its
// log reaches offset target, and returns when it first held a record at or
// above from and when it reached target.
func watchCatchUp(t *testing.T, n *testNode, stream string, from, target uint64, timeout time.Duration) (first, done time.Time) {
	t.Helper()
	deadline := time.After(timeout)
	var r *shardlog.Shard
	for r == nil {
		select {
		case <-deadline:
			t.Fatal("the restarted replica never started")
		case <-time.After(time.Millisecond):
		}
		r = localShard(n, stream, 0)
	}
	for {
		changed := r.Log().Changed()
		next := r.Log().NextOffset()
		if next > from && first.IsZero() {
			first = time.Now()
		}
		if next >= target {
			return first, time.Now()
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("the restarted replica is at offset %d of %d", next, target)
		}
	}
}
