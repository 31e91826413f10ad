package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/riffle-streams/riffle/shardlog"
)

var testTiming = shardlog.RaftTiming{
	HeartbeatTimeout: 100 * time.Millisecond,
	ElectionTimeout:  100 * time.Millisecond,
	LeaderLease:      100 * time.Millisecond,
	CommitTimeout:    5 * time.Millisecond,
}

func startTestHost(t *testing.T, opts HostOptions) *Host {
	t.Helper()
	opts.NodeID = "n1"
	opts.DataDir = t.TempDir()
	members, err := StartMembership(MembershipOptions{NodeID: "n1", BindAddr: "127.0.0.1:0", Fast: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { members.Shutdown() })
	// A single node: its groups never send a raft RPC.
	mux := NewRaftMux(RaftMuxOptions{LocalAddress: "n1"})
	t.Cleanup(func() { mux.Close() })
	opts.Transports = mux
	opts.Membership = members
	opts.MetaTiming, opts.ShardTiming = testTiming, testTiming
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := StartHost(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	waitUntil(t, "host ready", func() bool { return h.NotReady() == nil })
	return h
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRetentionDeletesExpiredSegments checks that the host's retention pass
// removes whole segments older than the stream's retention and keeps the
// rest readable from the new trim horizon.
func TestRetentionDeletesExpiredSegments(t *testing.T) {
	h := startTestHost(t, HostOptions{SegmentMaxBytes: 4096, RetentionCheckInterval: time.Hour})
	ctx := context.Background()
	if err := h.CreateStream(ctx, CreateStreamCmd{Name: "r", ShardCount: 1, Mode: ModeProvisioned, RetentionHours: 24, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "stream active", func() bool {
		s := h.Meta().State().Streams["r"]
		return s != nil && s.Status == StreamActive
	})
	s := h.Meta().State().Streams["r"]
	sh := s.Shards[0]
	for i := 0; i < 100; i++ {
		if _, err := h.Append(ctx, s, sh, []shardlog.Entry{{PartitionKey: "k", Data: []byte(fmt.Sprintf("%0500d", i))}}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := h.Shard(s, sh)
	if err != nil {
		t.Fatal(err)
	}
	segs := len(r.Log().Segments())
	if segs < 3 {
		t.Fatalf("only %d segments; the test needs several", segs)
	}
	h.applyRetention(time.Now().Add(23 * time.Hour))
	if r.Log().TrimOffset() != 0 {
		t.Fatalf("records younger than the retention were deleted: trim at %d", r.Log().TrimOffset())
	}
	h.applyRetention(time.Now().Add(25 * time.Hour))
	if got := len(r.Log().Segments()); got != 1 {
		t.Fatalf("%d segments left after every record expired; want only the active one", got)
	}
	trim := r.Log().TrimOffset()
	if trim == 0 || trim > r.Log().NextOffset() {
		t.Fatalf("trim horizon %d after retention, next offset %d", trim, r.Log().NextOffset())
	}
	recs, err := r.Log().Read(trim, 0, 0)
	if err != nil || uint64(len(recs)) != r.Log().NextOffset()-trim {
		t.Fatalf("reading from the trim horizon: %d records, %v", len(recs), err)
	}
}

// TestDeleteStreamRemovesReplicas checks that deleting a stream stops its
// shard groups, removes their data and then the stream itself.
func TestDeleteStreamRemovesReplicas(t *testing.T) {
	h := startTestHost(t, HostOptions{})
	ctx := context.Background()
	if err := h.CreateStream(ctx, CreateStreamCmd{Name: "d", ShardCount: 2, Mode: ModeProvisioned, RetentionHours: 24, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "stream active", func() bool {
		s := h.Meta().State().Streams["d"]
		return s != nil && s.Status == StreamActive
	})
	s := h.Meta().State().Streams["d"]
	if err := h.ProposeMeta(ctx, Command{DeleteStream: &DeleteStreamCmd{Name: "d"}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "stream removed", func() bool { return h.Meta().State().Streams["d"] == nil })
	for _, sh := range s.Shards {
		if _, err := h.Shard(s, sh); err == nil {
			t.Errorf("replica of %s still running", sh.ID())
		}
		if _, err := os.Stat(h.shardDir(s.GroupID(sh))); !os.IsNotExist(err) {
			t.Errorf("data of %s still on disk: %v", sh.ID(), err)
		}
	}
}

// TestSweepRemovesStrayReplicas checks that the data of a replica this
// node no longer holds (moved away, or its stream gone, while the node was
// down) is deleted, and that the replicas it holds are kept.
func TestSweepRemovesStrayReplicas(t *testing.T) {
	h := startTestHost(t, HostOptions{})
	ctx := context.Background()
	if err := h.CreateStream(ctx, CreateStreamCmd{Name: "kept", ShardCount: 1, Mode: ModeProvisioned, RetentionHours: 24, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	st := h.Meta().State()
	s := st.Streams["kept"]
	waitUntil(t, "replica running", func() bool { _, err := h.Shard(s, s.Shards[0]); return err == nil })
	// A state in which this node's replica of an open shard (index 5) has
	// moved elsewhere: its directory goes; a directory of a stream this
	// state does not know (perhaps newer than it) stays.
	moved := *s.Shards[0]
	moved.Index, moved.Replicas = 5, []string{"elsewhere"}
	s2 := *s
	s2.Shards = []*Shard{s.Shards[0], &moved}
	st2 := *st
	st2.Streams = map[string]*Stream{"kept": &s2}
	stray, unknown := h.shardDir(s.GroupID(&moved)), h.shardDir("s99-0")
	for _, dir := range []string{stray, unknown} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.sweepStrayReplicas(&st2)
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Errorf("stray replica still there: %v", err)
	}
	if _, err := os.Stat(unknown); err != nil {
		t.Errorf("a replica of a stream the state does not know was removed: %v", err)
	}
	if _, err := os.Stat(h.shardDir(s.GroupID(s.Shards[0]))); err != nil {
		t.Errorf("held replica removed: %v", err)
	}
}

// TestSweepWaitsForCurrentMetadata: until the metadata replica has been
// known current since the start, reconciling a state in which a frozen
// shard's replicas are all elsewhere deletes nothing; after a restart such
// a state may be an old one, from before the shard's copy came here. The
// host is not started: its reconciler is the test's goroutine.
func TestSweepWaitsForCurrentMetadata(t *testing.T) {
	h := &Host{opts: HostOptions{NodeID: "n1", DataDir: t.TempDir()}, logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		shards: map[string]*shardlog.Shard{}, removing: map[string]bool{}, copies: map[string]bool{}, failed: map[string]error{},
		rebuilds: map[string]bool{}, sealReports: map[string]*shardlog.Shard{}, moveReports: map[string]*shardlog.Shard{},
		isCurrent: func() bool { return false }}
	w, err := openNodeWAL(h.opts.DataDir, h.logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	h.wal = w
	frozen := &Shard{Index: 5, Replicas: []string{"elsewhere"}, Frozen: true}
	s := &Stream{Name: "old", ID: 1, Status: StreamActive, Shards: []*Shard{frozen}, NextShardIndex: 6}
	st := &State{Streams: map[string]*Stream{"old": s}, NextStreamID: 2}
	dir := h.shardDir(s.GroupID(frozen))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h.reconcile(st)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("a replica's directory was deleted on a state not known current: %v", err)
	}
	// The same state judged by the sweep itself: the directory goes, so
	// the wait above is what kept it.
	h.sweepShardDirs(st)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("sweepShardDirs kept the directory of a shard frozen elsewhere: %v", err)
	}
}

// TestReconcileReopensReplicaThatAsks checks the host's side of
// shardlog.Shard.NeedsReopen (a snapshot install the raft log conflicted
// with): the reconcile loop closes that replica and opens it again, and the
// new one serves every record written before.
func TestReconcileReopensReplicaThatAsks(t *testing.T) {
	h := startTestHost(t, HostOptions{})
	ctx := context.Background()
	if err := h.CreateStream(ctx, CreateStreamCmd{Name: "re", ShardCount: 1, Mode: ModeProvisioned, RetentionHours: 24, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "stream active", func() bool {
		s := h.Meta().State().Streams["re"]
		return s != nil && s.Status == StreamActive
	})
	s := h.Meta().State().Streams["re"]
	sh := s.Shards[0]
	for i := range 10 {
		if _, err := h.Append(ctx, s, sh, []shardlog.Entry{{PartitionKey: "k", Data: []byte(fmt.Sprint(i))}}); err != nil {
			t.Fatal(err)
		}
	}
	old, err := h.Shard(s, sh)
	if err != nil {
		t.Fatal(err)
	}
	old.RequestReopen(errors.New("test: reopen"))
	waitUntil(t, "replica reopened and leading", func() bool {
		r, err := h.Shard(s, sh)
		return err == nil && r != old && r.IsLeader()
	})
	r, _ := h.Shard(s, sh)
	if recs, err := r.Log().Read(0, 0, 0); err != nil || len(recs) != 10 {
		t.Fatalf("reopened replica holds %d records (%v), want 10", len(recs), err)
	}
	if _, err := h.Append(ctx, s, sh, []shardlog.Entry{{PartitionKey: "k", Data: []byte("after")}}); err != nil {
		t.Fatalf("append after the reopen: %v", err)
	}
}
