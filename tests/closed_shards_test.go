package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// TestClosedShardsFreeze checks issue 5's guarantee: once a split's parent
// is sealed on every replica, every node stops its raft group (fewer groups
// run, its raft log store is gone) and still serves its records exactly,
// through GetRecords on every node (ending with the children) and through a
// fan-out subscription, also after a node restarts on its data.
func TestClosedShardsFreeze(t *testing.T) {
	c := startCluster(t, 3)
	killAtEnd(t, c)
	ctx := context.Background()
	cl := c.nodes[0].client
	const stream = "frozen"
	// Node 1's last metadata snapshot predates the stream: restarted below,
	// it first shows a state without it, on which it must not delete the
	// frozen replica (the fault run's kill-one found that).
	if err := c.nodes[1].Host().Meta().Raft().Snapshot().Error(); err != nil {
		t.Fatalf("metadata snapshot on node 1: %v", err)
	}
	createStream(t, cl, stream, 1)
	var acked []string
	for i := range 40 {
		out, err := cl.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: stream,
			PartitionKey: fmt.Sprintf("k%d", i%7), Data: []byte(fmt.Sprintf("rec-%02d", i))})
		if err != nil {
			t.Fatalf("PutRecord %d: %v", i, err)
		}
		acked = append(acked, out.SequenceNumber)
	}
	parent := cluster.ShardID(0)
	if _, err := cl.SplitShard(ctx, &rifflev1.SplitShardRequest{StreamName: stream, ShardToSplit: parent,
		NewStartingHashKey: "170141183460469231731687303715884105728"}); err != nil {
		t.Fatalf("SplitShard: %v", err)
	}
	waitActive(t, cl, stream)

	groupOf := func(i int) (string, *cluster.Shard) {
		s := c.nodes[i].Host().Meta().State().Streams[stream]
		if s == nil || len(s.Shards) < 3 {
			return "", nil
		}
		return s.GroupID(s.Shards[0]), s.Shards[0]
	}
	waitFrozen := func(nodes ...int) {
		t.Helper()
		waitFor(t, 20*time.Second, "the parent frozen on every node", func() error {
			for _, i := range nodes {
				gid, sh := groupOf(i)
				if sh == nil || !sh.Frozen {
					return fmt.Errorf("node %d: metadata shows the parent not frozen (%+v)", i, sh)
				}
				if !c.nodes[i].Host().IsFrozen(gid) {
					return fmt.Errorf("node %d still runs raft group %s", i, gid)
				}
				// Only the two children's groups still run.
				if n := c.nodes[i].Host().RunningGroups(); n != 2 {
					return fmt.Errorf("node %d runs %d raft groups, want 2", i, n)
				}
			}
			return nil
		})
	}
	waitFrozen(0, 1, 2)
	for i, n := range c.nodes {
		gid, _ := groupOf(i)
		if _, err := os.Stat(filepath.Join(n.dir, "shards", gid, "segments")); err != nil {
			t.Fatalf("node %d: the frozen replica's segments: %v", i, err)
		}
		for _, name := range []string{shardlog.RaftStateFile, shardlog.RaftLogDir} {
			if _, err := os.Stat(filepath.Join(n.dir, "shards", gid, name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("node %d: a frozen replica's %s is still there: %v", i, name, err)
			}
		}
	}

	readAll := func(i int) {
		t.Helper()
		got := lineageReadOne(t, c.nodes[i].client, stream, parent)
		if len(got.records) != len(acked) {
			t.Fatalf("node %d: %d records of the frozen parent, want %d", i, len(got.records), len(acked))
		}
		for j, r := range got.records {
			if r.SequenceNumber != acked[j] || string(r.Data) != fmt.Sprintf("rec-%02d", j) {
				t.Fatalf("node %d: record %d is %s %q, want %s rec-%02d", i, j, r.SequenceNumber, r.Data, acked[j], j)
			}
		}
		if !got.closed || len(got.children) != 2 {
			t.Fatalf("node %d: parent read ends closed=%v with children %v, want 2", i, got.closed, got.children)
		}
	}
	for i := range c.nodes {
		readAll(i)
	}

	arn := registerConsumer(t, c.nodes[1].client, stream, "after-freeze")
	f := follow(t, clientsOf(c, 2, 0, 1), arn, parent, trimHorizon())
	f.waitFor(t, 20*time.Second, acked)
	waitFor(t, 10*time.Second, "the subscription's last event naming the children", func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if !f.finished {
			return errors.New("no event with child shards yet")
		}
		return nil
	})
	recs, _, _, fatal := f.snapshot()
	if fatal != nil || len(recs) != len(acked) {
		t.Fatalf("subscription to the frozen parent: %d records, want %d; fatal %v", len(recs), len(acked), fatal)
	}

	c.kill(1)
	c.restart(1)
	waitFrozen(1)
	readAll(1)
}

// lineageReadOne reads one shard from TRIM_HORIZON to its end (or an open
// shard's tip) with GetRecords.
func lineageReadOne(t *testing.T, c rifflev1.StreamsClient, stream, id string) *lineageShard {
	t.Helper()
	ctx := context.Background()
	it, err := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: stream, ShardId: id,
		ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON})
	if err != nil {
		t.Fatalf("GetShardIterator %s: %v", id, err)
	}
	ls := &lineageShard{}
	for iter := it.ShardIterator; iter != ""; {
		r, err := c.GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: iter, Limit: 7})
		if err != nil {
			t.Fatalf("GetRecords %s: %v", id, err)
		}
		ls.records = append(ls.records, r.Records...)
		if r.NextShardIterator == "" {
			ls.closed = true
			for _, ch := range r.ChildShards {
				ls.children = append(ls.children, ch.ShardId)
			}
			break
		}
		if len(r.Records) == 0 {
			break
		}
		iter = r.NextShardIterator
	}
	return ls
}
