package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
)

// This file is the sending side of the raft transport: connections to peer
// nodes, the unary RPCs, the AppendEntries pipeline and InstallSnapshot.

// connKind says which of a peer's two connections an RPC uses.
type connKind int

const (
	// raftConn carries every group's heartbeats, votes, AppendEntries and
	// pipelines to one peer.
	raftConn connKind = iota
	// snapshotConn carries InstallSnapshot only, so that a bulk copy never
	// queues heartbeats behind it on one HTTP/2 connection and a follower
	// never times its leader out during a snapshot.
	snapshotConn
)

func (k connKind) String() string {
	if k == snapshotConn {
		return "snapshot"
	}
	return "raft"
}

type connKey struct {
	peer raft.ServerAddress
	kind connKind
}

// peerConn is a connection to a peer node and the address it was dialled at.
type peerConn struct {
	target string
	cc     *grpc.ClientConn
	client internalv1.RaftTransportClient
}

func defaultRaftDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(
			grpc.MaxCallSendMsgSize(raftMaxMsgSize),
			grpc.MaxCallRecvMsgSize(raftMaxMsgSize),
		),
		// gRPC's default reconnect backoff grows to two minutes and fails
		// RPCs fast in between: a peer back from a restart would stay cut
		// off from every group for that long. Raft retries on its own, so
		// reconnect quickly.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  50 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   time.Second,
			},
			MinConnectTimeout: 3 * time.Second,
		}),
	}
}

// client returns the RaftTransport client for peer's connection of the given
// kind. It resolves the peer on every call; a changed address replaces the
// cached connection, whose RPCs then fail and are retried by raft.
func (m *RaftMux) client(peer raft.ServerAddress, kind connKind) (internalv1.RaftTransportClient, error) {
	target := string(peer)
	if m.opts.Resolve != nil {
		var err error
		if target, err = m.opts.Resolve(peer); err != nil {
			return nil, fmt.Errorf("raft transport: resolve %s: %w", peer, err)
		}
	}

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, raft.ErrTransportShutdown
	}
	key := connKey{peer: peer, kind: kind}
	old := m.conns[key]
	if old != nil && old.target == target {
		m.mu.Unlock()
		return old.client, nil
	}
	// NewClient does no I/O: the connection is made by the first RPC.
	cc, err := grpc.NewClient(target, m.dialOpts...)
	if err != nil {
		m.mu.Unlock()
		return nil, fmt.Errorf("raft transport: connection to %s at %s: %w", peer, target, err)
	}
	c := &peerConn{target: target, cc: cc, client: internalv1.NewRaftTransportClient(cc)}
	m.conns[key] = c
	m.mu.Unlock()

	if old != nil {
		m.logger.Info("raft peer moved, replacing connection",
			"peer", peer, "conn", kind, "old_addr", old.target, "new_addr", target)
		_ = old.cc.Close() // fails the RPCs still on it; raft retries them
	}
	return c.client, nil
}

// unaryCall sends one unary RPC of group g to target, bounded by the mux's
// timeout and by the group's life.
func unaryCall[Req, Resp any](
	g *groupTransport, target raft.ServerAddress, name string, req Req,
	call func(internalv1.RaftTransportClient, context.Context, Req, ...grpc.CallOption) (Resp, error),
) (Resp, error) {
	var zero Resp
	if g.ctx.Err() != nil {
		return zero, raft.ErrTransportShutdown
	}
	client, err := g.mux.client(target, raftConn)
	if err != nil {
		return zero, err
	}
	ctx, cancel := context.WithTimeout(g.ctx, g.mux.opts.Timeout)
	defer cancel()
	resp, err := call(client, ctx, req)
	if err != nil {
		return zero, fmt.Errorf("raft transport: %s of group %s to %s: %w", name, g.groupID, target, err)
	}
	return resp, nil
}

// AppendEntries implements raft.Transport.
func (g *groupTransport) AppendEntries(_ raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	out, err := unaryCall(g, target, "AppendEntries", appendEntriesRequestToProto(g.route(target), args),
		internalv1.RaftTransportClient.AppendEntries)
	if err != nil {
		return err
	}
	appendEntriesResponseFromProto(out, resp)
	return nil
}

// RequestVote implements raft.Transport.
func (g *groupTransport) RequestVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	out, err := unaryCall(g, target, "RequestVote", requestVoteRequestToProto(g.route(target), args),
		internalv1.RaftTransportClient.RequestVote)
	if err != nil {
		return err
	}
	requestVoteResponseFromProto(out, resp)
	return nil
}

// RequestPreVote implements raft.WithPreVote.
func (g *groupTransport) RequestPreVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	out, err := unaryCall(g, target, "RequestPreVote", requestPreVoteRequestToProto(g.route(target), args),
		internalv1.RaftTransportClient.RequestPreVote)
	if err != nil {
		return err
	}
	requestPreVoteResponseFromProto(out, resp)
	return nil
}

// TimeoutNow implements raft.Transport.
func (g *groupTransport) TimeoutNow(_ raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	out, err := unaryCall(g, target, "TimeoutNow", timeoutNowRequestToProto(g.route(target), args),
		internalv1.RaftTransportClient.TimeoutNow)
	if err != nil {
		return err
	}
	timeoutNowResponseFromProto(out, resp)
	return nil
}

// InstallSnapshot implements raft.Transport. It streams the request and then
// data in chunks on the peer's snapshot connection. A snapshot may take long,
// so there is no deadline for the whole copy; a watchdog instead fails the
// copy when one chunk is not accepted within the timeout, or when the
// follower has not answered within the timeout scaled by the size (restoring
// takes time in proportion), as raft's NetworkTransport does.
func (g *groupTransport) InstallSnapshot(_ raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if g.ctx.Err() != nil {
		return raft.ErrTransportShutdown
	}
	client, err := g.mux.client(target, snapshotConn)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(g.ctx)
	defer cancel(nil)
	timeout := g.mux.opts.Timeout
	stage := "open"
	watchdog := time.AfterFunc(timeout, func() {
		cancel(fmt.Errorf("raft transport: snapshot to %s made no progress for %s", target, timeout))
	})
	defer watchdog.Stop()
	fail := func(err error) error {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = fmt.Errorf("%w (%v)", cause, err)
		}
		return fmt.Errorf("raft transport: InstallSnapshot of group %s to %s (%s): %w", g.groupID, target, stage, err)
	}

	stream, err := client.InstallSnapshot(ctx)
	if err != nil {
		return fail(err)
	}
	// A client stream's Send reports only io.EOF once the server has ended
	// the stream; the server's reason comes from CloseAndRecv.
	send := func(chunk *internalv1.InstallSnapshotChunk) error {
		if err := stream.Send(chunk); err != nil {
			if errors.Is(err, io.EOF) {
				if _, rerr := stream.CloseAndRecv(); rerr != nil {
					err = rerr
				}
			}
			return fail(err)
		}
		return nil
	}

	stage = "request"
	if err := send(&internalv1.InstallSnapshotChunk{Chunk: &internalv1.InstallSnapshotChunk_Request{
		Request: installSnapshotRequestToProto(g.route(target), args),
	}}); err != nil {
		return err
	}
	stage = "data"
	for {
		watchdog.Reset(timeout)
		// A fresh buffer per chunk: gRPC may still hold a sent message.
		buf := make([]byte, snapshotChunkSize)
		n, rerr := io.ReadFull(data, buf)
		if n > 0 {
			if err := send(&internalv1.InstallSnapshotChunk{Chunk: &internalv1.InstallSnapshotChunk_Data{Data: buf[:n]}}); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return fail(fmt.Errorf("read snapshot: %w", rerr))
		}
	}
	stage = "restore"
	watchdog.Reset(snapshotResponseTimeout(timeout, args.Size))
	out, err := stream.CloseAndRecv()
	if err != nil {
		return fail(err)
	}
	installSnapshotResponseFromProto(out, resp)
	return nil
}

// snapshotResponseTimeout is how long a follower may take to restore a
// snapshot of size bytes: timeout per 256 KiB, at least timeout, as raft's
// NetworkTransport allows.
func snapshotResponseTimeout(timeout time.Duration, size int64) time.Duration {
	const scale = 256 << 10
	if steps := size / scale; steps > 1 {
		return timeout * time.Duration(steps)
	}
	return timeout
}

// appendPipeline is raft's AppendEntries pipeline to one follower over one
// bidi stream. AppendEntries sends and returns a future; a receive goroutine
// matches responses to futures in send order and hands them to raft through
// Consumer. At most pipelineWindow requests are between being sent and being
// taken by raft: the next AppendEntries blocks, which is raft's back-pressure,
// so a slow follower cannot make the leader buffer without bound.
//
// On any failure the stream is broken for good: the pending future completes
// with the error and a zero response, which makes raft abandon the pipeline
// and fall back to unary AppendEntries until it opens a new one.
type appendPipeline struct {
	target  raft.ServerAddress
	route   *internalv1.RaftRoute
	timeout time.Duration
	stream  grpc.BidiStreamingClient[internalv1.AppendEntriesRequest, internalv1.AppendEntriesResponse]

	// life ends with Close (or the group's Close); streamCtx ends with life
	// or when the stream breaks, with the reason as its cause.
	life        context.Context
	closeLife   context.CancelFunc
	streamCtx   context.Context
	breakStream context.CancelCauseFunc

	slots    chan struct{}          // one token per request sent and not yet taken by raft
	inflight chan *appendFuture     // sent requests in send order; room for every slot
	done     chan raft.AppendFuture // unbuffered: a token is returned once raft takes the future
	sendMu   sync.Mutex             // keeps send order and inflight order the same
	received chan struct{}          // closed when the receive goroutine returns
}

var _ raft.AppendPipeline = (*appendPipeline)(nil)

// AppendEntriesPipeline implements raft.Transport.
func (g *groupTransport) AppendEntriesPipeline(_ raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if g.ctx.Err() != nil {
		return nil, raft.ErrTransportShutdown
	}
	client, err := g.mux.client(target, raftConn)
	if err != nil {
		return nil, err
	}
	life, closeLife := context.WithCancel(g.ctx)
	streamCtx, breakStream := context.WithCancelCause(life)
	p := &appendPipeline{
		target:      target,
		route:       g.route(target),
		timeout:     g.mux.opts.Timeout,
		life:        life,
		closeLife:   closeLife,
		streamCtx:   streamCtx,
		breakStream: breakStream,
		slots:       make(chan struct{}, pipelineWindow),
		inflight:    make(chan *appendFuture, pipelineWindow),
		done:        make(chan raft.AppendFuture),
		received:    make(chan struct{}),
	}
	// Opening the stream waits while the connection is being made.
	err = p.bounded("open", func() error {
		var err error
		p.stream, err = client.AppendEntriesPipeline(streamCtx)
		return err
	})
	if err != nil {
		closeLife()
		return nil, fmt.Errorf("raft transport: pipeline of group %s to %s: %w", g.groupID, target, err)
	}
	if err := g.startPipelineGoroutine(p.receive); err != nil {
		closeLife()
		return nil, err
	}
	return p, nil
}

// bounded runs op and breaks the stream if op takes longer than the
// timeout: a follower that stops reading or answering must not hold raft's
// replication for that follower forever.
func (p *appendPipeline) bounded(step string, op func() error) error {
	t := time.AfterFunc(p.timeout, func() {
		p.breakStream(fmt.Errorf("raft transport: pipeline %s to %s took longer than %s", step, p.target, p.timeout))
	})
	defer t.Stop()
	return op()
}

// failure says why the pipeline no longer works.
func (p *appendPipeline) failure() error {
	if p.life.Err() != nil {
		return raft.ErrPipelineShutdown
	}
	return context.Cause(p.streamCtx)
}

// AppendEntries implements raft.AppendPipeline.
func (p *appendPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	// The window frees as raft takes responses. Raft's decoder can stop
	// taking them (it saw a newer term, or the group shut down) while its
	// sender still waits here; the wait is bounded so that the sender gives
	// up and raft winds the pipeline down, rather than hang the group's
	// shutdown forever (seen in CI: a leader's Shutdown waited 9 minutes).
	slotWait := time.NewTimer(p.timeout)
	select {
	case p.slots <- struct{}{}:
		slotWait.Stop()
	case <-p.streamCtx.Done():
		slotWait.Stop()
		return nil, p.failure()
	case <-slotWait.C:
		p.breakStream(fmt.Errorf("raft transport: pipeline to %s: no response taken within %s", p.target, p.timeout))
		return nil, p.failure()
	}
	f := &appendFuture{start: time.Now(), args: args, resp: resp, done: make(chan struct{})}
	msg := appendEntriesRequestToProto(p.route, args)

	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if err := p.bounded("send", func() error { return p.stream.Send(msg) }); err != nil {
		p.breakStream(fmt.Errorf("raft transport: pipeline send to %s: %w", p.target, err))
		<-p.slots
		return nil, p.failure()
	}
	p.inflight <- f
	return f, nil
}

// receive completes the futures in send order until the pipeline closes or
// its stream breaks.
func (p *appendPipeline) receive() {
	defer close(p.received)
	for {
		var f *appendFuture
		select {
		case f = <-p.inflight:
		case <-p.streamCtx.Done():
			return
		}
		var msg *internalv1.AppendEntriesResponse
		err := p.bounded("response", func() error {
			var err error
			msg, err = p.stream.Recv()
			return err
		})
		if err != nil {
			p.breakStream(fmt.Errorf("raft transport: pipeline to %s: %w", p.target, err))
			// Raft reads Response without calling Error: the zero response
			// (Success false) is what makes it stop using this pipeline.
			f.respond(p.failure())
		} else {
			appendEntriesResponseFromProto(msg, f.resp)
			f.respond(nil)
		}
		select {
		case p.done <- f:
		case <-p.life.Done():
			return
		}
		<-p.slots
		if err != nil {
			return
		}
	}
}

// Consumer implements raft.AppendPipeline.
func (p *appendPipeline) Consumer() <-chan raft.AppendFuture { return p.done }

// Close implements raft.AppendPipeline: it cancels the stream, fails what is
// in flight and waits for the receive goroutine.
func (p *appendPipeline) Close() error {
	p.closeLife()
	<-p.received
	return nil
}

// appendFuture is a pipelined AppendEntries: raft.AppendFuture.
type appendFuture struct {
	start time.Time
	args  *raft.AppendEntriesRequest
	resp  *raft.AppendEntriesResponse
	err   error
	done  chan struct{}
}

var _ raft.AppendFuture = (*appendFuture)(nil)

func (f *appendFuture) respond(err error) {
	f.err = err
	close(f.done)
}

// Error implements raft.Future.
func (f *appendFuture) Error() error {
	<-f.done
	return f.err
}

// Start implements raft.AppendFuture.
func (f *appendFuture) Start() time.Time { return f.start }

// Request implements raft.AppendFuture.
func (f *appendFuture) Request() *raft.AppendEntriesRequest { return f.args }

// Response implements raft.AppendFuture.
func (f *appendFuture) Response() *raft.AppendEntriesResponse { return f.resp }
