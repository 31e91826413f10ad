package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// Requests that failed without being applied (no leader, a leader change,
// a peer that could not be reached) are retried here, a bounded number of
// times; everything else is returned to the caller as it is.
const routeAttempts = 8

// ProposeMeta replicates a metadata command through the metadata leader,
// local or remote, and returns once this node's replica has applied it, so
// that the caller reads its own write.
func (h *Host) ProposeMeta(ctx context.Context, cmd Command) error {
	for attempt := 0; ; attempt++ {
		index, err := h.proposeOnce(ctx, cmd)
		if err == nil {
			return h.meta.WaitApplied(ctx, index)
		}
		if !notApplied(err) || attempt == routeAttempts-1 {
			return err
		}
		if err := sleepCtx(ctx, retryDelay(attempt)); err != nil {
			return err
		}
	}
}

func (h *Host) proposeOnce(ctx context.Context, cmd Command) (uint64, error) {
	if h.meta.IsLeader() {
		return h.meta.Propose(ctx, cmd)
	}
	leader := h.metaLeaderID()
	if leader == "" {
		return 0, ErrNotLeader
	}
	client, err := h.forwardClient(leader)
	if err != nil {
		return 0, err
	}
	data, err := json.Marshal(&cmd)
	if err != nil {
		return 0, err
	}
	resp, err := client.ProposeMeta(ctx, &internalv1.ProposeMetaRequest{Command: data})
	if err != nil {
		return 0, transportError(leader, err)
	}
	return resp.Index, fromForwardError(resp.Error)
}

// Append writes entries to a shard through its leader, here or on a peer.
func (h *Host) Append(ctx context.Context, s *Stream, sh *Shard, entries []shardlog.Entry) (shardlog.AppendResult, error) {
	hint := ""
	for attempt := 0; ; attempt++ {
		target := h.shardLeaderGuess(s, sh, hint, attempt)
		var res shardlog.AppendResult
		var err error
		if target == h.opts.NodeID {
			res, err = h.appendLocal(ctx, s, sh, entries)
		} else {
			res, err = h.forwardAppend(ctx, target, s, sh, entries)
		}
		if err == nil || !notApplied(err) || attempt == routeAttempts-1 {
			return res, err
		}
		hint = ""
		var nl *notLeaderError
		if errors.As(err, &nl) && nl.leader != target {
			hint = nl.leader // follow the redirect at once
			continue
		}
		if err := sleepCtx(ctx, retryDelay(attempt)); err != nil {
			return res, err
		}
	}
}

// shardLeaderGuess picks the node to send a write to: a redirect's hint,
// else the leader the local replica knows, else the replicas in turn.
func (h *Host) shardLeaderGuess(s *Stream, sh *Shard, hint string, attempt int) string {
	if hint != "" {
		return hint
	}
	if r, err := h.Shard(s, sh); err == nil {
		if leader := string(r.Leader()); leader != "" {
			return leader
		}
		return h.opts.NodeID // wait for the election here
	}
	if len(sh.Replicas) == 0 {
		return h.opts.NodeID
	}
	return sh.Replicas[attempt%len(sh.Replicas)]
}

// leaderWait bounds how long a write waits for its shard to elect a leader.
const leaderWait = 5 * time.Second

// appendLocal writes through the local replica, which must lead the shard.
// A replica that knows no leader yet waits for the election.
func (h *Host) appendLocal(ctx context.Context, s *Stream, sh *Shard, entries []shardlog.Entry) (shardlog.AppendResult, error) {
	r, err := h.Shard(s, sh)
	if err != nil {
		return shardlog.AppendResult{}, err
	}
	if r.Leader() == "" {
		wctx, cancel := context.WithTimeout(ctx, leaderWait)
		_ = r.WaitLeader(wctx)
		cancel()
	}
	if leader := string(r.Leader()); leader != h.opts.NodeID {
		return shardlog.AppendResult{}, &notLeaderError{leader: leader, err: shardlog.ErrNotLeader}
	}
	res, err := h.appendThrottled(ctx, r, s, sh, entries)
	h.recordAppended(s, sh, entries, err)
	return res, err
}

func (h *Host) forwardAppend(ctx context.Context, target string, s *Stream, sh *Shard, entries []shardlog.Entry) (shardlog.AppendResult, error) {
	client, err := h.forwardClient(target)
	if err != nil {
		return shardlog.AppendResult{}, err
	}
	req := &internalv1.AppendRequest{StreamId: s.ID, ShardIndex: sh.Index, Entries: make([]*internalv1.AppendEntry, len(entries))}
	for i, e := range entries {
		req.Entries[i] = &internalv1.AppendEntry{PartitionKey: e.PartitionKey, Data: e.Data}
	}
	resp, err := client.Append(ctx, req)
	if err != nil {
		return shardlog.AppendResult{}, transportError(target, err)
	}
	if resp.Error.GetKind() == internalv1.ForwardError_KIND_THROTTLED {
		return shardlog.AppendResult{FirstOffset: resp.FirstOffset, Timestamp: resp.TimestampMillis}, &ThrottledError{
			RetryAfter: time.Duration(resp.RetryAfterMillis) * time.Millisecond,
			Admitted:   min(int(resp.Admitted), len(entries)), Reason: resp.Error.Message}
	}
	if err := fromForwardError(resp.Error); err != nil {
		return shardlog.AppendResult{}, err
	}
	return shardlog.AppendResult{FirstOffset: resp.FirstOffset, Timestamp: resp.TimestampMillis}, nil
}

func (h *Host) forwardClient(nodeID string) (internalv1.ForwardClient, error) {
	addr, err := h.opts.Membership.GRPCAddr(nodeID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoReplica, err)
	}
	return h.peers.forwardClient(addr)
}

// bulkClient reaches a peer on a connection kept for catch-up copies, so
// that they never queue forwarded writes behind them.
func (h *Host) bulkClient(nodeID string) (internalv1.ForwardClient, error) {
	addr, err := h.opts.Membership.GRPCAddr(nodeID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoReplica, err)
	}
	return h.bulk.forwardClient(addr)
}

// errPeerUnreachable: the request never left this node.
var errPeerUnreachable = errors.New("cluster: peer unreachable")

// transportError classifies a failed call to a peer. Only a failure to
// connect proves the request was not sent; anything else may have been
// applied.
func transportError(peer string, err error) error {
	st, _ := status.FromError(err)
	if st.Code() == codes.Unavailable && strings.Contains(st.Message(), "while dialing") {
		return fmt.Errorf("%w: %s: %v", errPeerUnreachable, peer, err)
	}
	return &shardlog.OutcomeUnknownError{Err: fmt.Errorf("forward to %s: %w", peer, err)}
}

// notApplied reports whether err proves the request had no effect, so that
// it can be sent again.
func notApplied(err error) bool {
	return errors.Is(err, ErrNotLeader) || errors.Is(err, shardlog.ErrNotLeader) ||
		errors.Is(err, ErrNoReplica) || errors.Is(err, ErrReplicaOpening) || errors.Is(err, errPeerUnreachable)
}

func retryDelay(attempt int) time.Duration {
	return min(50*time.Millisecond<<attempt, time.Second)
}

// CreateStream places a new stream's shards on live nodes and proposes it.
func (h *Host) CreateStream(ctx context.Context, c CreateStreamCmd) error {
	st := h.meta.State()
	c.Placement = h.place(st, c.ShardCount)
	return h.ProposeMeta(ctx, Command{CreateStream: &c})
}

// ReplicaConn is a connection to a live node holding a replica of sh, for
// reads on a node that holds none.
func (h *Host) ReplicaConn(sh *Shard) (*grpc.ClientConn, error) {
	alive := h.opts.Membership.Alive()
	for _, n := range sh.Replicas {
		if !slices.Contains(alive, n) {
			continue
		}
		addr, err := h.opts.Membership.GRPCAddr(n)
		if err != nil {
			continue
		}
		return h.peers.conn(addr)
	}
	return nil, fmt.Errorf("%w: no live replica of %s", ErrNoReplica, sh.ID())
}

// NodeConn is a connection to a live node's public gRPC API, for a call
// that must run on that node (a subscription relayed to its shard's leader).
func (h *Host) NodeConn(nodeID string) (*grpc.ClientConn, error) {
	if !slices.Contains(h.opts.Membership.Alive(), nodeID) {
		return nil, fmt.Errorf("%w: node %s is not alive", ErrNoReplica, nodeID)
	}
	addr, err := h.opts.Membership.GRPCAddr(nodeID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoReplica, err)
	}
	return h.peers.conn(addr)
}

// LeaderTip returns the offset the shard leader's next record will get:
// every acknowledged write of the shard lies below it.
func (h *Host) LeaderTip(ctx context.Context, s *Stream, sh *Shard) (uint64, error) {
	r, err := h.Shard(s, sh)
	if err != nil {
		return 0, err
	}
	if r.Raft() == nil {
		// A frozen replica holds the sealed shard whole: it is its own tip.
		return r.Log().NextOffset(), nil
	}
	if !r.IsLeader() && r.Leader() == "" {
		// An election under way (a group just woken from hibernation
		// learns its leader with the first append): wait for it, within
		// the caller's deadline, rather than answer from this replica.
		_ = r.WaitLeader(ctx)
	}
	if r.IsLeader() {
		// A new leader's log ends where the shard does only once it has
		// applied what its predecessor committed.
		if err := r.WaitCurrent(ctx); err != nil {
			return 0, err
		}
		return r.Log().NextOffset(), nil
	}
	leader := string(r.Leader())
	if leader == "" {
		return 0, ErrNotLeader
	}
	client, err := h.forwardClient(leader)
	if err != nil {
		return 0, err
	}
	resp, err := client.ShardTip(ctx, &internalv1.ShardTipRequest{StreamId: s.ID, ShardIndex: sh.Index})
	if err != nil {
		return 0, transportError(leader, err)
	}
	return resp.NextOffset, fromForwardError(resp.Error)
}

// metaSyncWait bounds SyncMeta.
const metaSyncWait = 3 * time.Second

// SyncMeta brings this node's copy of the metadata up to every change the
// metadata leader has committed (a read index), for a lookup about to
// answer "not found": a stream or consumer created through another node is
// then found once its creation was acknowledged. It costs the leader one
// barrier, so callers use it on misses only. An error leaves the local copy
// as it is, which callers answer from.
func (h *Host) SyncMeta(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, metaSyncWait)
	defer cancel()
	// This node's idea of the leader may be stale (a leader change, or
	// this node just lost leadership): try again, briefly, on an answer
	// that says so.
	for attempt := 0; ; attempt++ {
		index, err := h.metaReadIndex(ctx)
		if err == nil {
			return h.meta.WaitApplied(ctx, index)
		}
		if !notApplied(err) {
			return err
		}
		if err := sleepCtx(ctx, retryDelay(attempt)); err != nil {
			return err
		}
	}
}

// metaReadIndex asks the metadata leader, here or on a peer, for the index
// every acknowledged metadata change lies at or below.
func (h *Host) metaReadIndex(ctx context.Context) (uint64, error) {
	if h.meta.IsLeader() {
		return h.meta.appliedAfterBarrier(metaSyncWait)
	}
	leader := h.metaLeaderID()
	if leader == "" {
		return 0, ErrNotLeader
	}
	client, err := h.forwardClient(leader)
	if err != nil {
		return 0, err
	}
	resp, err := client.MetaIndex(ctx, &internalv1.MetaIndexRequest{})
	if err != nil {
		return 0, transportError(leader, err)
	}
	if err := fromForwardError(resp.Error); err != nil {
		return 0, err
	}
	return resp.CommitIndex, nil
}
