package shardlog

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// countingFetcher counts the fetches f serves.
func countingFetcher(f Fetcher, n *atomic.Int64) Fetcher {
	return func(ctx context.Context, req FetchRequest, sink func(FetchedChunk) error) error {
		n.Add(1)
		return f(ctx, req, sink)
	}
}

// TestShardFetchesMissingRecordsAtStartup checks that a replica whose
// segments lost records its latest snapshot covers copies them through its
// fetcher before raft starts, instead of refusing (TestShardRefusesMissingData),
// and then holds every acknowledged record and takes writes after them.
func TestShardFetchesMissingRecordsAtStartup(t *testing.T) {
	dir := t.TempDir()
	s := openTestShard(t, dir)
	acked := appendN(t, s, 4, 300, "m")
	if err := s.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A peer holds the same records; this replica loses its own.
	peerDir := t.TempDir()
	if err := os.CopyFS(peerDir, os.DirFS(filepath.Join(dir, "segments"))); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "segments")); err != nil {
		t.Fatal(err)
	}
	peer := openTestLog(t, peerDir, 0)
	var fetches atomic.Int64
	_, tr := raft.NewInmemTransport("n1")
	s, err := OpenShard(ShardOptions{GroupID: "g", Dir: dir, LocalID: "n1", Transport: tr, Timing: testTiming,
		Fetch: countingFetcher(logFetcher(peer, 64), &fetches), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("OpenShard with a fetcher: %v", err)
	}
	defer s.Close()
	if fetches.Load() == 0 {
		t.Fatal("the replica started without fetching")
	}
	sameLog(t, s.Log(), peer)
	checkHolds(t, s.Log(), acked)
	waitLeading(t, s)
	res, err := s.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte("after")}})
	if err != nil || res.FirstOffset != 300 {
		t.Fatalf("append after catch-up: offset %d, %v; want 300", res.FirstOffset, err)
	}
}

func waitLeading(t *testing.T, s *Shard) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("never became leader")
		}
		time.Sleep(time.Millisecond)
	}
}

// raftTrio is three replicas of one group over raft's in-memory transport.
type raftTrio struct {
	t               *testing.T
	segmentMaxBytes int64      // 0: the default
	timing          RaftTiming // zero: testTiming
	dirs            [3]string
	trans           [3]*raft.InmemTransport
	shards          [3]*Shard
}

func trioID(i int) raft.ServerID { return raft.ServerID(fmt.Sprintf("n%d", i+1)) }

func (g *raftTrio) open(i int, fetch Fetcher) {
	g.t.Helper()
	_, g.trans[i] = raft.NewInmemTransport(raft.ServerAddress(trioID(i)))
	for j, tr := range g.trans {
		if j != i && tr != nil {
			tr.Connect(raft.ServerAddress(trioID(i)), g.trans[i])
			g.trans[i].Connect(raft.ServerAddress(trioID(j)), tr)
		}
	}
	var servers []raft.Server
	for j := range 3 {
		servers = append(servers, raft.Server{ID: trioID(j), Address: raft.ServerAddress(trioID(j))})
	}
	timing := g.timing
	if timing == (RaftTiming{}) {
		timing = testTiming
	}
	s, err := OpenShard(ShardOptions{GroupID: "g", Dir: g.dirs[i], LocalID: trioID(i), Transport: g.trans[i],
		Bootstrap: servers, Timing: timing, SegmentMaxBytes: g.segmentMaxBytes, Fetch: fetch, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		g.t.Fatalf("OpenShard n%d: %v", i+1, err)
	}
	g.shards[i] = s
}

func (g *raftTrio) close(i int) {
	g.t.Helper()
	for j, tr := range g.trans {
		if j != i && tr != nil {
			tr.Disconnect(raft.ServerAddress(trioID(i)))
		}
	}
	if err := g.shards[i].Close(); err != nil {
		g.t.Fatalf("close n%d: %v", i+1, err)
	}
	g.trans[i].Close()
	g.shards[i] = nil
}

// start opens the three replicas on new directories, with no fetcher,
// and closes the running ones when the test ends.
func (g *raftTrio) start() {
	for i := range g.dirs {
		g.dirs[i] = g.t.TempDir()
	}
	for i := range 3 {
		g.open(i, nil)
	}
	g.t.Cleanup(func() {
		for i, s := range g.shards {
			if s != nil {
				g.close(i)
			}
		}
	})
}

// leader waits for one of the running replicas to lead and returns it.
func (g *raftTrio) leader() int {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i, s := range g.shards {
			if s != nil && s.IsLeader() {
				return i
			}
		}
		time.Sleep(time.Millisecond)
	}
	g.t.Fatal("no leader")
	return -1
}

// TestShardRestoreFetchesFromPeer checks the snapshot install path: a
// replica that was down while the others wrote far more than TrailingLogs
// entries and compacted their raft logs gets only a manifest, fetches the
// records it lacks from a peer (the leader first) with their offsets, raft
// indexes, timestamps and batches, and then goes on applying new entries
// like the others.
func TestShardRestoreFetchesFromPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("700 replicated writes")
	}
	g := &raftTrio{t: t}
	g.start()
	l := g.leader()
	acked := appendN(t, g.shards[l], 8, 100, "before")
	down := (l + 1) % 3
	waitFor(t, func() bool { return g.shards[down].Log().NextOffset() == 100 })
	g.close(down)

	// One raft entry per write: the raft log grows past TrailingLogs.
	for k, v := range appendN(t, g.shards[l], 1, 600, "while-down") {
		acked[k] = v
	}
	for i, s := range g.shards {
		if s != nil {
			if err := s.Raft().Snapshot().Error(); err != nil {
				t.Fatalf("snapshot on n%d: %v", i+1, err)
			}
		}
	}
	if first, err := g.shards[l].entries.FirstIndex(); err != nil || first <= g.shards[l].Raft().LastIndex()-600 {
		t.Fatalf("leader's raft log starts at %d (%v): not compacted past the replica that is down", first, err)
	}

	var sources []*Log
	for i, s := range g.shards {
		if i != down {
			sources = append(sources, s.Log())
		}
	}
	var fetches atomic.Int64
	g.open(down, countingFetcher(func(ctx context.Context, req FetchRequest, sink func(FetchedChunk) error) error {
		if req.Leader != trioID(l) {
			t.Errorf("fetch names leader %q, want %q", req.Leader, trioID(l))
		}
		return logFetcher(sources[0], 37)(ctx, req, sink)
	}, &fetches))
	waitFor(t, func() bool { return g.shards[down].Log().NextOffset() >= 700 })
	if fetches.Load() == 0 {
		t.Fatal("the replica caught up without fetching: raft still held the entries")
	}
	more := appendN(t, g.shards[g.leader()], 4, 50, "after")
	for k, v := range more {
		acked[k] = v
	}
	waitFor(t, func() bool { return g.shards[down].Log().NextOffset() == 750 })
	checkHolds(t, g.shards[down].Log(), acked)
	sameLog(t, g.shards[down].Log(), g.shards[g.leader()].Log())
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
