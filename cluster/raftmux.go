package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
)

// RaftMux multiplexes every raft group of a node over one gRPC service.
//
// A node runs hundreds of raft groups (the metadata group and one group per
// open shard); a port or a TCP connection per group would not scale. Instead
// each group gets a raft.Transport from Transport(groupID): its outgoing RPCs
// carry the group id and share one gRPC connection per peer node (plus one
// more per peer for snapshots), and incoming RPCs arrive on the node's gRPC
// server, registered with Register, which routes them by group id to the
// group's raft instance.
//
// Raft addresses are node ids, not host:port, so that a node restarted on a
// new address keeps its place in every group's configuration; Resolve turns a
// node id into the address to dial.
type RaftMux struct {
	opts      RaftMuxOptions
	logger    *slog.Logger
	dialOpts  []grpc.DialOption
	ctx       context.Context // parent of every outgoing RPC; cancelled by Close
	cancelCtx context.CancelFunc

	// wake opens a hibernating group for an RPC addressed to it (SetWake).
	wake atomic.Pointer[func(groupID string) bool]

	mu     sync.Mutex
	closed bool
	groups map[string]*groupTransport // the groups this node serves
	conns  map[connKey]*peerConn      // lazily dialled connections to peers
}

var _ Transports = (*RaftMux)(nil)

// RaftMuxOptions configures a RaftMux.
type RaftMuxOptions struct {
	// LocalAddress is this node's raft address. Riffle uses the node id.
	LocalAddress raft.ServerAddress
	// Resolve maps a raft address (node id) to a dialable host:port. It is
	// called on every outgoing RPC, so that a node restarted on a new address
	// is reached there; when the result changes, the connection to the old
	// address is closed and a new one dialled. Nil dials the raft address
	// itself.
	Resolve func(addr raft.ServerAddress) (string, error)
	// DialOptions are added to every connection to a peer, e.g. transport
	// credentials. They are applied after the mux's own defaults, so they
	// may override them.
	DialOptions []grpc.DialOption
	// Timeout bounds each unary RPC, and each send of and wait for a
	// pipelined AppendEntries (default 10s). Snapshots are bounded by
	// progress instead: each chunk must be accepted within Timeout.
	Timeout time.Duration
	// Logger receives structured logs (default slog.Default()).
	Logger *slog.Logger
}

const (
	defaultRaftRPCTimeout = 10 * time.Second

	// raftMaxMsgSize bounds one raft message on the client side. An
	// AppendEntries carries up to raft's MaxAppendEntries (16) entries of up
	// to ~5 MiB each; gRPC's 4 MiB default would refuse it, and raft would
	// retry the same batch forever.
	raftMaxMsgSize = 128 << 20

	// pipelineWindow is how many pipelined AppendEntries a leader may have
	// sent to one follower and not yet handed back to raft. hashicorp/raft
	// measured that deeper pipelines hurt commit latency under load because
	// they shrink batches (hashicorp/raft#541) and defaults to 2; so do we.
	// It also bounds what a slow follower makes the leader hold.
	pipelineWindow = 2

	// snapshotChunkSize is the size of one data message of InstallSnapshot.
	snapshotChunkSize = 256 << 10
)

var (
	// errGroupNotServed: this node has no transport for the group (never
	// created, released, or shut down). Maps to NOT_FOUND.
	errGroupNotServed = errors.New("raft transport: group not served on this node")
	// errWrongNode: the request was meant for another node; the sender
	// dialled a stale address. Maps to FAILED_PRECONDITION.
	errWrongNode = errors.New("raft transport: request meant for another node")
)

// NewRaftMux returns a mux for a node. Register it on the node's gRPC server
// and close it after the node's raft groups have shut down.
func NewRaftMux(opts RaftMuxOptions) *RaftMux {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultRaftRPCTimeout
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &RaftMux{
		opts:      opts,
		logger:    logger.With("component", "raftmux"),
		ctx:       ctx,
		cancelCtx: cancel,
		groups:    map[string]*groupTransport{},
		conns:     map[connKey]*peerConn{},
	}
	m.dialOpts = append(defaultRaftDialOptions(), opts.DialOptions...)
	return m
}

// Register registers the RaftTransport service on s, the node's gRPC server.
// The server's MaxRecvMsgSize must admit a full AppendEntries batch.
func (m *RaftMux) Register(s *grpc.Server) {
	internalv1.RegisterRaftTransportServer(s, &raftServer{mux: m})
}

// Transport returns the raft transport of groupID, creating it on first use
// and again after the previous one was released or closed. From then on the
// node accepts RPCs for the group and hands them to the raft instance that
// reads Consumer().
func (m *RaftMux) Transport(groupID string) raft.Transport {
	m.mu.Lock()
	defer m.mu.Unlock()
	if g, ok := m.groups[groupID]; ok {
		return g
	}
	g := newGroupTransport(m, groupID)
	if m.closed {
		// A transport from a closed mux fails every call, like any transport
		// after Close.
		g.cancel()
		return g
	}
	m.groups[groupID] = g
	return g
}

// Release forgets groupID once its raft group has shut down: RPCs for it get
// NOT_FOUND and its pipelines end. raft.Raft.Shutdown already closes the
// transport, which releases it; Release is for groups whose raft never
// started or to be sure.
func (m *RaftMux) Release(groupID string) {
	m.mu.Lock()
	g := m.groups[groupID]
	m.mu.Unlock()
	if g != nil {
		g.Close()
	}
}

// SetWake sets what is called for an RPC addressed to a group this node
// does not serve: fn opens the group if it hibernates here and reports
// whether it now runs, and the RPC is then delivered to it.
func (m *RaftMux) SetWake(fn func(groupID string) bool) { m.wake.Store(&fn) }

// LocalAddress is this node's raft address as peers dial it.
func (m *RaftMux) LocalAddress() raft.ServerAddress { return m.opts.LocalAddress }

// Close closes every group's transport and every connection to peers.
// Incoming RPCs get NOT_FOUND from then on; outgoing ones fail.
func (m *RaftMux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	groups := make([]*groupTransport, 0, len(m.groups))
	for _, g := range m.groups {
		groups = append(groups, g)
	}
	conns := m.conns
	m.conns = map[connKey]*peerConn{}
	m.mu.Unlock()

	for _, g := range groups {
		g.Close()
	}
	m.cancelCtx()
	var errs []error
	for _, c := range conns {
		errs = append(errs, c.cc.Close())
	}
	return errors.Join(errs...)
}

// forget removes g from the registry unless a newer transport of the same
// group replaced it.
func (m *RaftMux) forget(g *groupTransport) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.groups[g.groupID] == g {
		delete(m.groups, g.groupID)
	}
}

// groupTransport is the raft.Transport of one group on this node: the client
// side sends the group's RPCs to peers through the mux's connections, the
// server side receives the RPCs that raftServer routed to the group.
type groupTransport struct {
	mux     *RaftMux
	groupID string

	// consumeCh hands incoming RPCs to raft. Unbuffered, as in raft's
	// NetworkTransport: a handler owns its RPC until raft takes it.
	consumeCh chan raft.RPC

	// ctx is cancelled by Close. It is the parent of the group's outgoing
	// RPCs and pipelines, and incoming RPCs waiting on raft give up on it.
	ctx    context.Context
	cancel context.CancelFunc

	heartbeatMu sync.Mutex
	heartbeatFn func(raft.RPC)

	mu        sync.Mutex
	closed    bool
	pipelines sync.WaitGroup // receive goroutines of open pipelines
}

var (
	_ raft.Transport   = (*groupTransport)(nil)
	_ raft.WithClose   = (*groupTransport)(nil)
	_ raft.WithPreVote = (*groupTransport)(nil)
)

func newGroupTransport(m *RaftMux, groupID string) *groupTransport {
	ctx, cancel := context.WithCancel(m.ctx)
	return &groupTransport{
		mux:       m,
		groupID:   groupID,
		consumeCh: make(chan raft.RPC),
		ctx:       ctx,
		cancel:    cancel,
	}
}

// Consumer implements raft.Transport.
func (g *groupTransport) Consumer() <-chan raft.RPC { return g.consumeCh }

// LocalAddr implements raft.Transport.
func (g *groupTransport) LocalAddr() raft.ServerAddress { return g.mux.opts.LocalAddress }

// SetHeartbeatHandler implements raft.Transport. Heartbeats skip the consumer
// channel, so that a follower busy writing a large batch to disk still
// answers its leader's heartbeats and no election starts.
func (g *groupTransport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	g.heartbeatMu.Lock()
	defer g.heartbeatMu.Unlock()
	g.heartbeatFn = cb
}

func (g *groupTransport) heartbeatHandler() func(raft.RPC) {
	g.heartbeatMu.Lock()
	defer g.heartbeatMu.Unlock()
	return g.heartbeatFn
}

// EncodePeer implements raft.Transport. Addresses are node ids, already
// stable across restarts, so they are stored as they are.
func (g *groupTransport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte {
	return []byte(addr)
}

// DecodePeer implements raft.Transport.
func (g *groupTransport) DecodePeer(buf []byte) raft.ServerAddress { return raft.ServerAddress(buf) }

// Close implements raft.WithClose; raft calls it on Shutdown. It ends the
// group's pipelines and outgoing RPCs, fails incoming RPCs that wait on raft,
// and removes the group from the mux, after which its RPCs get NOT_FOUND.
func (g *groupTransport) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.mu.Unlock()

	g.mux.forget(g)
	g.cancel()
	g.pipelines.Wait()
	return nil
}

// startPipelineGoroutine runs fn as a pipeline goroutine that Close waits
// for; it refuses once the transport is closed, so that Close's Wait never
// races an Add.
func (g *groupTransport) startPipelineGoroutine(fn func()) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return raft.ErrTransportShutdown
	}
	g.pipelines.Add(1)
	go func() {
		defer g.pipelines.Done()
		fn()
	}()
	return nil
}

// route names the group and the node an outgoing request is meant for.
func (g *groupTransport) route(target raft.ServerAddress) *internalv1.RaftRoute {
	return &internalv1.RaftRoute{GroupId: g.groupID, Target: string(target)}
}
