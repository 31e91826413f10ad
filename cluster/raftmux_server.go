package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
)

// This file is the receiving side of the raft transport: the RaftTransport
// service routes each RPC by group id to the group's raft instance.

// errGroupClosed: the group's transport closed while an RPC waited on raft.
var errGroupClosed = errors.New("raft transport: group shut down")

// raftServer implements the RaftTransport gRPC service for a RaftMux.
type raftServer struct {
	internalv1.UnimplementedRaftTransportServer
	mux *RaftMux
}

// serving returns the transport of the group a request is routed to. It
// waits only while a hibernating group opens (SetWake): any other unknown
// group is an error at once.
func (m *RaftMux) serving(route *internalv1.RaftRoute) (*groupTransport, error) {
	if t := route.GetTarget(); t != "" && raft.ServerAddress(t) != m.opts.LocalAddress {
		return nil, fmt.Errorf("%w: meant for %s, this is %s", errWrongNode, t, m.opts.LocalAddress)
	}
	gid := route.GetGroupId()
	m.mu.Lock()
	g := m.groups[gid]
	m.mu.Unlock()
	if wake := m.wake.Load(); g == nil && wake != nil && (*wake)(gid) {
		m.mu.Lock()
		g = m.groups[gid]
		m.mu.Unlock()
	}
	if g == nil {
		return nil, fmt.Errorf("%w: %q", errGroupNotServed, route.GetGroupId())
	}
	return g, nil
}

// deliver hands one RPC to the group's raft and waits for its answer. Both
// waits end with ctx (the caller's deadline, or its going away) and with the
// group's transport, so a slow or stopped raft never holds a handler longer
// than its caller is willing to wait.
func (g *groupTransport) deliver(ctx context.Context, cmd any, data io.Reader, heartbeat bool) (any, error) {
	// Buffered: raft must never block answering a handler that gave up.
	respCh := make(chan raft.RPCResponse, 1)
	rpc := raft.RPC{Command: cmd, Reader: data, RespChan: respCh}

	var fastPath func(raft.RPC)
	if heartbeat {
		fastPath = g.heartbeatHandler()
	}
	if fastPath != nil {
		fastPath(rpc)
	} else {
		select {
		case g.consumeCh <- rpc:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-g.ctx.Done():
			return nil, errGroupClosed
		}
	}

	select {
	case resp := <-respCh:
		return resp.Response, resp.Error
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-g.ctx.Done():
		return nil, errGroupClosed
	}
}

// isHeartbeat tells a heartbeat from other AppendEntries, as raft's
// NetworkTransport does: a term and a leader and nothing else.
func isHeartbeat(req *raft.AppendEntriesRequest) bool {
	leader := req.Addr
	if len(leader) == 0 {
		leader = req.Leader
	}
	return req.Term != 0 && leader != nil &&
		req.PrevLogEntry == 0 && req.PrevLogTerm == 0 &&
		len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}

// serveUnary routes cmd to its group and returns raft's answer as R.
func serveUnary[R any](ctx context.Context, m *RaftMux, route *internalv1.RaftRoute, cmd any, heartbeat bool) (R, error) {
	var zero R
	g, err := m.serving(route)
	if err != nil {
		return zero, raftStatus(err)
	}
	resp, err := g.deliver(ctx, cmd, nil, heartbeat)
	if err != nil {
		return zero, raftStatus(err)
	}
	r, ok := resp.(R)
	if !ok {
		return zero, status.Errorf(codes.Internal, "raft transport: raft answered %T with %T", cmd, resp)
	}
	return r, nil
}

// AppendEntries implements internalv1.RaftTransportServer.
func (s *raftServer) AppendEntries(ctx context.Context, req *internalv1.AppendEntriesRequest) (*internalv1.AppendEntriesResponse, error) {
	cmd := appendEntriesRequestFromProto(req)
	resp, err := serveUnary[*raft.AppendEntriesResponse](ctx, s.mux, req.GetRoute(), cmd, isHeartbeat(cmd))
	if err != nil {
		return nil, err
	}
	return appendEntriesResponseToProto(resp), nil
}

// RequestVote implements internalv1.RaftTransportServer.
func (s *raftServer) RequestVote(ctx context.Context, req *internalv1.RequestVoteRequest) (*internalv1.RequestVoteResponse, error) {
	resp, err := serveUnary[*raft.RequestVoteResponse](ctx, s.mux, req.GetRoute(), requestVoteRequestFromProto(req), false)
	if err != nil {
		return nil, err
	}
	return requestVoteResponseToProto(resp), nil
}

// RequestPreVote implements internalv1.RaftTransportServer.
func (s *raftServer) RequestPreVote(ctx context.Context, req *internalv1.RequestPreVoteRequest) (*internalv1.RequestPreVoteResponse, error) {
	resp, err := serveUnary[*raft.RequestPreVoteResponse](ctx, s.mux, req.GetRoute(), requestPreVoteRequestFromProto(req), false)
	if err != nil {
		return nil, err
	}
	return requestPreVoteResponseToProto(resp), nil
}

// TimeoutNow implements internalv1.RaftTransportServer.
func (s *raftServer) TimeoutNow(ctx context.Context, req *internalv1.TimeoutNowRequest) (*internalv1.TimeoutNowResponse, error) {
	resp, err := serveUnary[*raft.TimeoutNowResponse](ctx, s.mux, req.GetRoute(), timeoutNowRequestFromProto(req), false)
	if err != nil {
		return nil, err
	}
	return timeoutNowResponseToProto(resp), nil
}

// AppendEntriesPipeline implements internalv1.RaftTransportServer. Requests
// are handed to raft one at a time and answered in order; raft handles a
// group's RPCs one at a time anyway, and the requests that follow wait in
// the stream's flow-control window meanwhile, so transfer and processing
// still overlap.
func (s *raftServer) AppendEntriesPipeline(stream grpc.BidiStreamingServer[internalv1.AppendEntriesRequest, internalv1.AppendEntriesResponse]) error {
	ctx := stream.Context()
	var g *groupTransport
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if g == nil {
			if g, err = s.mux.serving(req.GetRoute()); err != nil {
				return raftStatus(err)
			}
		} else if req.GetRoute() != nil && req.GetRoute().GetGroupId() != g.groupID {
			return status.Errorf(codes.InvalidArgument, "raft transport: pipeline of group %q got a request of group %q",
				g.groupID, req.GetRoute().GetGroupId())
		}
		resp, err := g.deliver(ctx, appendEntriesRequestFromProto(req), nil, false)
		if err != nil {
			return raftStatus(err)
		}
		r, ok := resp.(*raft.AppendEntriesResponse)
		if !ok {
			return status.Errorf(codes.Internal, "raft transport: raft answered AppendEntries with %T", resp)
		}
		if err := stream.Send(appendEntriesResponseToProto(r)); err != nil {
			return err
		}
	}
}

// InstallSnapshot implements internalv1.RaftTransportServer. Raft reads the
// snapshot from an io.Reader fed by the stream's data messages, in its own
// goroutine, while this handler waits for raft's answer.
func (s *raftServer) InstallSnapshot(stream grpc.ClientStreamingServer[internalv1.InstallSnapshotChunk, internalv1.InstallSnapshotResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	req := first.GetRequest()
	if req == nil {
		return status.Error(codes.InvalidArgument, "raft transport: InstallSnapshot must start with the request")
	}
	g, err := s.mux.serving(req.GetRoute())
	if err != nil {
		return raftStatus(err)
	}
	data := &snapshotReader{stream: stream}
	resp, err := g.deliver(stream.Context(), installSnapshotRequestFromProto(req), io.LimitReader(data, req.GetSize()), false)
	// Raft may still hold the reader if we stop waiting for it; the stream
	// must not be touched after this handler returns.
	data.stop()
	if err != nil {
		return raftStatus(err)
	}
	r, ok := resp.(*raft.InstallSnapshotResponse)
	if !ok {
		return status.Errorf(codes.Internal, "raft transport: raft answered InstallSnapshot with %T", resp)
	}
	return stream.SendAndClose(installSnapshotResponseToProto(r))
}

// snapshotReader reads the data messages of an InstallSnapshot stream as one
// byte stream.
type snapshotReader struct {
	mu      sync.Mutex
	stream  grpc.ClientStreamingServer[internalv1.InstallSnapshotChunk, internalv1.InstallSnapshotResponse]
	buf     []byte
	stopped bool
}

// Read implements io.Reader. It ends with io.EOF when the sender has sent
// everything.
func (r *snapshotReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.buf) == 0 {
		if r.stopped {
			return 0, errGroupClosed
		}
		msg, err := r.stream.Recv()
		if err != nil {
			return 0, err
		}
		if msg.GetRequest() != nil {
			return 0, errors.New("raft transport: InstallSnapshot request repeated within the data")
		}
		r.buf = msg.GetData()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// stop makes later reads fail without touching the stream. It waits for a
// read in progress, which ends with the stream.
func (r *snapshotReader) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
}

// raftStatus maps the transport's errors to gRPC status codes, in one place.
func raftStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, errGroupNotServed):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, errWrongNode):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, errGroupClosed), errors.Is(err, raft.ErrTransportShutdown):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	default:
		// Raft refused the RPC (e.g. an unsupported snapshot version).
		return status.Error(codes.Unknown, "raft: "+err.Error())
	}
}
