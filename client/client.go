package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// DefaultPort is the public gRPC port of a node, used for addresses given
// without one.
const DefaultPort = "7450"

// MaxMessageSize bounds the gRPC messages a Client sends and receives. It is
// well above the largest API message (GetRecords answers up to 10 MiB,
// PutRecords carries up to 5 MiB) so that framing never fails a valid call;
// gRPC's default of 4 MiB would.
const MaxMessageSize = 64 << 20

// Client is a connection to a Riffle cluster. It is safe for concurrent use;
// one Client per process is usually enough.
type Client struct {
	conn    *grpc.ClientConn
	streams rifflev1.StreamsClient
}

// Option configures Dial.
type Option func(*options)

type options struct {
	dialOptions []grpc.DialOption
}

// WithDialOptions adds gRPC dial options. They are applied after Riffle's
// own, so they can override the defaults (message sizes, dialer).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOptions = append(o.dialOptions, opts...) }
}

// Dial connects to the nodes at addrs ("host:port", or "host" for port
// DefaultPort) over plaintext gRPC and returns once a connection to at least
// one of them is ready.
//
// Calls are spread round-robin over the nodes that are reachable; a node that
// goes away is skipped until gRPC reconnects to it in the background. Dial
// fails, with the gRPC status a call would have got (Unavailable, or
// DeadlineExceeded or Canceled from ctx), when every address has failed its
// first connection attempt or when ctx ends first. Connections go straight
// to the nodes, never through an HTTP proxy from the environment.
func Dial(ctx context.Context, addrs []string, opts ...Option) (*Client, error) {
	if len(addrs) == 0 {
		return nil, errors.New("client: no address to dial")
	}
	endpoints := make([]resolver.Address, 0, len(addrs))
	for _, a := range addrs {
		hostPort, err := normalizeAddr(a)
		if err != nil {
			return nil, err
		}
		endpoints = append(endpoints, resolver.Address{Addr: hostPort})
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}

	// Each Dial has its own manual resolver: one may serve only one
	// ClientConn, and it keeps the address list across idle restarts.
	r := manual.NewBuilderWithScheme("riffle")
	r.InitialState(resolver.State{Addresses: endpoints})
	dialer := &recordingDialer{}
	dialOpts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxMessageSize),
			grpc.MaxCallSendMsgSize(MaxMessageSize),
		),
		grpc.WithContextDialer(dialer.dial),
	}, o.dialOptions...)
	conn, err := grpc.NewClient(r.Scheme()+":///riffle", dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", strings.Join(addrs, ","), err)
	}
	if err := waitReady(ctx, conn); err != nil {
		conn.Close()
		return nil, unreachableError(addrs, err, dialer.lastError())
	}
	return &Client{conn: conn, streams: rifflev1.NewStreamsClient(conn)}, nil
}

// Streams returns the riffle.v1 Streams API on this connection.
func (c *Client) Streams() rifflev1.StreamsClient { return c.streams }

// Conn returns the underlying gRPC connection, for other services on the
// same nodes (health checks, for one).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection; calls in flight fail with codes.Canceled.
func (c *Client) Close() error { return c.conn.Close() }

// errAllFailed reports that every address failed its first connection
// attempt.
var errAllFailed = errors.New("every address failed to connect")

// waitReady blocks until conn is READY. With round_robin the channel reports
// TRANSIENT_FAILURE only once every address has failed, which is when Dial
// gives up rather than wait for reconnection back-off.
func waitReady(ctx context.Context, conn *grpc.ClientConn) error {
	conn.Connect()
	for {
		state := conn.GetState()
		switch state {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return errAllFailed
		}
		if !conn.WaitForStateChange(ctx, state) {
			return ctx.Err()
		}
	}
}

// unreachableError is the gRPC status a call would have failed with had Dial
// not waited (Unavailable, or the context's DeadlineExceeded or Canceled), so
// callers branch on one kind of error whether Dial or a call failed.
func unreachableError(addrs []string, waitErr, lastDialErr error) error {
	code := codes.Unavailable
	if !errors.Is(waitErr, errAllFailed) {
		code = status.FromContextError(waitErr).Code()
	}
	msg := fmt.Sprintf("no node reachable at %s: %v", strings.Join(addrs, ","), waitErr)
	if lastDialErr != nil {
		msg = fmt.Sprintf("no node reachable at %s: %v", strings.Join(addrs, ","), lastDialErr)
	}
	return status.Error(code, msg)
}

// normalizeAddr checks a "host:port" address and adds DefaultPort to a bare
// host.
func normalizeAddr(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", errors.New("client: empty address")
	}
	if _, port, err := net.SplitHostPort(addr); err == nil {
		if port == "" {
			return "", fmt.Errorf("client: address %q: empty port", addr)
		}
		return addr, nil
	}
	withPort := net.JoinHostPort(strings.Trim(addr, "[]"), DefaultPort)
	if _, _, err := net.SplitHostPort(withPort); err != nil {
		return "", fmt.Errorf("client: address %q: %w", addr, err)
	}
	return withPort, nil
}

// recordingDialer dials TCP and remembers the last failure, so that Dial can
// say why no node was reachable (gRPC's connectivity states do not).
type recordingDialer struct {
	mu   sync.Mutex
	last error
}

func (d *recordingDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		d.mu.Lock()
		d.last = err
		d.mu.Unlock()
	}
	return conn, err
}

func (d *recordingDialer) lastError() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}
