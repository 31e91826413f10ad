package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// peerConns keeps one client connection per peer address for forwarded
// requests.
type peerConns struct {
	dialOpts []grpc.DialOption
	mu       sync.Mutex
	conns    map[string]*grpc.ClientConn
}

func (p *peerConns) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, p.dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: dial %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

func (p *peerConns) forwardClient(addr string) (internalv1.ForwardClient, error) {
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	return internalv1.NewForwardClient(c), nil
}

func (p *peerConns) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for addr, c := range p.conns {
		errs = append(errs, c.Close())
		delete(p.conns, addr)
	}
	return errors.Join(errs...)
}

// forwardServer serves other nodes' forwarded requests from this node's
// replicas. It never forwards further: a request that finds no leader here
// answers NOT_LEADER with a hint and the caller retries.
type forwardServer struct {
	internalv1.UnimplementedForwardServer
	h *Host
}

func (s forwardServer) ProposeMeta(ctx context.Context, req *internalv1.ProposeMetaRequest) (*internalv1.ProposeMetaResponse, error) {
	var cmd Command
	if err := json.Unmarshal(req.Command, &cmd); err != nil {
		return &internalv1.ProposeMetaResponse{Error: &internalv1.ForwardError{
			Kind: internalv1.ForwardError_KIND_INVALID, Message: err.Error()}}, nil
	}
	index, err := s.h.meta.Propose(ctx, cmd)
	if err != nil {
		return &internalv1.ProposeMetaResponse{Error: toForwardError(err, s.h.metaLeaderID())}, nil
	}
	return &internalv1.ProposeMetaResponse{Index: index}, nil
}

func (s forwardServer) Append(ctx context.Context, req *internalv1.AppendRequest) (*internalv1.AppendResponse, error) {
	st, ok := s.h.meta.State().StreamByID(req.StreamId)
	var sh *Shard
	if ok {
		sh, ok = st.ShardByIndex(req.ShardIndex)
	}
	if !ok {
		// This node's metadata may lag the sender's: not applied, retry.
		return &internalv1.AppendResponse{Error: &internalv1.ForwardError{
			Kind: internalv1.ForwardError_KIND_NO_REPLICA, Message: "shard unknown on this node"}}, nil
	}
	entries := make([]shardlog.Entry, len(req.Entries))
	for i, e := range req.Entries {
		entries[i] = shardlog.Entry{PartitionKey: e.PartitionKey, Data: e.Data}
	}
	res, err := s.h.appendLocal(ctx, st, sh, entries)
	var throttled *ThrottledError
	if errors.As(err, &throttled) {
		return &internalv1.AppendResponse{
			Error:       &internalv1.ForwardError{Kind: internalv1.ForwardError_KIND_THROTTLED, Message: throttled.Reason},
			FirstOffset: res.FirstOffset, TimestampMillis: res.Timestamp,
			Admitted: uint32(throttled.Admitted), RetryAfterMillis: throttled.RetryAfter.Milliseconds()}, nil
	}
	if err != nil {
		leader := ""
		if r, rerr := s.h.Shard(st, sh); rerr == nil {
			leader = string(r.Leader())
		}
		return &internalv1.AppendResponse{Error: toForwardError(err, leader)}, nil
	}
	return &internalv1.AppendResponse{FirstOffset: res.FirstOffset, TimestampMillis: res.Timestamp}, nil
}

// toForwardError encodes an error for the wire.
func toForwardError(err error, leader string) *internalv1.ForwardError {
	kind := internalv1.ForwardError_KIND_INTERNAL
	var unknown *shardlog.OutcomeUnknownError
	switch {
	case errors.Is(err, ErrNotLeader), errors.Is(err, shardlog.ErrNotLeader):
		kind = internalv1.ForwardError_KIND_NOT_LEADER
	case errors.Is(err, ErrStreamNotFound):
		kind = internalv1.ForwardError_KIND_STREAM_NOT_FOUND
	case errors.Is(err, ErrStreamExists):
		kind = internalv1.ForwardError_KIND_STREAM_EXISTS
	case errors.Is(err, ErrStreamInUse):
		kind = internalv1.ForwardError_KIND_STREAM_IN_USE
	case errors.Is(err, ErrInvalidCommand):
		kind = internalv1.ForwardError_KIND_INVALID
	case errors.Is(err, ErrConsumerExists):
		kind = internalv1.ForwardError_KIND_CONSUMER_EXISTS
	case errors.Is(err, ErrConsumerNotFound):
		kind = internalv1.ForwardError_KIND_CONSUMER_NOT_FOUND
	case errors.Is(err, ErrConsumerLimit):
		kind = internalv1.ForwardError_KIND_CONSUMER_LIMIT
	case errors.Is(err, ErrStreamHasConsumers):
		kind = internalv1.ForwardError_KIND_STREAM_HAS_CONSUMERS
	case errors.Is(err, ErrNoReplica), errors.Is(err, ErrReplicaOpening), errors.Is(err, shardlog.ErrShardClosed):
		kind = internalv1.ForwardError_KIND_NO_REPLICA
	case errors.Is(err, ErrThrottled):
		kind = internalv1.ForwardError_KIND_THROTTLED
	case errors.Is(err, shardlog.ErrShardSealed):
		kind = internalv1.ForwardError_KIND_SHARD_SEALED
	case errors.Is(err, ErrGroupNotFound):
		kind = internalv1.ForwardError_KIND_GROUP_NOT_FOUND
	case errors.Is(err, ErrGroupExists):
		kind = internalv1.ForwardError_KIND_GROUP_EXISTS
	case errors.Is(err, ErrLeaseLost):
		kind = internalv1.ForwardError_KIND_LEASE_LOST
	case errors.As(err, &unknown), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		kind = internalv1.ForwardError_KIND_OUTCOME_UNKNOWN
	}
	return &internalv1.ForwardError{Kind: kind, Message: err.Error(), LeaderId: leader}
}

// fromForwardError decodes a wire error back into this package's errors.
func fromForwardError(e *internalv1.ForwardError) error {
	if e == nil {
		return nil
	}
	msg := errors.New(e.Message)
	switch e.Kind {
	case internalv1.ForwardError_KIND_NOT_LEADER:
		return &notLeaderError{leader: e.LeaderId, err: msg}
	case internalv1.ForwardError_KIND_STREAM_NOT_FOUND:
		return fmt.Errorf("%w (%v)", ErrStreamNotFound, msg)
	case internalv1.ForwardError_KIND_STREAM_EXISTS:
		return fmt.Errorf("%w (%v)", ErrStreamExists, msg)
	case internalv1.ForwardError_KIND_STREAM_IN_USE:
		return fmt.Errorf("%w (%v)", ErrStreamInUse, msg)
	case internalv1.ForwardError_KIND_INVALID:
		return fmt.Errorf("%w (%v)", ErrInvalidCommand, msg)
	case internalv1.ForwardError_KIND_NO_REPLICA:
		return fmt.Errorf("%w (%v)", ErrNoReplica, msg)
	case internalv1.ForwardError_KIND_CONSUMER_EXISTS:
		return fmt.Errorf("%w (%v)", ErrConsumerExists, msg)
	case internalv1.ForwardError_KIND_CONSUMER_NOT_FOUND:
		return fmt.Errorf("%w (%v)", ErrConsumerNotFound, msg)
	case internalv1.ForwardError_KIND_CONSUMER_LIMIT:
		return fmt.Errorf("%w (%v)", ErrConsumerLimit, msg)
	case internalv1.ForwardError_KIND_STREAM_HAS_CONSUMERS:
		return fmt.Errorf("%w (%v)", ErrStreamHasConsumers, msg)
	case internalv1.ForwardError_KIND_OUTCOME_UNKNOWN:
		return &shardlog.OutcomeUnknownError{Err: msg}
	case internalv1.ForwardError_KIND_THROTTLED:
		return &ThrottledError{Reason: e.Message}
	case internalv1.ForwardError_KIND_SHARD_SEALED:
		return fmt.Errorf("%w (%v)", shardlog.ErrShardSealed, msg)
	case internalv1.ForwardError_KIND_GROUP_NOT_FOUND:
		return fmt.Errorf("%w (%v)", ErrGroupNotFound, msg)
	case internalv1.ForwardError_KIND_GROUP_EXISTS:
		return fmt.Errorf("%w (%v)", ErrGroupExists, msg)
	case internalv1.ForwardError_KIND_LEASE_LOST:
		return fmt.Errorf("%w (%v)", ErrLeaseLost, msg)
	}
	return fmt.Errorf("cluster: forwarded request failed: %v", msg)
}

// notLeaderError is a NOT_LEADER answer with the leader the peer knows of.
type notLeaderError struct {
	leader string
	err    error
}

func (e *notLeaderError) Error() string { return "cluster: peer is not the leader: " + e.err.Error() }
func (e *notLeaderError) Is(target error) bool {
	return target == ErrNotLeader || target == shardlog.ErrNotLeader
}

func (s forwardServer) ShardTip(ctx context.Context, req *internalv1.ShardTipRequest) (*internalv1.ShardTipResponse, error) {
	st, ok := s.h.meta.State().StreamByID(req.StreamId)
	var sh *Shard
	if ok {
		sh, ok = st.ShardByIndex(req.ShardIndex)
	}
	if !ok {
		return &internalv1.ShardTipResponse{Error: &internalv1.ForwardError{
			Kind: internalv1.ForwardError_KIND_NO_REPLICA, Message: "shard unknown on this node"}}, nil
	}
	r, err := s.h.Shard(st, sh)
	if err != nil {
		return &internalv1.ShardTipResponse{Error: toForwardError(err, "")}, nil
	}
	if !r.IsLeader() {
		return &internalv1.ShardTipResponse{Error: toForwardError(shardlog.ErrNotLeader, string(r.Leader()))}, nil
	}
	if err := r.WaitCurrent(ctx); err != nil {
		return &internalv1.ShardTipResponse{Error: toForwardError(err, string(r.Leader()))}, nil
	}
	return &internalv1.ShardTipResponse{NextOffset: r.Log().NextOffset()}, nil
}

func (s forwardServer) MetaIndex(ctx context.Context, _ *internalv1.MetaIndexRequest) (*internalv1.MetaIndexResponse, error) {
	if !s.h.meta.IsLeader() {
		return &internalv1.MetaIndexResponse{Error: toForwardError(ErrNotLeader, s.h.metaLeaderID())}, nil
	}
	index, err := s.h.meta.appliedAfterBarrier(metaSyncWait)
	if err != nil {
		return &internalv1.MetaIndexResponse{Error: toForwardError(err, s.h.metaLeaderID())}, nil
	}
	return &internalv1.MetaIndexResponse{CommitIndex: index}, nil
}
