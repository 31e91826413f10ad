package client

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// bigRecordsServer answers GetRecords with one record of the requested
// size, to check the message limits.
type bigRecordsServer struct {
	rifflev1.UnimplementedStreamsServer
	size int
}

func (s *bigRecordsServer) GetRecords(context.Context, *rifflev1.GetRecordsRequest) (*rifflev1.GetRecordsResponse, error) {
	return &rifflev1.GetRecordsResponse{Records: []*rifflev1.Record{{SequenceNumber: "1", Data: make([]byte, s.size)}}}, nil
}

func (s *bigRecordsServer) PutRecords(_ context.Context, req *rifflev1.PutRecordsRequest) (*rifflev1.PutRecordsResponse, error) {
	resp := &rifflev1.PutRecordsResponse{}
	for range req.GetRecords() {
		resp.Records = append(resp.Records, &rifflev1.PutRecordsResultEntry{ShardId: "shardId-000000000000", SequenceNumber: "1"})
	}
	return resp, nil
}

func startServer(t *testing.T, srv rifflev1.StreamsServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.MaxRecvMsgSize(MaxMessageSize))
	rifflev1.RegisterStreamsServer(s, srv)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// deadAddr returns a loopback address on which nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// A GetRecords answer can be 10 MiB and a PutRecords request 5 MiB: both
// must pass the client's message limits (gRPC's default receive limit is
// 4 MiB).
func TestDialCarriesLargestAPIMessages(t *testing.T) {
	addr := startServer(t, &bigRecordsServer{size: 10 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, []string{addr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Streams().GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: "x"})
	if err != nil {
		t.Fatalf("GetRecords of 10 MiB: %v", err)
	}
	if got := len(resp.GetRecords()[0].GetData()); got != 10<<20 {
		t.Fatalf("got %d bytes, want %d", got, 10<<20)
	}
	req := &rifflev1.PutRecordsRequest{StreamName: "s"}
	for range 5 {
		req.Records = append(req.Records, &rifflev1.PutRecordsRequestEntry{PartitionKey: "k", Data: make([]byte, 1<<20-1)})
	}
	if _, err := c.Streams().PutRecords(ctx, req); err != nil {
		t.Fatalf("PutRecords of 5 MiB: %v", err)
	}
}

// Any node accepts any call, so Dial must succeed while one address of
// several is reachable.
func TestDialSkipsUnreachableAddresses(t *testing.T) {
	live := startServer(t, &bigRecordsServer{size: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, []string{deadAddr(t), live, deadAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 10 {
		if _, err := c.Streams().GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: "x"}); err != nil {
			t.Fatalf("GetRecords: %v", err)
		}
	}
}

// With no node up, Dial must fail fast with Unavailable and say why,
// rather than wait for its deadline.
func TestDialFailsFastWhenNothingListens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, []string{deadAddr(t), deadAddr(t)})
	if err == nil {
		t.Fatal("Dial succeeded with nothing listening")
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("code = %v, want Unavailable (%v)", status.Code(err), err)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error does not say why: %v", err)
	}
	if !IsRetryable(err) {
		t.Errorf("unreachable cluster should be retryable: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Dial took %v", elapsed)
	}
}

// Dial gives up when its context ends.
func TestDialHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Dial(ctx, []string{deadAddr(t)})
	if code := status.Code(err); code != codes.Canceled && code != codes.Unavailable {
		t.Fatalf("code = %v, want Canceled or Unavailable (%v)", code, err)
	}
}

// Addresses without a port get the default one; malformed ones are refused.
func TestNormalizeAddr(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "127.0.0.1:7450", want: "127.0.0.1:7450"},
		{in: " node1:9000 ", want: "node1:9000"},
		{in: "node1", want: "node1:7450"},
		{in: "::1", want: "[::1]:7450"},
		{in: "[::1]:1234", want: "[::1]:1234"},
		{in: "", wantErr: true},
		{in: "a]b", wantErr: true},
		{in: "host:", wantErr: true},
	}
	for _, tt := range tests {
		got, err := normalizeAddr(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("normalizeAddr(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	if _, err := Dial(context.Background(), nil); err == nil {
		t.Error("Dial with no address succeeded")
	}
}
