package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// serveForward serves h's Forward service on loopback and returns a client.
func serveForward(t *testing.T, h *Host) internalv1.ForwardClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	h.RegisterForward(g)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return internalv1.NewForwardClient(conn)
}

// fetchAll calls FetchRecords and returns every chunk.
func fetchAll(t *testing.T, c internalv1.ForwardClient, req *internalv1.FetchRecordsRequest) ([]shardlog.FetchedChunk, error) {
	t.Helper()
	stream, err := c.FetchRecords(context.Background(), req)
	if err != nil {
		return nil, err
	}
	var out []shardlog.FetchedChunk
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, chunkFromProto(chunk))
	}
}

// TestFetchRecordsServesReplicaLog checks the catch-up RPC: it streams the
// replica's records of [from, to) exactly as stored (offsets, raft indexes,
// timestamps, batch ends) in bounded chunks, with the replica's trim
// horizon; after retention it starts at the horizon, and when nothing of
// the range is left it still reports the horizon.
func TestFetchRecordsServesReplicaLog(t *testing.T) {
	h := startTestHost(t, HostOptions{SegmentMaxBytes: 64 << 10, RetentionCheckInterval: time.Hour})
	ctx := context.Background()
	if err := h.CreateStream(ctx, CreateStreamCmd{Name: "f", ShardCount: 1, Mode: ModeProvisioned, RetentionHours: 24, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "stream active", func() bool {
		s := h.Meta().State().Streams["f"]
		return s != nil && s.Status == StreamActive
	})
	s := h.Meta().State().Streams["f"]
	sh := s.Shards[0]
	var lastTS int64
	write := func(from, to int) {
		for i := from; i < to; i++ {
			entries := make([]shardlog.Entry, 1+i%3)
			for k := range entries {
				entries[k] = shardlog.Entry{PartitionKey: "k", Data: []byte(fmt.Sprintf("%0*d", 20<<10, i))}
			}
			res, err := h.Append(ctx, s, sh, entries)
			if err != nil {
				t.Fatal(err)
			}
			lastTS = res.Timestamp
		}
	}
	// Two generations of records, the second stamped later than the first,
	// so that retention can delete the first alone.
	write(0, 40)
	for time.Now().UnixMilli() <= lastTS {
		time.Sleep(100 * time.Microsecond)
	}
	write(40, 50)
	r, err := h.Shard(s, sh)
	if err != nil {
		t.Fatal(err)
	}
	l := r.Log()
	secondGeneration := l.OffsetAtTime(lastTS)
	c := serveForward(t, h)

	// check verifies that chunks carry exactly the records [from, to) of
	// the local log, each chunk within the size bound.
	check := func(chunks []shardlog.FetchedChunk, from, to uint64) {
		t.Helper()
		want, err := l.Read(from, int(to-from), 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []shardlog.Record
		for _, ch := range chunks {
			if ch.Horizon != l.TrimHorizon() {
				t.Fatalf("chunk horizon %+v, replica's %+v", ch.Horizon, l.TrimHorizon())
			}
			size := 0
			for _, rec := range ch.Records {
				size += len(rec.PartitionKey) + len(rec.Data)
			}
			if size > fetchChunkBytes && len(ch.Records) > 1 {
				t.Fatalf("chunk of %d bytes", size)
			}
			got = append(got, ch.Records...)
		}
		if len(got) != len(want) {
			t.Fatalf("fetched %d records of [%d, %d), want %d", len(got), from, to, len(want))
		}
		for i := range got {
			g, w := got[i], want[i]
			if g.Offset != w.Offset || g.RaftIndex != w.RaftIndex || g.Timestamp != w.Timestamp ||
				g.PartitionKey != w.PartitionKey || string(g.Data) != string(w.Data) || g.LastInBatch != w.LastInBatch {
				t.Fatalf("record %d: fetched %+v, stored %+v", i, g, w)
			}
		}
	}

	next := l.NextOffset()
	chunks, err := fetchAll(t, c, &internalv1.FetchRecordsRequest{StreamId: s.ID, ShardIndex: sh.Index, FromOffset: 3, ToOffset: next - 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 2 {
		t.Fatalf("%d chunks for %d KiB", len(chunks), (next-8)*20)
	}
	check(chunks, 3, next-5)

	// Beyond the end: what the replica has.
	chunks, err = fetchAll(t, c, &internalv1.FetchRecordsRequest{StreamId: s.ID, ShardIndex: sh.Index, FromOffset: next - 2, ToOffset: next + 100})
	if err != nil {
		t.Fatal(err)
	}
	check(chunks, next-2, next)

	// After retention: from the horizon on.
	ts, err := l.TimestampAt(secondGeneration)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := l.DeleteBefore(ts); err != nil || n == 0 {
		t.Fatalf("DeleteBefore: %d, %v", n, err)
	}
	trim := l.TrimOffset()
	if trim == 0 || trim >= next {
		t.Fatalf("trim offset %d of %d: the test needs records on both sides", trim, next)
	}
	chunks, err = fetchAll(t, c, &internalv1.FetchRecordsRequest{StreamId: s.ID, ShardIndex: sh.Index, FromOffset: 0, ToOffset: next})
	if err != nil {
		t.Fatal(err)
	}
	check(chunks, trim, next)
	chunks, err = fetchAll(t, c, &internalv1.FetchRecordsRequest{StreamId: s.ID, ShardIndex: sh.Index, FromOffset: 0, ToOffset: trim})
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 1 || len(chunks[0].Records) != 0 || chunks[0].Horizon != l.TrimHorizon() {
		t.Fatalf("fetch of deleted records: %+v, want the horizon %+v alone", chunks, l.TrimHorizon())
	}

	// An unknown shard is an error, not an empty answer.
	_, err = fetchAll(t, c, &internalv1.FetchRecordsRequest{StreamId: s.ID, ShardIndex: 7, FromOffset: 0, ToOffset: 1})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("fetch from an unknown shard: %v", err)
	}
}
