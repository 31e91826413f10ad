package cluster

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
)

// Guarantee: two raft groups share one gRPC server per node and each behaves
// as a correct raft cluster: elections, ordered replication of 1000 entries
// through pipelines, catch-up of an empty follower by InstallSnapshot on its
// own connection after log compaction, leadership transfer by TimeoutNow,
// and failover when a node is cut off.
func TestRaftMuxThreeNodesTwoGroups(t *testing.T) {
	c := newMuxTestCluster(t, []string{"n1", "n2", "n3"}, []string{"g1", "g2"})

	for _, g := range c.groups {
		c.waitLeader(g)
	}

	// 1000 applies per group, submitted together so that raft pipelines them.
	// Values differ per group: a request routed to the wrong group would show
	// up as a foreign value.
	for gi, g := range c.groups {
		values := make([]uint64, 1000)
		for i := range values {
			values[i] = uint64(gi+1)*1_000_000 + uint64(i)
		}
		c.apply(g, values...)
	}
	for _, g := range c.groups {
		c.waitReplicated(g)
	}
	if n := c.callCount(internalv1.RaftTransport_AppendEntriesPipeline_FullMethodName); n == 0 {
		t.Fatal("no AppendEntries pipeline was opened while replicating 1000 entries")
	}

	// Snapshot and compact every log, then replace a follower of g1 with an
	// empty node on a new port: it can only catch up by InstallSnapshot.
	for _, n := range c.liveNodes() {
		for _, g := range c.groups {
			if err := n.rafts[g].Snapshot().Error(); err != nil {
				t.Fatalf("snapshot %s/%s: %v", n.id, g, err)
			}
		}
	}
	for _, g := range c.groups {
		leader := c.waitLeader(g)
		first, err := leader.stores[g].logs.FirstIndex()
		if err != nil || first <= 1 {
			t.Fatalf("log of %s on leader %s not compacted: first index %d, %v", g, leader.id, first, err)
		}
	}
	follower := c.followerOf("g1")
	oldAddr := c.addrOf(follower.id)
	restarted := c.restartNode(follower.id, false)
	if restarted.addr == oldAddr {
		t.Fatalf("restarted node kept its address %s", oldAddr)
	}
	for _, g := range c.groups {
		c.waitReplicated(g)
		if restores := restarted.fsms[g].restoreCount(); restores == 0 {
			t.Fatalf("%s/%s caught up without InstallSnapshot", restarted.id, g)
		}
	}
	snapshotPeers := restarted.remoteAddrs(internalv1.RaftTransport_InstallSnapshot_FullMethodName)
	if len(snapshotPeers) == 0 {
		t.Fatal("restarted node received no InstallSnapshot RPC")
	}
	raftPeers := restarted.remoteAddrs(
		internalv1.RaftTransport_AppendEntries_FullMethodName,
		internalv1.RaftTransport_AppendEntriesPipeline_FullMethodName)
	for a := range snapshotPeers {
		if raftPeers[a] {
			t.Fatalf("InstallSnapshot came over connection %s, which also carried AppendEntries", a)
		}
	}
	for gi, g := range c.groups {
		c.apply(g, uint64(gi+1)*1_000_000+5000)
		c.waitReplicated(g)
	}

	// Leadership transfer sends TimeoutNow to the chosen follower.
	for gi, g := range c.groups {
		old := c.waitLeader(g)
		if err := old.rafts[g].LeadershipTransfer().Error(); err != nil {
			t.Fatalf("leadership transfer of %s: %v", g, err)
		}
		muxCheckFor(t, 10*time.Second, func() error {
			if l := c.leaderNow(g); l == nil || l == old {
				return fmt.Errorf("%s has no new leader yet", g)
			}
			return nil
		})
		c.apply(g, uint64(gi+1)*1_000_000+6000)
		c.waitReplicated(g)
	}
	if n := c.callCount(internalv1.RaftTransport_TimeoutNow_FullMethodName); n == 0 {
		t.Fatal("leadership moved without a TimeoutNow RPC")
	}

	// Cut g1's leader off: its gRPC server stops and its mux closes, while its
	// raft instances keep running as a partitioned node would. The other two
	// elect new leaders and keep committing; the old leader steps down.
	cut := c.waitLeader("g1")
	c.partition(cut)
	for gi, g := range c.groups {
		c.waitLeader(g)
		c.apply(g, uint64(gi+1)*1_000_000+7000, uint64(gi+1)*1_000_000+7001)
		c.waitReplicated(g)
	}
	muxCheckFor(t, 10*time.Second, func() error {
		if s := cut.rafts["g1"].State(); s == raft.Leader {
			return fmt.Errorf("cut-off node %s is still leader of g1", cut.id)
		}
		return nil
	})
}

// Guarantee: a node restarted on a new address is reached there: the leader
// resolves the peer again on every RPC and replaces its cached connection.
func TestRaftMuxFollowsResolverChange(t *testing.T) {
	c := newMuxTestCluster(t, []string{"n1", "n2", "n3"}, []string{"g1"})
	c.apply("g1", 1, 2, 3)
	c.waitReplicated("g1")

	leader := c.waitLeader("g1")
	follower := c.followerOf("g1")
	oldAddr := c.addrOf(follower.id)
	restarted := c.restartNode(follower.id, true)
	if restarted.addr == oldAddr {
		t.Fatalf("restarted node kept its address %s", oldAddr)
	}

	c.apply("g1", 4, 5, 6)
	c.waitReplicated("g1")
	muxCheckFor(t, 10*time.Second, func() error {
		leader.mux.mu.Lock()
		defer leader.mux.mu.Unlock()
		pc := leader.mux.conns[connKey{peer: raft.ServerAddress(follower.id), kind: raftConn}]
		if pc == nil || pc.target != restarted.addr {
			return fmt.Errorf("leader's connection to %s does not point at its new address %s", follower.id, restarted.addr)
		}
		return nil
	})
	if len(restarted.remoteAddrs(internalv1.RaftTransport_AppendEntries_FullMethodName,
		internalv1.RaftTransport_AppendEntriesPipeline_FullMethodName)) == 0 {
		t.Fatal("restarted node got no AppendEntries at its new address")
	}
}

// Guarantee: an RPC for a group the node does not serve (never created, or
// released) fails at once with NOT_FOUND, an RPC meant for another node with
// FAILED_PRECONDITION, and an RPC whose raft does not consume is bounded by
// the caller's deadline.
func TestRaftMuxUnknownGroupFailsFast(t *testing.T) {
	node := startMuxServer(t, "n1", nil)
	cc, err := grpc.NewClient(node.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	mux := node.mux
	client := internalv1.NewRaftTransportClient(cc)

	// A group with a transport but no raft reading its consumer channel.
	mux.Transport("stalled")
	mux.Transport("released")
	mux.Release("released")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	route := func(group, target string) *internalv1.RaftRoute {
		return &internalv1.RaftRoute{GroupId: group, Target: target}
	}

	tests := []struct {
		name string
		call func(ctx context.Context) error
		want codes.Code
	}{
		{"unknown group", func(ctx context.Context) error {
			_, err := client.RequestVote(ctx, &internalv1.RequestVoteRequest{Route: route("nope", "n1"), Term: 1})
			return err
		}, codes.NotFound},
		{"released group", func(ctx context.Context) error {
			_, err := client.AppendEntries(ctx, &internalv1.AppendEntriesRequest{Route: route("released", "n1"), Term: 1})
			return err
		}, codes.NotFound},
		{"unknown group pipeline", func(ctx context.Context) error {
			s, err := client.AppendEntriesPipeline(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&internalv1.AppendEntriesRequest{Route: route("nope", "n1"), Term: 1}); err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, codes.NotFound},
		{"unknown group snapshot", func(ctx context.Context) error {
			s, err := client.InstallSnapshot(ctx)
			if err != nil {
				return err
			}
			req := &internalv1.InstallSnapshotRequest{Route: route("nope", "n1"), Size: 1}
			_ = s.Send(&internalv1.InstallSnapshotChunk{Chunk: &internalv1.InstallSnapshotChunk_Request{Request: req}})
			_, err = s.CloseAndRecv()
			return err
		}, codes.NotFound},
		{"meant for another node", func(ctx context.Context) error {
			_, err := client.TimeoutNow(ctx, &internalv1.TimeoutNowRequest{Route: route("stalled", "n2")})
			return err
		}, codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := tt.call(ctx)
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code %v (%v), want %v", got, err, tt.want)
			}
			// "At once": far below the 30 s the caller would wait.
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %s", d)
			}
		})
	}

	t.Run("stalled consumer bounded by deadline", func(t *testing.T) {
		short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := client.RequestVote(short, &internalv1.RequestVoteRequest{Route: route("stalled", "n1"), Term: 1})
		if got := status.Code(err); got != codes.DeadlineExceeded {
			t.Fatalf("code %v (%v), want DeadlineExceeded", got, err)
		}
		// The handler itself must give up, not only the client.
		muxCheckFor(t, 5*time.Second, func() error {
			if n := node.activeHandlers.Load(); n != 0 {
				return fmt.Errorf("%d handlers still running", n)
			}
			return nil
		})
	})

	t.Run("heartbeat bypasses a busy consumer", func(t *testing.T) {
		// raft answers heartbeats on its fast path while its main loop may
		// be stuck on disk; nobody reads the stalled group's consumer.
		mux.Transport("stalled").SetHeartbeatHandler(func(rpc raft.RPC) {
			req := rpc.Command.(*raft.AppendEntriesRequest)
			rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, Success: true}, nil)
		})
		hb := appendEntriesRequestToProto(route("stalled", "n1"), &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ID: []byte("n2"), Addr: []byte("n2")},
			Term:      7,
		})
		hbCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := client.AppendEntries(hbCtx, hb)
		if err != nil || !resp.GetSuccess() || resp.GetTerm() != 7 {
			t.Fatalf("heartbeat not answered by the fast path: %v, %v", resp, err)
		}
	})
}

// Guarantee: a pipeline to a follower whose raft does not keep up holds at
// most pipelineWindow requests; responses come back to raft in request
// order; a broken stream fails the pipeline (so raft falls back to unary
// AppendEntries) and Close ends it.
func TestRaftMuxPipelineWindowOrderAndFailure(t *testing.T) {
	follower := startMuxServer(t, "n2", nil)
	leader := NewRaftMux(RaftMuxOptions{
		LocalAddress: "n1",
		Resolve:      func(raft.ServerAddress) (string, error) { return follower.addr, nil },
		DialOptions:  []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Timeout:      2 * time.Second,
		Logger:       muxQuietLogger(),
	})
	t.Cleanup(func() { _ = leader.Close() })

	// The follower's "raft": answers AppendEntries once the gate opens.
	gate := make(chan struct{})
	consumer := follower.mux.Transport("g").Consumer()
	raftDone := make(chan struct{})
	stopRaft := make(chan struct{})
	go func() {
		defer close(raftDone)
		select {
		case <-gate:
		case <-stopRaft:
			return
		}
		for {
			select {
			case rpc := <-consumer:
				req := rpc.Command.(*raft.AppendEntriesRequest)
				rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: req.PrevLogEntry + 1, Success: true}, nil)
			case <-stopRaft:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stopRaft); <-raftDone })

	p, err := leader.Transport("g").AppendEntriesPipeline("n2", "n2")
	if err != nil {
		t.Fatal(err)
	}
	const total = 20
	var sent sync.WaitGroup
	sendErr := make(chan error, 1)
	var sentCount atomic.Int64
	sent.Add(1)
	go func() {
		defer sent.Done()
		for i := range total {
			req := &raft.AppendEntriesRequest{
				RPCHeader:    raft.RPCHeader{ID: []byte("n1"), Addr: []byte("n1")},
				Term:         1,
				PrevLogEntry: uint64(i + 1),
				Entries:      []*raft.Log{{Index: uint64(i + 2), Term: 1, Data: []byte("x")}},
			}
			if _, err := p.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
				sendErr <- err
				return
			}
			sentCount.Add(1)
		}
	}()

	muxCheckFor(t, 5*time.Second, func() error {
		if n := sentCount.Load(); n < pipelineWindow {
			return fmt.Errorf("%d requests sent, want the window of %d", n, pipelineWindow)
		}
		return nil
	})
	// A negative can only be shown by waiting: the stalled follower must
	// hold the leader at the window.
	select {
	case err := <-sendErr:
		t.Fatalf("send failed while the follower was slow: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if n := sentCount.Load(); n != pipelineWindow {
		t.Fatalf("%d requests in flight to a stalled follower, want at most %d", n, pipelineWindow)
	}

	close(gate)
	for i := range total {
		select {
		case f := <-p.Consumer():
			if err := f.Error(); err != nil {
				t.Fatalf("response %d: %v", i, err)
			}
			req, resp := f.Request(), f.Response()
			if req.PrevLogEntry != uint64(i+1) || resp.LastLog != req.PrevLogEntry+1 || !resp.Success {
				t.Fatalf("response %d out of order or wrong: request %d, response %+v", i, req.PrevLogEntry, resp)
			}
		case err := <-sendErr:
			t.Fatalf("send: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("response %d never came", i)
		}
	}
	sent.Wait()

	// Break the stream: the follower goes away. The next request fails, at
	// once or through its future, never hangs.
	follower.stop()
	broke := make(chan error, 1)
	go func() {
		_, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 1, PrevLogEntry: 100}, new(raft.AppendEntriesResponse))
		if err != nil {
			broke <- err
			return
		}
		select {
		case f := <-p.Consumer():
			if f.Response().Success {
				broke <- errors.New("success from a stopped follower")
				return
			}
			broke <- f.Error()
		case <-time.After(10 * time.Second):
			broke <- nil
		}
	}()
	if err := <-broke; err == nil {
		t.Fatal("pipeline to a stopped follower did not fail")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 1}, new(raft.AppendEntriesResponse)); err == nil {
		t.Fatal("AppendEntries on a closed pipeline succeeded")
	}
}

// muxServer is a bare node: a gRPC server with a RaftMux and no raft.
type muxServer struct {
	addr           string
	mux            *RaftMux
	srv            *grpc.Server
	served         chan struct{}
	activeHandlers atomic.Int64
	stopOnce       sync.Once
}

func startMuxServer(t *testing.T, id string, resolve func(raft.ServerAddress) (string, error)) *muxServer {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &muxServer{addr: lis.Addr().String(), served: make(chan struct{})}
	s.srv = grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			s.activeHandlers.Add(1)
			defer s.activeHandlers.Add(-1)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			s.activeHandlers.Add(1)
			defer s.activeHandlers.Add(-1)
			return h(srv, ss)
		}),
	)
	s.mux = NewRaftMux(RaftMuxOptions{
		LocalAddress: raft.ServerAddress(id),
		Resolve:      resolve,
		DialOptions:  []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Logger:       muxQuietLogger(),
	})
	s.mux.Register(s.srv)
	go func() { defer close(s.served); _ = s.srv.Serve(lis) }()
	t.Cleanup(s.stop)
	return s
}

func (s *muxServer) stop() {
	s.stopOnce.Do(func() {
		s.srv.Stop()
		<-s.served
		_ = s.mux.Close()
	})
}

// Guarantee: every field of every raft RPC struct crosses the wire. The
// structs are filled by reflection, so a field added to raft and forgotten
// in raftmux_convert.go fails here; every proto field must be set too, so a
// proto field the converter forgets fails as well.
func TestRaftMuxConvertRoundTrip(t *testing.T) {
	route := &internalv1.RaftRoute{GroupId: "g", Target: "n1"}
	cases := []convertCase{
		convertCaseFor("AppendEntriesRequest",
			func(r *raft.AppendEntriesRequest) *internalv1.AppendEntriesRequest {
				return appendEntriesRequestToProto(route, r)
			},
			appendEntriesRequestFromProto),
		convertCaseFor("AppendEntriesResponse", appendEntriesResponseToProto,
			responseFromProto(appendEntriesResponseFromProto)),
		convertCaseFor("RequestVoteRequest",
			func(r *raft.RequestVoteRequest) *internalv1.RequestVoteRequest {
				return requestVoteRequestToProto(route, r)
			},
			requestVoteRequestFromProto),
		convertCaseFor("RequestVoteResponse", requestVoteResponseToProto,
			responseFromProto(requestVoteResponseFromProto)),
		convertCaseFor("RequestPreVoteRequest",
			func(r *raft.RequestPreVoteRequest) *internalv1.RequestPreVoteRequest {
				return requestPreVoteRequestToProto(route, r)
			},
			requestPreVoteRequestFromProto),
		convertCaseFor("RequestPreVoteResponse", requestPreVoteResponseToProto,
			responseFromProto(requestPreVoteResponseFromProto)),
		convertCaseFor("InstallSnapshotRequest",
			func(r *raft.InstallSnapshotRequest) *internalv1.InstallSnapshotRequest {
				return installSnapshotRequestToProto(route, r)
			},
			installSnapshotRequestFromProto),
		convertCaseFor("InstallSnapshotResponse", installSnapshotResponseToProto,
			responseFromProto(installSnapshotResponseFromProto)),
		convertCaseFor("TimeoutNowRequest",
			func(r *raft.TimeoutNowRequest) *internalv1.TimeoutNowRequest {
				return timeoutNowRequestToProto(route, r)
			},
			timeoutNowRequestFromProto),
		convertCaseFor("TimeoutNowResponse", timeoutNowResponseToProto,
			responseFromProto(timeoutNowResponseFromProto)),
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

// Guarantee: conversion keeps what raft tells apart by zero values: a
// heartbeat stays a heartbeat (the follower's fast path depends on it) and
// an entry without AppendedAt keeps the zero time.
func TestRaftMuxConvertKeepsZeroValues(t *testing.T) {
	hb := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n1"), Addr: []byte("n1")},
		Term:      3,
	}
	got := appendEntriesRequestFromProto(muxWire(t, appendEntriesRequestToProto(nil, hb)))
	if !isHeartbeat(got) {
		t.Fatalf("heartbeat lost its shape: %+v", got)
	}
	withEntry := &raft.AppendEntriesRequest{Term: 3, Entries: []*raft.Log{{Index: 1, Term: 3, Data: []byte("x")}}}
	got = appendEntriesRequestFromProto(muxWire(t, appendEntriesRequestToProto(nil, withEntry)))
	if isHeartbeat(got) {
		t.Fatal("AppendEntries with an entry taken for a heartbeat")
	}
	if !got.Entries[0].AppendedAt.IsZero() {
		t.Fatalf("zero AppendedAt became %v", got.Entries[0].AppendedAt)
	}
}

// --- conversion test helpers ---

type convertCase struct {
	name string
	run  func(t *testing.T)
}

// convertCaseFor fills an R completely, converts it to M, through the wire
// and back, and wants it unchanged.
func convertCaseFor[R any, M proto.Message](name string, toProto func(*R) M, fromProto func(M) *R) convertCase {
	return convertCase{name: name, run: func(t *testing.T) {
		in := new(R)
		var next uint64
		muxFillAll(t, reflect.ValueOf(in), &next)
		muxRequireNoZeroField(t, name, reflect.ValueOf(in).Elem())
		msg := toProto(in)
		muxRequireAllProtoFieldsSet(t, name, msg.ProtoReflect())
		out := fromProto(muxWire(t, msg))
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("%s changed on the way:\n in: %+v\nout: %+v", name, in, out)
		}
	}}
}

// responseFromProto adapts a converter that fills raft's response in place.
func responseFromProto[R any, M proto.Message](fill func(M, *R)) func(M) *R {
	return func(m M) *R {
		out := new(R)
		fill(m, out)
		return out
	}
}

// muxWire marshals and unmarshals m, as the network would.
func muxWire[M proto.Message](t *testing.T, m M) M {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	back := m.ProtoReflect().New().Interface().(M)
	if err := proto.Unmarshal(b, back); err != nil {
		t.Fatal(err)
	}
	return back
}

// muxFillAll sets every field reachable from v to a distinct non-zero value;
// slices get two elements.
func muxFillAll(t *testing.T, v reflect.Value, next *uint64) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		muxFillAll(t, v.Elem(), next)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			*next++
			v.Set(reflect.ValueOf(time.Unix(1_700_000_000+int64(*next), int64(*next)).UTC()))
			return
		}
		for i := range v.NumField() {
			if !v.Type().Field(i).IsExported() {
				t.Fatalf("%s.%s is unexported: the converter cannot carry it", v.Type(), v.Type().Field(i).Name)
			}
			muxFillAll(t, v.Field(i), next)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			*next++
			v.SetBytes(fmt.Appendf(nil, "bytes-%d", *next))
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range s.Len() {
			muxFillAll(t, s.Index(i), next)
		}
		v.Set(s)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		*next++
		v.SetInt(int64(*next))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		*next++
		v.SetUint(*next)
	default:
		t.Fatalf("cannot fill a %s: teach muxFillAll", v.Type())
	}
}

// muxRequireNoZeroField proves muxFillAll reached every leaf, so that the
// round trip cannot pass by comparing zero with zero.
func muxRequireNoZeroField(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	switch {
	case v.Kind() == reflect.Pointer:
		muxRequireNoZeroField(t, path, v.Elem())
	case v.Kind() == reflect.Struct && v.Type() != reflect.TypeFor[time.Time]():
		for i := range v.NumField() {
			muxRequireNoZeroField(t, path+"."+v.Type().Field(i).Name, v.Field(i))
		}
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.Uint8:
		for i := range v.Len() {
			muxRequireNoZeroField(t, fmt.Sprintf("%s[%d]", path, i), v.Index(i))
		}
	case v.IsZero():
		t.Fatalf("%s was not filled", path)
	}
}

// muxRequireAllProtoFieldsSet wants every field of m, recursively, set.
func muxRequireAllProtoFieldsSet(t *testing.T, path string, m protoreflect.Message) {
	t.Helper()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		p := path + "." + string(fd.Name())
		if !m.Has(fd) {
			t.Fatalf("%s is not set by the converter", p)
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			list := m.Get(fd).List()
			for j := range list.Len() {
				muxRequireAllProtoFieldsSet(t, fmt.Sprintf("%s[%d]", p, j), list.Get(j).Message())
			}
		case fd.Message() != nil:
			muxRequireAllProtoFieldsSet(t, p, m.Get(fd).Message())
		}
	}
}

// --- in-process cluster harness ---

// muxCheckFor polls fn until it returns nil, failing the test with fn's last
// error after timeout.
func muxCheckFor(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func muxQuietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// muxTestCluster is a set of in-process nodes, each a gRPC server on
// 127.0.0.1 with its own RaftMux, running the same raft groups.
type muxTestCluster struct {
	t      *testing.T
	groups []string

	mu      sync.Mutex
	addrs   map[raft.ServerAddress]string // the resolver's table
	nodes   map[string]*muxTestNode       // the current incarnation of each node
	all     []*muxTestNode                // every incarnation, for cleanup
	applied map[string][]uint64           // what each group committed, in order
}

type muxTestStores struct {
	logs   *raft.InmemStore
	stable *raft.InmemStore
	snaps  *raft.InmemSnapshotStore
}

type muxTestNode struct {
	id     string
	addr   string
	srv    *grpc.Server
	served chan struct{}
	mux    *RaftMux
	rafts  map[string]*raft.Raft
	fsms   map[string]*muxTestFSM
	stores map[string]*muxTestStores

	mu       sync.Mutex
	live     bool                       // serving and reachable
	raftsUp  bool                       // raft instances not shut down
	received map[string]map[string]bool // method -> remote addresses that called it
}

func newMuxTestCluster(t *testing.T, ids, groups []string) *muxTestCluster {
	c := &muxTestCluster{
		t:       t,
		groups:  groups,
		addrs:   map[raft.ServerAddress]string{},
		nodes:   map[string]*muxTestNode{},
		applied: map[string][]uint64{},
	}
	t.Cleanup(c.shutdown)
	for _, id := range ids {
		c.startNode(id, c.listen(), nil, ids)
	}
	return c
}

func (c *muxTestCluster) listen() net.Listener {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	return lis
}

func (c *muxTestCluster) resolve(addr raft.ServerAddress) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.addrs[addr]; ok {
		return a, nil
	}
	return "", fmt.Errorf("unknown node %s", addr)
}

func (c *muxTestCluster) addrOf(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addrs[raft.ServerAddress(id)]
}

// startNode runs node id on lis. stores nil means empty stores; bootstrap
// lists the initial voters when the node is one of them.
func (c *muxTestCluster) startNode(id string, lis net.Listener, stores map[string]*muxTestStores, bootstrap []string) *muxTestNode {
	t := c.t
	n := &muxTestNode{
		id:       id,
		addr:     lis.Addr().String(),
		served:   make(chan struct{}),
		rafts:    map[string]*raft.Raft{},
		fsms:     map[string]*muxTestFSM{},
		stores:   stores,
		live:     true,
		raftsUp:  true,
		received: map[string]map[string]bool{},
	}
	if n.stores == nil {
		n.stores = map[string]*muxTestStores{}
		for _, g := range c.groups {
			n.stores[g] = &muxTestStores{
				logs:   raft.NewInmemStore(),
				stable: raft.NewInmemStore(),
				snaps:  raft.NewInmemSnapshotStore(),
			}
		}
	}
	n.srv = grpc.NewServer(
		grpc.MaxRecvMsgSize(raftMaxMsgSize),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			n.record(ctx, info.FullMethod)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			n.record(ss.Context(), info.FullMethod)
			return h(srv, ss)
		}),
	)
	n.mux = NewRaftMux(RaftMuxOptions{
		LocalAddress: raft.ServerAddress(id),
		Resolve:      c.resolve,
		DialOptions:  []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Timeout:      2 * time.Second,
		Logger:       muxQuietLogger(),
	})
	n.mux.Register(n.srv)
	go func() { defer close(n.served); _ = n.srv.Serve(lis) }()

	c.mu.Lock()
	c.addrs[raft.ServerAddress(id)] = n.addr
	c.nodes[id] = n
	c.all = append(c.all, n)
	c.mu.Unlock()

	for _, g := range c.groups {
		cfg := raft.DefaultConfig()
		cfg.LocalID = raft.ServerID(id)
		// Generous for loopback so that -race on two cores does not cause
		// spurious elections.
		cfg.HeartbeatTimeout = 500 * time.Millisecond
		cfg.ElectionTimeout = 500 * time.Millisecond
		cfg.LeaderLeaseTimeout = 250 * time.Millisecond
		cfg.CommitTimeout = 5 * time.Millisecond
		cfg.TrailingLogs = 10
		cfg.SnapshotThreshold = 10
		cfg.Logger = hclog.NewNullLogger()
		fsm := &muxTestFSM{}
		st := n.stores[g]
		r, err := raft.NewRaft(cfg, fsm, st.logs, st.stable, st.snaps, n.mux.Transport(g))
		if err != nil {
			t.Fatalf("start raft %s/%s: %v", id, g, err)
		}
		n.rafts[g], n.fsms[g] = r, fsm
		if len(bootstrap) > 0 {
			var conf raft.Configuration
			for _, v := range bootstrap {
				conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(v), Address: raft.ServerAddress(v)})
			}
			if err := r.BootstrapCluster(conf).Error(); err != nil {
				t.Fatalf("bootstrap %s/%s: %v", id, g, err)
			}
		}
	}
	return n
}

// restartNode stops node id and starts it again on a new port, with its old
// stores or empty ones. The new listener opens before the old one closes, so
// the port differs.
func (c *muxTestCluster) restartNode(id string, keepStores bool) *muxTestNode {
	lis := c.listen()
	c.mu.Lock()
	old := c.nodes[id]
	c.mu.Unlock()
	old.stop(c.t)
	var stores map[string]*muxTestStores
	if keepStores {
		stores = old.stores
	}
	return c.startNode(id, lis, stores, nil)
}

// partition cuts n off: no RPCs in or out, raft instances left running.
func (c *muxTestCluster) partition(n *muxTestNode) {
	n.mu.Lock()
	n.live = false
	n.mu.Unlock()
	n.srv.Stop()
	<-n.served
	_ = n.mux.Close()
}

// stop shuts n down for good.
func (n *muxTestNode) stop(t *testing.T) {
	n.mu.Lock()
	n.live = false
	up := n.raftsUp
	n.raftsUp = false
	n.mu.Unlock()
	if up {
		for g, r := range n.rafts {
			if err := r.Shutdown().Error(); err != nil {
				t.Errorf("shutdown %s/%s: %v", n.id, g, err)
			}
		}
	}
	n.srv.Stop()
	<-n.served
	_ = n.mux.Close()
}

func (c *muxTestCluster) shutdown() {
	c.mu.Lock()
	all := slices.Clone(c.all)
	c.mu.Unlock()
	for _, n := range all {
		n.stop(c.t)
	}
}

func (n *muxTestNode) isLive() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.live
}

func (n *muxTestNode) record(ctx context.Context, method string) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.received[method] == nil {
		n.received[method] = map[string]bool{}
	}
	n.received[method][p.Addr.String()] = true
}

// remoteAddrs is the set of client addresses (one per connection) that
// called any of the methods.
func (n *muxTestNode) remoteAddrs(methods ...string) map[string]bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string]bool{}
	for _, m := range methods {
		for a := range n.received[m] {
			out[a] = true
		}
	}
	return out
}

func (c *muxTestCluster) callCount(method string) int {
	n := 0
	for _, node := range c.allNodes() {
		n += len(node.remoteAddrs(method))
	}
	return n
}

func (c *muxTestCluster) allNodes() []*muxTestNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.all)
}

func (c *muxTestCluster) liveNodes() []*muxTestNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*muxTestNode
	for _, n := range c.nodes {
		if n.isLive() {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b *muxTestNode) int { return cmp.Compare(a.id, b.id) })
	return out
}

// leaderNow is the one live node that leads group, or nil.
func (c *muxTestCluster) leaderNow(group string) *muxTestNode {
	var leader *muxTestNode
	for _, n := range c.liveNodes() {
		if n.rafts[group].State() == raft.Leader {
			if leader != nil {
				return nil
			}
			leader = n
		}
	}
	return leader
}

func (c *muxTestCluster) waitLeader(group string) *muxTestNode {
	c.t.Helper()
	var leader *muxTestNode
	muxCheckFor(c.t, 15*time.Second, func() error {
		if leader = c.leaderNow(group); leader == nil {
			return fmt.Errorf("group %s has no single live leader", group)
		}
		return nil
	})
	return leader
}

func (c *muxTestCluster) followerOf(group string) *muxTestNode {
	leader := c.waitLeader(group)
	for _, n := range c.liveNodes() {
		if n != leader {
			return n
		}
	}
	c.t.Fatalf("group %s has no live follower", group)
	return nil
}

// apply commits values on group's leader, in order.
func (c *muxTestCluster) apply(group string, values ...uint64) {
	c.t.Helper()
	leader := c.waitLeader(group)
	futures := make([]raft.ApplyFuture, len(values))
	for i, v := range values {
		futures[i] = leader.rafts[group].Apply(binary.BigEndian.AppendUint64(nil, v), 10*time.Second)
	}
	for i, f := range futures {
		if err := f.Error(); err != nil {
			c.t.Fatalf("apply %d to %s on %s: %v", values[i], group, leader.id, err)
		}
	}
	c.mu.Lock()
	c.applied[group] = append(c.applied[group], values...)
	c.mu.Unlock()
}

// waitReplicated waits until every live node's FSM of group holds exactly
// what was applied, in the same order.
func (c *muxTestCluster) waitReplicated(group string) {
	c.t.Helper()
	c.mu.Lock()
	want := slices.Clone(c.applied[group])
	c.mu.Unlock()
	muxCheckFor(c.t, 20*time.Second, func() error {
		for _, n := range c.liveNodes() {
			if got := n.fsms[group].valuesNow(); !slices.Equal(got, want) {
				return fmt.Errorf("%s/%s holds %d values, want the %d applied", n.id, group, len(got), len(want))
			}
		}
		return nil
	})
}

// muxTestFSM records the values it applies, in order.
type muxTestFSM struct {
	mu       sync.Mutex
	values   []uint64
	restores int
}

func (f *muxTestFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand || len(l.Data) != 8 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.values = append(f.values, binary.BigEndian.Uint64(l.Data))
	return len(f.values)
}

func (f *muxTestFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return muxTestSnapshot(slices.Clone(f.values)), nil
}

func (f *muxTestFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	if len(b)%8 != 0 {
		return errors.New("snapshot is not a list of uint64")
	}
	values := make([]uint64, 0, len(b)/8)
	for i := 0; i < len(b); i += 8 {
		values = append(values, binary.BigEndian.Uint64(b[i:]))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.values = values
	f.restores++
	return nil
}

func (f *muxTestFSM) valuesNow() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.values)
}

func (f *muxTestFSM) restoreCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restores
}

type muxTestSnapshot []uint64

func (s muxTestSnapshot) Persist(sink raft.SnapshotSink) error {
	b := make([]byte, 0, 8*len(s))
	for _, v := range s {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	if _, err := sink.Write(b); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s muxTestSnapshot) Release() {}

// Guarantee: when raft stops taking responses (its decoder quit after
// seeing a newer term, or the group is shutting down) a sender blocked on
// the full window gives up within the transport timeout instead of
// blocking forever, so that raft can wind the pipeline down and a group's
// Shutdown returns. Regression: a leader's Shutdown hung for 9 minutes in
// CI with its sender parked on the window.
func TestRaftMuxPipelineSenderGivesUpWhenResponsesAreNotTaken(t *testing.T) {
	follower := startMuxServer(t, "n2", nil)
	leader := NewRaftMux(RaftMuxOptions{
		LocalAddress: "n1",
		Resolve:      func(raft.ServerAddress) (string, error) { return follower.addr, nil },
		DialOptions:  []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Timeout:      300 * time.Millisecond,
		Logger:       muxQuietLogger(),
	})
	t.Cleanup(func() { _ = leader.Close() })
	consumer := follower.mux.Transport("g").Consumer()
	stop := make(chan struct{})
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		for {
			select {
			case rpc := <-consumer:
				req := rpc.Command.(*raft.AppendEntriesRequest)
				rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: req.PrevLogEntry + 1, Success: true}, nil)
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-answered })

	p, err := leader.Transport("g").AppendEntriesPipeline("n2", "n2")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Nobody reads p.Consumer(): the window fills and stays full.
	errc := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("n1"), Addr: []byte("n1")}, Term: 1,
				PrevLogEntry: uint64(i + 1), Entries: []*raft.Log{{Index: uint64(i + 2), Term: 1}}}
			if _, err := p.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
				errc <- err
				return
			}
		}
	}()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("AppendEntries failed without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a sender on a window nobody drains is still blocked after 10s (timeout 300ms)")
	}
}
