package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

func data(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

// readN calls Next until it has n records, and returns them with the shard
// each came from.
func readN(t *testing.T, next func(context.Context) (Batch, error), n int) (recs []string, shards []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(recs) < n {
		b, err := next(ctx)
		if err != nil {
			t.Fatalf("after %d records: %v", len(recs), err)
		}
		if len(b.Records) == 0 && b.MillisBehindLatest != 0 {
			t.Fatalf("Next returned an empty batch %d ms behind", b.MillisBehindLatest)
		}
		for _, r := range b.Records {
			recs = append(recs, string(r.Data))
			shards = append(shards, b.ShardID)
		}
	}
	return recs, shards
}

// The polling reader returns a shard's records in order, once each,
// across an expired iterator (it resumes after the last record returned),
// throttled and unavailable polls (retried, after the broker's delay), and
// waits at the tip for records written later.
func TestShardReaderReadsInOrderThroughFailures(t *testing.T) {
	f := newFakeStreams(1)
	f.appendRecords(0, data(50, "a")...)
	f.getErr = func(call int) error {
		switch call {
		case 2:
			return testBrokerError(codes.FailedPrecondition, ExpiredIteratorException, "false", "")
		case 3:
			return throttledError(20 * time.Millisecond)
		case 4:
			return testBrokerError(codes.Unavailable, ServiceUnavailable, "true", "")
		}
		return nil
	}
	c := f.start(t)
	r := NewShardReader(c, "s", "shardId-000000000000", TrimHorizon(), ReaderConfig{Limit: 7, PollInterval: 10 * time.Millisecond, Retry: fastPolicy(8)})
	defer r.Close()
	got, shards := readN(t, r.Next, 50)
	if !slices.Equal(got, data(50, "a")) {
		t.Fatalf("read %v", got)
	}
	if shards[0] != "shardId-000000000000" {
		t.Errorf("records from %s", shards[0])
	}
	if n := f.count("GetShardIterator"); n != 2 {
		t.Errorf("%d GetShardIterator calls, want 2 (the start, then after the expiry)", n)
	}
	// At the tip the reader polls again for records written later.
	f.appendRecords(0, data(5, "b")...)
	got, _ = readN(t, r.Next, 5)
	if !slices.Equal(got, data(5, "b")) {
		t.Fatalf("read %v after the tip", got)
	}
}

// A reader told it is behind learns when it has caught up: the poll that
// first finds the tip confirmed comes back as a batch without records and
// 0 behind, once; at the tip after that, Next waits for records.
func TestShardReaderReportsCatchingUp(t *testing.T) {
	f := newFakeStreams(1)
	f.appendRecords(0, data(3, "a")...)
	// The first two polls reach the end without the broker confirming it
	// is the shard's end.
	f.unconfirmedEnd = func(call int) bool { return call <= 2 }
	c := f.start(t)
	r := NewShardReader(c, "s", "shardId-000000000000", TrimHorizon(), ReaderConfig{PollInterval: 5 * time.Millisecond, Retry: fastPolicy(4)})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := r.Next(ctx)
	if err != nil || len(b.Records) != 3 || b.MillisBehindLatest != 1 {
		t.Fatalf("first batch: %d records, %d ms behind, %v; want 3 records, 1 ms behind", len(b.Records), b.MillisBehindLatest, err)
	}
	b, err = r.Next(ctx)
	if err != nil || len(b.Records) != 0 || b.MillisBehindLatest != 0 || b.ShardID != "shardId-000000000000" {
		t.Fatalf("second batch: %+v, %v; want no records, 0 behind, of shardId-000000000000", b, err)
	}
	if n := f.count("GetRecords"); n != 3 {
		t.Errorf("caught up after %d polls, want 3 (the second still unconfirmed)", n)
	}
	// At the confirmed tip Next says nothing more until records come.
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if b, err := r.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next at the tip returned %+v, %v; want it to wait", b, err)
	}
	if f.count("GetRecords") < 5 {
		t.Errorf("only %d polls: the reader stopped polling at the tip", f.count("GetRecords"))
	}
	f.appendRecords(0, "b")
	if b, err := r.Next(ctx); err != nil || len(b.Records) != 1 {
		t.Fatalf("after a new record: %+v, %v", b, err)
	}
}

// A shard that keeps failing makes Next return the error after
// MaxAttempts polls; a non-retryable error is returned at once.
func TestShardReaderBoundsFailures(t *testing.T) {
	f := newFakeStreams(1)
	f.appendRecords(0, "x")
	failing := true
	f.getErr = func(int) error {
		if failing {
			return throttledError(time.Millisecond)
		}
		return nil
	}
	c := f.start(t)
	r := NewShardReader(c, "s", "shardId-000000000000", TrimHorizon(), ReaderConfig{Retry: fastPolicy(4)})
	defer r.Close()
	_, err := r.Next(context.Background())
	if ExceptionName(err) != ProvisionedThroughputExceededException {
		t.Fatalf("err = %v, want the throttling error", err)
	}
	if n := f.count("GetRecords"); n != 4 {
		t.Errorf("%d polls, want 4", n)
	}
	f.mu.Lock()
	failing = false
	f.mu.Unlock()
	if got, _ := readN(t, r.Next, 1); got[0] != "x" {
		t.Errorf("after the error: %v", got)
	}
	f.mu.Lock()
	f.getErr = func(int) error { return testBrokerError(codes.NotFound, ResourceNotFoundException, "false", "") }
	f.mu.Unlock()
	before := f.count("GetRecords")
	if _, err := r.Next(context.Background()); ExceptionName(err) != ResourceNotFoundException {
		t.Errorf("err = %v, want ResourceNotFoundException", err)
	}
	if n := f.count("GetRecords") - before; n != 1 {
		t.Errorf("%d polls for a non-retryable error, want 1", n)
	}
}

// Contract 5 seen from a reader: after a split the reader goes on with both
// children, and a merged child only once both parents it reads have ended,
// so every key's records in a parent come before its records in a child.
// The reader ends (io.EOF) when nothing is left to follow.
func TestShardReaderFollowsChildren(t *testing.T) {
	f := newFakeStreams(1)
	f.appendRecords(0, data(10, "p")...)
	left := f.addChild(0)
	right := f.addChild(0)
	f.appendRecords(left, data(10, "l")...)
	f.appendRecords(right, data(3, "r")...)
	merged := f.addChild(left, right)
	f.appendRecords(merged, data(4, "m")...)
	c := f.start(t)
	r := NewShardReader(c, "s", "shardId-000000000000", TrimHorizon(), ReaderConfig{Limit: 4, PollInterval: time.Millisecond})
	defer r.Close()
	got, shards := readN(t, r.Next, 27)
	pos := map[string]int{}
	for i, d := range got {
		pos[d] = i
	}
	for _, d := range data(10, "p") {
		if pos[d] >= pos["l0"] || pos[d] >= pos["r0"] {
			t.Errorf("parent record %s read after a child's", d)
		}
	}
	for _, d := range append(data(10, "l"), data(3, "r")...) {
		if pos[d] >= pos["m0"] {
			t.Errorf("record %s read after the merged child's", d)
		}
	}
	if shards[pos["m3"]] != "shardId-000000000003" || shards[pos["l0"]] != "shardId-000000000001" {
		t.Errorf("shards %v", shards)
	}
	// The two children of the split take turns.
	if pos["r0"] > pos["l9"] {
		t.Errorf("the right child waited for the whole left one: %v", got)
	}
	// Close the merged child: nothing is left.
	f.mu.Lock()
	f.shards[merged].closed = true
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.Next(ctx); !errors.Is(err, io.EOF) {
		t.Errorf("after the last shard: %v, want io.EOF", err)
	}
}

// A reader started on one parent of a merge does not wait for the other
// parent, which it was not asked to read.
func TestShardReaderDoesNotWaitForOtherParent(t *testing.T) {
	f := newFakeStreams(2)
	f.appendRecords(0, "a")
	f.appendRecords(1, "b")
	merged := f.addChild(0, 1)
	f.mu.Lock()
	f.shards[1].closed = false // the other parent is still open
	f.mu.Unlock()
	f.appendRecords(merged, "m")
	c := f.start(t)
	r := NewShardReader(c, "s", "shardId-000000000000", TrimHorizon(), ReaderConfig{PollInterval: time.Millisecond})
	defer r.Close()
	if got, _ := readN(t, r.Next, 2); !slices.Equal(got, []string{"a", "m"}) {
		t.Errorf("read %v, want a then m", got)
	}
}

// Records out of order or repeated are reported, not passed on.
func TestShardReaderReportsOrderViolation(t *testing.T) {
	f := newFakeStreams(1)
	f.appendRecords(0, "a", "b")
	f.mu.Lock()
	f.shards[0].records[1].SequenceNumber = f.shards[0].records[0].SequenceNumber
	f.mu.Unlock()
	c := f.start(t)
	r := NewShardReader(c, "s", "shardId-000000000000", TrimHorizon(), ReaderConfig{})
	defer r.Close()
	if _, err := r.Next(context.Background()); !errors.Is(err, ErrOrderViolation) {
		t.Errorf("err = %v, want ErrOrderViolation", err)
	}
}

// Close ends a Next that waits at the tip.
func TestShardReaderClose(t *testing.T) {
	f := newFakeStreams(1)
	c := f.start(t)
	r := NewShardReader(c, "s", "shardId-000000000000", Latest(), ReaderConfig{PollInterval: time.Millisecond})
	done := make(chan error, 1)
	go func() {
		_, err := r.Next(context.Background())
		done <- err
	}()
	waitUntil(t, 10*time.Second, "a poll", func() bool { return f.count("GetRecords") > 0 })
	r.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrConsumerClosed) {
			t.Errorf("err = %v, want ErrConsumerClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next did not return after Close")
	}
}

// lineage: the children of a split start together; a merged child starts
// once every parent being read has ended.
func TestLineage(t *testing.T) {
	child := func(id string, parents ...string) *rifflev1.ChildShard {
		return &rifflev1.ChildShard{ShardId: id, ParentShards: parents}
	}
	l := newLineage("x")
	if got := l.end("x", []*rifflev1.ChildShard{child("a", "x"), child("b", "x")}); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("after the split: %v", got)
	}
	if got := l.end("a", []*rifflev1.ChildShard{child("c", "a", "b")}); len(got) != 0 {
		t.Fatalf("merged child started before its other parent ended: %v", got)
	}
	if got := l.end("b", []*rifflev1.ChildShard{child("c", "a", "b")}); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("after both parents: %v", got)
	}
	one := newLineage("a")
	if got := one.end("a", []*rifflev1.ChildShard{child("c", "a", "b")}); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("a reader of one parent: %v", got)
	}
	// A reader of both parents from the start (NewShardsSubscriber) reads
	// their merged child once, after both.
	both := newLineage("a", "b")
	if got := both.end("a", []*rifflev1.ChildShard{child("c", "a", "b")}); len(got) != 0 {
		t.Fatalf("merged child started after one of two parents: %v", got)
	}
	if got := both.end("b", []*rifflev1.ChildShard{child("c", "a", "b")}); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("after both parents: %v", got)
	}
	if got := both.end("c", nil); len(got) != 0 {
		t.Fatalf("after the child: %v", got)
	}
}

// The shard map routes each hash key to the open shard whose inclusive
// range holds it.
func TestShardMapRoutes(t *testing.T) {
	f := newFakeStreams(3)
	f.addChild(1) // shard 1 closes, shard 3 covers its range
	c := f.start(t)
	m, err := loadShardMap(context.Background(), c, "s", fastPolicy(1))
	if err != nil {
		t.Fatal(err)
	}
	third := f.shards[1].start
	for _, tt := range []struct {
		hash string
		want string
	}{
		{"0", "shardId-000000000000"},
		{new(big.Int).Sub(third, big.NewInt(1)).String(), "shardId-000000000000"},
		{third.String(), "shardId-000000000003"},
		{maxHashKey.String(), "shardId-000000000002"},
	} {
		h, _ := parseHashKey(tt.hash)
		if got, ok := m.shardFor(h); !ok || got != tt.want {
			t.Errorf("shardFor(%s) = %s, %v; want %s", tt.hash, got, ok, tt.want)
		}
	}
	// MD5 of "a" is 0cc175b9c0f1b6a831c399e269772661.
	if got := PartitionHash("a").Text(16); got != "cc175b9c0f1b6a831c399e269772661" {
		t.Errorf("PartitionHash(a) = %s", got)
	}
}
