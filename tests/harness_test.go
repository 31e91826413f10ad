package tests

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/riffle-streams/riffle/node"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// fastRaft makes single-node groups elect themselves quickly in tests.
var fastRaft = shardlog.RaftTiming{
	HeartbeatTimeout: 100 * time.Millisecond,
	ElectionTimeout:  100 * time.Millisecond,
	LeaderLease:      100 * time.Millisecond,
	CommitTimeout:    5 * time.Millisecond,
}

// steadyRaft is slower than fastRaft, for cluster tests that run many shard
// groups under writes and count every failed write as a defect (resharding,
// scaling): on a busy two-core machine 100 ms timeouts make leaderships
// flap, which fails writes for reasons those tests do not test.
var steadyRaft = shardlog.RaftTiming{
	HeartbeatTimeout: 250 * time.Millisecond,
	ElectionTimeout:  250 * time.Millisecond,
	LeaderLease:      250 * time.Millisecond,
	CommitTimeout:    5 * time.Millisecond,
}

// testNode is one in-process node and a client connected to it.
type testNode struct {
	*node.Node
	dir    string
	client rifflev1.StreamsClient
	conn   *grpc.ClientConn
}

// startNode starts a node on loopback ports with its data in dir and waits
// until it is ready. It is stopped when the test ends unless stopped first.
func startNode(t testing.TB, dir string) *testNode {
	t.Helper()
	return startNodeConfig(t, node.Config{DataDir: dir})
}

// startNodeConfig is startNode with the caller's settings (limits,
// subscription timing); addresses, raft timing and logging are filled in.
func startNodeConfig(t testing.TB, cfg node.Config) *testNode {
	t.Helper()
	dir := cfg.DataDir
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	cfg.NodeID, cfg.GRPCAddr, cfg.AdminAddr = "n1", "127.0.0.1:0", "127.0.0.1:0"
	if cfg.GossipAddr == "" {
		cfg.GossipAddr = freePort(t) // not the default port: tests of other checkouts may run at once
	}
	cfg.Raft, cfg.Logger = fastRaft, logger
	n, err := node.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	conn, err := grpc.NewClient(n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(node.MaxMessageBytes), grpc.MaxCallSendMsgSize(node.MaxMessageBytes)))
	if err != nil {
		t.Fatal(err)
	}
	tn := &testNode{Node: n, dir: dir, client: rifflev1.NewStreamsClient(conn), conn: conn}
	t.Cleanup(func() { tn.stop(t) })
	waitFor(t, 10*time.Second, "node ready", func() error {
		return n.NotReady()
	})
	return tn
}

// stop shuts the node down cleanly; safe to call twice.
func (tn *testNode) stop(t testing.TB) {
	if tn.conn == nil {
		return
	}
	tn.conn.Close()
	tn.conn = nil
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tn.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// waitFor polls cond until it returns nil or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	interval := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(interval)
		interval = min(2*interval, 100*time.Millisecond)
	}
}

// createStream creates a stream and waits until it is ACTIVE.
func createStream(t testing.TB, c rifflev1.StreamsClient, name string, shards int32) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.CreateStream(ctx, &rifflev1.CreateStreamRequest{StreamName: name, ShardCount: shards}); err != nil {
		t.Fatalf("CreateStream %s: %v", name, err)
	}
	waitActive(t, c, name)
}

func waitActive(t testing.TB, c rifflev1.StreamsClient, name string) {
	t.Helper()
	waitFor(t, 10*time.Second, name+" ACTIVE", func() error {
		out, err := c.DescribeStreamSummary(context.Background(), &rifflev1.DescribeStreamSummaryRequest{StreamName: name})
		if err != nil {
			return err
		}
		if s := out.StreamDescriptionSummary.StreamStatus; s != rifflev1.StreamStatus_STREAM_STATUS_ACTIVE {
			return fmt.Errorf("status %v", s)
		}
		return nil
	})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// logTail is an io.Writer that keeps the last max lines written to it.
type logTail struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (l *logTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.SplitAfter(string(p), "\n") {
		if line == "" {
			continue
		}
		l.lines = append(l.lines, line)
	}
	if over := len(l.lines) - l.max; over > 0 {
		l.lines = append(l.lines[:0], l.lines[over:]...)
	}
	return len(p), nil
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "")
}

func tempDataDir(t testing.TB) string { return filepath.Join(t.TempDir(), "data") }

// testClock is a clock tests set ahead, to expire records without waiting
// out the 24-hour minimum retention. Until set it reads the real time.
type testClock struct {
	mu sync.Mutex
	at time.Time
}

// Set fixes the clock at t.
func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = t
}

// Now is the clock's time.
func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() {
		return time.Now()
	}
	return c.at
}

// nowFunc is c.Now, or nil (the real clock) for a nil c.
func (c *testClock) nowFunc() func() time.Time {
	if c == nil {
		return nil
	}
	return c.Now
}
