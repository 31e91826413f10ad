package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// TestFaultClockEndpoint checks the fault clock hook (faultclock.go) in
// the build it runs in. Without the faultclock tag, /debug/clock does not
// exist. With it, the offset it sets moves the leader's arrival stamps,
// and a jump back still never makes a shard's arrival times decrease
// (DESIGN.md: arrival time set once by the leader, never decreasing within
// a shard).
func TestFaultClockEndpoint(t *testing.T) {
	dir := t.TempDir()
	n, err := Start(context.Background(), Config{
		NodeID: "n1", DataDir: filepath.Join(dir, "data"), GRPCAddr: "127.0.0.1:0",
		GossipAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	setOffset := func(d time.Duration) int {
		resp, err := http.Post(fmt.Sprintf("http://%s/debug/clock?offset=%v", n.AdminAddr(), d), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if !faultClockBuilt {
		if code := setOffset(time.Hour); code != http.StatusNotFound {
			t.Fatalf("POST /debug/clock without the faultclock tag: status %d, want 404", code)
		}
		return
	}

	conn, err := grpc.NewClient(n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := rifflev1.NewStreamsClient(conn)
	ctx := context.Background()
	const stream = "clock"
	poll(t, 30*time.Second, func() error {
		_, err := cl.CreateStream(ctx, &rifflev1.CreateStreamRequest{StreamName: stream, ShardCount: 1})
		return err
	})
	put := func() time.Time {
		var out *rifflev1.PutRecordResponse
		poll(t, 30*time.Second, func() (err error) {
			out, err = cl.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: stream, PartitionKey: "k", Data: []byte("v")})
			return err
		})
		it, err := cl.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: stream, ShardId: out.GetShardId(),
			ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_SEQUENCE_NUMBER, StartingSequenceNumber: out.GetSequenceNumber()})
		if err != nil {
			t.Fatal(err)
		}
		recs, err := cl.GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: it.GetShardIterator(), Limit: 1})
		if err != nil || len(recs.GetRecords()) != 1 {
			t.Fatalf("reading back %s: %v (%d records)", out.GetSequenceNumber(), err, len(recs.GetRecords()))
		}
		return recs.GetRecords()[0].GetApproximateArrivalTimestamp().AsTime()
	}

	if code := setOffset(3 * time.Hour); code != http.StatusOK {
		t.Fatalf("POST /debug/clock: status %d", code)
	}
	ahead := put()
	if d := time.Until(ahead); d < 2*time.Hour || d > 4*time.Hour {
		t.Fatalf("arrival %v with the clock 3h ahead is %v from now", ahead, d)
	}
	setOffset(-3 * time.Hour)
	back := put()
	if back.Before(ahead) {
		t.Fatalf("after the clock jumped back the arrival time went from %v to %v", ahead, back)
	}
	setOffset(0)
}

// poll retries f until it succeeds or timeout passes.
func poll(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
