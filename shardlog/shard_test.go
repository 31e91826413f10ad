package shardlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var testTiming = RaftTiming{
	HeartbeatTimeout: 100 * time.Millisecond,
	ElectionTimeout:  100 * time.Millisecond,
	LeaderLease:      100 * time.Millisecond,
	CommitTimeout:    5 * time.Millisecond,
}

// openTestShard opens a single-voter shard in dir and waits for leadership.
func openTestShard(t testing.TB, dir string) *Shard {
	t.Helper()
	_, tr := raft.NewInmemTransport("n1")
	s, err := OpenShard(ShardOptions{
		GroupID:   "g",
		Dir:       dir,
		LocalID:   "n1",
		Transport: tr,
		Bootstrap: []raft.Server{{ID: "n1", Address: "n1"}},
		Timing:    testTiming,
	})
	if err != nil {
		t.Fatalf("OpenShard: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatalf("no leader: %v", err)
	}
	// Leadership is known before the leader accepts writes; wait for it.
	for !s.IsLeader() {
		if ctx.Err() != nil {
			t.Fatal("never became leader")
		}
		time.Sleep(time.Millisecond)
	}
	return s
}

// appendN writes n single-record requests from w concurrent writers and
// returns the value stored at each offset.
func appendN(t testing.TB, s *Shard, w, n int, prefix string) map[uint64]string {
	t.Helper()
	var mu sync.Mutex
	got := map[uint64]string{}
	var wg sync.WaitGroup
	for g := 0; g < w; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += w {
				v := fmt.Sprintf("%s-%d", prefix, i)
				res, err := s.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte(v)}})
				if err != nil {
					t.Errorf("append %s: %v", v, err)
					return
				}
				mu.Lock()
				got[res.FirstOffset] = v
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return got
}

// checkHolds verifies that every acknowledged offset holds its value and the
// log has no gaps.
func checkHolds(t *testing.T, l *Log, acked map[uint64]string) {
	t.Helper()
	recs, err := l.Read(l.TrimOffset(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if r.Offset != uint64(i) {
			t.Fatalf("gap: record %d has offset %d", i, r.Offset)
		}
	}
	for off, v := range acked {
		if off >= uint64(len(recs)) || string(recs[off].Data) != v {
			t.Fatalf("acknowledged offset %d (%s) lost", off, v)
		}
	}
}

// TestShardAcknowledgedWritesSurviveRestart checks contract 2 on one
// replica: every acknowledged record is there after a restart, at the same
// offset, and new offsets continue above the old ones.
func TestShardAcknowledgedWritesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	s := openTestShard(t, dir)
	acked := appendN(t, s, 16, 400, "a")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestShard(t, dir)
	defer s.Close()
	checkHolds(t, s.Log(), acked)
	res, err := s.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte("after")}})
	if err != nil || res.FirstOffset != 400 {
		t.Fatalf("append after restart: offset %d, %v; want 400", res.FirstOffset, err)
	}
}

// TestShardRecoversTornSegmentFromRaftLog checks that records lost from the
// segment tail (unsynced data after a crash) come back from the raft log
// with the same offsets, so nothing acknowledged is lost.
func TestShardRecoversTornSegmentFromRaftLog(t *testing.T) {
	dir := t.TempDir()
	s := openTestShard(t, dir)
	acked := appendN(t, s, 8, 200, "t")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "segments", "*.log"))
	sort.Strings(segs)
	active := segs[len(segs)-1]
	fi, err := os.Stat(active)
	if err != nil {
		t.Fatal(err)
	}
	// Cut the file in the middle of the data: a torn tail.
	if err := os.Truncate(active, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	s = openTestShard(t, dir)
	defer s.Close()
	deadline := time.Now().Add(10 * time.Second)
	for s.Log().NextOffset() < 200 && time.Now().Before(deadline) {
		<-s.Log().Changed()
	}
	checkHolds(t, s.Log(), acked)
}

// TestShardRefusesMissingData checks that a replica whose segments lost
// records covered by a snapshot refuses to start instead of serving a log
// with a hole.
func TestShardRefusesMissingData(t *testing.T) {
	dir := t.TempDir()
	s := openTestShard(t, dir)
	appendN(t, s, 4, 50, "m")
	if err := s.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "segments")); err != nil {
		t.Fatal(err)
	}
	_, tr := raft.NewInmemTransport("n1")
	_, err := OpenShard(ShardOptions{GroupID: "g", Dir: dir, LocalID: "n1", Transport: tr, Timing: testTiming})
	if !errors.Is(err, ErrMissingData) {
		t.Fatalf("OpenShard with lost segments: %v, want ErrMissingData", err)
	}
}

// TestShardGroupCommit checks that concurrent writes are coalesced into
// fewer raft entries than requests, with every request answered exactly.
func TestShardGroupCommit(t *testing.T) {
	s := openTestShard(t, t.TempDir())
	defer s.Close()
	before := s.Raft().LastIndex()
	acked := appendN(t, s, 64, 2000, "g")
	if len(acked) != 2000 {
		t.Fatalf("%d distinct offsets for 2000 writes", len(acked))
	}
	entries := s.Raft().LastIndex() - before
	if entries >= 2000 {
		t.Fatalf("2000 concurrent writes took %d raft entries: no group commit", entries)
	}
	t.Logf("2000 writes from 64 writers in %d raft entries", entries)
	checkHolds(t, s.Log(), acked)
}

// TestShardFollowerRefusesWrites checks that Append on a replica that is not
// the leader fails with ErrNotLeader and writes nothing.
func TestShardNotLeaderRefusesWrites(t *testing.T) {
	_, tr := raft.NewInmemTransport("n1")
	// No bootstrap configuration: the replica never becomes leader.
	s, err := OpenShard(ShardOptions{GroupID: "g", Dir: t.TempDir(), LocalID: "n1", Transport: tr, Timing: testTiming})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Append(context.Background(), []Entry{{PartitionKey: "k", Data: []byte("x")}}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Append on a non-leader: %v", err)
	}
	if s.Log().NextOffset() != 0 {
		t.Fatal("a refused write was stored")
	}
}

// BenchmarkShardAppend measures acknowledged writes of 1 KiB records through
// raft with fsync, from parallel writers (group commit).
func BenchmarkShardAppend(b *testing.B) {
	s := openTestShard(b, b.TempDir())
	defer s.Close()
	data := make([]byte, 1024)
	b.SetBytes(int64(len(data)))
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Append(context.Background(), []Entry{{PartitionKey: "k", Data: data}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestShardAppendAfterCloseFailsFast checks that writes racing with Close
// are answered (applied, or ErrShardClosed meaning not applied) and never
// left waiting for their deadline.
func TestShardAppendAfterCloseFailsFast(t *testing.T) {
	s := openTestShard(t, t.TempDir())
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := s.Append(ctx, []Entry{{PartitionKey: "k", Data: []byte("x")}})
			errs <- err
		}()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	wg.Wait()
	close(errs)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("appends racing with Close took %v to be answered", d)
	}
	for err := range errs {
		if err != nil && !errors.Is(err, ErrShardClosed) && !errors.Is(err, ErrNotLeader) {
			var unknown *OutcomeUnknownError
			if !errors.As(err, &unknown) {
				t.Errorf("append racing with Close: %v", err)
			}
		}
	}
}

// A new group elects the campaigning replica at once: with heartbeat and
// election timeouts of a minute, no replica would stand for election within
// the test's deadline on its own.
func TestShardCampaignElectsAtOnce(t *testing.T) {
	ids := []raft.ServerAddress{"n1", "n2", "n3"}
	transports := map[raft.ServerAddress]*raft.InmemTransport{}
	var servers []raft.Server
	for _, id := range ids {
		_, transports[id] = raft.NewInmemTransport(id)
		servers = append(servers, raft.Server{ID: raft.ServerID(id), Address: id})
	}
	for _, a := range ids {
		for _, b := range ids {
			transports[a].Connect(b, transports[b])
		}
	}
	slow := RaftTiming{HeartbeatTimeout: time.Minute, ElectionTimeout: time.Minute, LeaderLease: 100 * time.Millisecond, CommitTimeout: 5 * time.Millisecond}
	shards := map[raft.ServerAddress]*Shard{}
	for _, id := range ids {
		s, err := OpenShard(ShardOptions{
			GroupID: "g", Dir: t.TempDir(), LocalID: raft.ServerID(id), Transport: transports[id],
			Bootstrap: servers, Campaign: id == "n2", Timing: slow,
		})
		if err != nil {
			t.Fatalf("OpenShard %s: %v", id, err)
		}
		shards[id] = s
		t.Cleanup(func() { s.Close() })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shards["n1"].WaitLeader(ctx); err != nil {
		t.Fatalf("no leader within 10 s with one-minute timeouts: %v", err)
	}
	if got := shards["n1"].Leader(); got != "n2" {
		t.Fatalf("leader %s, want the campaigning replica n2", got)
	}
}
