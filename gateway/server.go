package gateway

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Options configures the gateway.
type Options struct {
	// Host is this node's view of the cluster and its replicas.
	Host *cluster.Host
	// Registerer receives the gateway's metrics.
	Registerer prometheus.Registerer
	// Logger receives structured logs.
	Logger *slog.Logger
	// Now is the clock; time.Now when nil. Tests move it to expire iterators.
	Now func() time.Time
	// SubscriptionLifetime is how long a SubscribeToShard call lasts before
	// it ends cleanly; DefaultSubscriptionLifetime when zero.
	SubscriptionLifetime time.Duration
	// SubscriptionHeartbeat is the longest a subscription to a quiet shard
	// goes without an event; DefaultSubscriptionHeartbeat when zero.
	SubscriptionHeartbeat time.Duration
}

// Subscription defaults (DESIGN.md, Kinesis).
const (
	DefaultSubscriptionLifetime  = 5 * time.Minute
	DefaultSubscriptionHeartbeat = 5 * time.Second
)

// Server implements riffle.v1.Streams.
type Server struct {
	rifflev1.UnimplementedStreamsServer
	host    *cluster.Host
	metrics *metrics
	fanout  *fanout
	logger  *slog.Logger
	now     func() time.Time
	opts    Options

	// throttled counts what the per-shard limits refused.
	throttled *throttleMetrics
	// prefetch reads the next batch of a replaying reader ahead.
	prefetch prefetcher
}

// New returns a gateway over host.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.SubscriptionLifetime <= 0 {
		opts.SubscriptionLifetime = DefaultSubscriptionLifetime
	}
	if opts.SubscriptionHeartbeat <= 0 {
		opts.SubscriptionHeartbeat = DefaultSubscriptionHeartbeat
	}
	s := &Server{host: opts.Host, metrics: newMetrics(opts.Registerer), fanout: newFanout(opts.Registerer), logger: opts.Logger, now: opts.Now, opts: opts}
	s.throttled = newThrottleMetrics(opts.Registerer)
	if opts.Host != nil {
		registerMoveMetrics(opts.Registerer, opts.Host)
	}
	return s
}

// Register adds the Streams service and Riffle's Nodes extension to g.
func (s *Server) Register(g *grpc.Server) {
	rifflev1.RegisterStreamsServer(g, s)
	rifflev1.RegisterNodesServer(g, nodesServer{s: s})
}

// UnaryInterceptor times every call, counts failures by exception and turns
// errors into gRPC statuses (the only place that happens).
func (s *Server) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	op := info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
	start := time.Now()
	resp, err := handler(ctx, req)
	s.metrics.requests.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		e := asError(err)
		s.metrics.errors.WithLabelValues(op, e.Exception).Inc()
		if e.Exception == InternalFailure {
			s.logger.Warn("request failed", "operation", op, "err", err)
		}
		return nil, toStatus(err)
	}
	return resp, nil
}

// StreamInterceptor does for streaming calls (SubscribeToShard) what
// UnaryInterceptor does for unary ones.
func (s *Server) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	op := info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
	err := handler(srv, ss)
	if err != nil {
		e := asError(err)
		s.metrics.errors.WithLabelValues(op, e.Exception).Inc()
		// A stream its caller cancelled (a raft pipeline whose leader
		// stepped down or hibernated) is no failure of this node.
		if e.Exception == InternalFailure && !errors.Is(err, context.Canceled) && status.Code(err) != codes.Canceled {
			s.logger.Warn("request failed", "operation", op, "err", err)
		}
		return toStatus(err)
	}
	return nil
}

// stream finds a stream by the request's name or ARN.
func (s *Server) stream(ctx context.Context, name, arn string) (*cluster.Stream, error) {
	n, verr := streamNameOf(name, arn)
	if verr != nil {
		return nil, verr
	}
	st, ok := s.host.Meta().State().Streams[n]
	if !ok {
		// Created through another node a moment ago? Catch up first.
		if err := s.host.SyncMeta(ctx); err == nil {
			st, ok = s.host.Meta().State().Streams[n]
		} else {
			s.logger.Info("metadata catch-up failed; answering from this node's copy", "stream", n, "err", err)
		}
		if !ok {
			return nil, notFound("stream %s not found", n)
		}
	}
	return st, nil
}

// writableStream finds a stream that accepts records.
func (s *Server) writableStream(ctx context.Context, name, arn string) (*cluster.Stream, error) {
	st, err := s.stream(ctx, name, arn)
	if err != nil {
		return nil, err
	}
	if st.Status == cluster.StreamCreating {
		// ACTIVE through another node a moment ago? This node's copy may
		// lag by an entry: catch up before refusing the write.
		if err := s.host.SyncMeta(ctx); err == nil {
			if fresh, ok := s.host.Meta().State().Streams[st.Name]; ok {
				st = fresh
			}
		}
	}
	switch st.Status {
	case cluster.StreamDeleting:
		return nil, notFound("stream %s is being deleted", st.Name)
	case cluster.StreamCreating:
		e := inUse("stream %s is still CREATING", st.Name)
		e.Transient, e.RetryAfter = true, 200*time.Millisecond
		return nil, e
	}
	return st, nil
}
