package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
)

// Heartbeat coalescing. Every raft group's leader sends each follower a
// heartbeat every HeartbeatTimeout/10 (100 ms at the defaults). As unary
// RPCs, those cost more CPU than anything else an idle node does: 100
// shards on three nodes took 0.43 cores doing nothing. Heartbeats to one
// peer are gathered for heartbeatWindow and go as one Heartbeats RPC; each
// group still gets its own answer. The window delays a heartbeat by a few
// milliseconds against a follower timeout of a second or more.
const (
	heartbeatWindow   = 10 * time.Millisecond
	heartbeatMaxBatch = 512
)

// heartbeatBatch is the heartbeats to one peer waiting for the same RPC.
// reqs and claimed are guarded by heartbeats.mu; results and err are
// written once, by the flush that claimed the batch, before done is closed.
type heartbeatBatch struct {
	reqs    []*internalv1.AppendEntriesRequest
	claimed bool
	results []*internalv1.HeartbeatResult
	err     error
	done    chan struct{}
}

// heartbeats is the mux's coalescer, one open batch per peer.
type heartbeats struct {
	mu    sync.Mutex
	open  map[raft.ServerAddress]*heartbeatBatch
	unary map[raft.ServerAddress]bool // peers without the Heartbeats RPC
}

// heartbeat sends one group's heartbeat to target in the peer's next batch
// and waits for its answer.
func (g *groupTransport) heartbeat(target raft.ServerAddress, req *internalv1.AppendEntriesRequest) (*internalv1.AppendEntriesResponse, error) {
	if g.ctx.Err() != nil {
		return nil, raft.ErrTransportShutdown
	}
	m := g.mux
	hb := &m.heartbeats
	hb.mu.Lock()
	if hb.unary[target] {
		hb.mu.Unlock()
		return unaryCall(g, target, "AppendEntries", req, internalv1.RaftTransportClient.AppendEntries)
	}
	if hb.open == nil {
		hb.open = map[raft.ServerAddress]*heartbeatBatch{}
	}
	b := hb.open[target]
	if b == nil {
		b = &heartbeatBatch{done: make(chan struct{})}
		hb.open[target] = b
		time.AfterFunc(heartbeatWindow, func() { m.flushHeartbeats(target, b) })
	}
	i := len(b.reqs)
	b.reqs = append(b.reqs, req)
	if len(b.reqs) >= heartbeatMaxBatch {
		delete(hb.open, target) // full: the next heartbeat starts a new one
		go m.flushHeartbeats(target, b)
	}
	hb.mu.Unlock()

	select {
	case <-b.done:
	case <-g.ctx.Done():
		return nil, raft.ErrTransportShutdown
	}
	if b.err != nil {
		return nil, fmt.Errorf("raft transport: heartbeat of group %s to %s: %w", g.groupID, target, b.err)
	}
	r := b.results[i]
	if r.GetResponse() == nil {
		return nil, fmt.Errorf("raft transport: heartbeat of group %s to %s: %w", g.groupID, target,
			status.Error(codes.Code(r.GetErrorCode()), r.GetErrorMessage()))
	}
	return r.GetResponse(), nil
}

// flushHeartbeats sends batch b to target, once: the timer and a full
// batch may both call it.
func (m *RaftMux) flushHeartbeats(target raft.ServerAddress, b *heartbeatBatch) {
	hb := &m.heartbeats
	hb.mu.Lock()
	if hb.open[target] == b {
		delete(hb.open, target)
	}
	if b.claimed {
		hb.mu.Unlock()
		return
	}
	b.claimed = true
	reqs := b.reqs
	hb.mu.Unlock()
	results, err := m.sendHeartbeats(target, reqs)
	if status.Code(err) == codes.Unimplemented {
		// A peer of an older version: answer this batch one by one, and
		// send it no more batches.
		hb.mu.Lock()
		if hb.unary == nil {
			hb.unary = map[raft.ServerAddress]bool{}
		}
		hb.unary[target] = true
		hb.mu.Unlock()
		results, err = m.sendHeartbeatsOneByOne(target, reqs)
	}
	if err == nil && len(results) != len(reqs) {
		err = fmt.Errorf("%d answers to %d heartbeats", len(results), len(reqs))
	}
	b.results, b.err = results, err
	close(b.done)
}

func (m *RaftMux) sendHeartbeats(target raft.ServerAddress, reqs []*internalv1.AppendEntriesRequest) ([]*internalv1.HeartbeatResult, error) {
	client, err := m.client(target, raftConn)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.opts.Timeout)
	defer cancel()
	out, err := client.Heartbeats(ctx, &internalv1.HeartbeatsRequest{Heartbeats: reqs})
	if err != nil {
		return nil, err
	}
	return out.GetResults(), nil
}

func (m *RaftMux) sendHeartbeatsOneByOne(target raft.ServerAddress, reqs []*internalv1.AppendEntriesRequest) ([]*internalv1.HeartbeatResult, error) {
	client, err := m.client(target, raftConn)
	if err != nil {
		return nil, err
	}
	results := make([]*internalv1.HeartbeatResult, len(reqs))
	for i, req := range reqs {
		ctx, cancel := context.WithTimeout(m.ctx, m.opts.Timeout)
		resp, err := client.AppendEntries(ctx, req)
		cancel()
		if err != nil {
			st := status.Convert(err)
			results[i] = &internalv1.HeartbeatResult{ErrorCode: uint32(st.Code()), ErrorMessage: st.Message()}
			continue
		}
		results[i] = &internalv1.HeartbeatResult{Response: resp}
	}
	return results, nil
}
