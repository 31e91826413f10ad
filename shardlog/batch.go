package shardlog

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// Group commit. Raft's cost is per entry, not per byte, so the leader
// coalesces concurrent writes into one entry: the batcher takes whatever
// proposals are waiting (up to MaxBatchBytes), submits them as one entry
// without waiting for the previous one to commit (up to MaxInflight entries
// in flight), and the completer answers each proposal in commit order.

type proposal struct {
	entries []Entry
	size    int
	done    chan proposalResult // buffered: the batcher never blocks on it
}

type proposalResult struct {
	res AppendResult
	err error
}

type inflight struct {
	future raft.ApplyFuture
	batch  []*proposal
}

// applyEnqueueTimeout bounds how long a batch waits to enter raft's queue.
const applyEnqueueTimeout = 5 * time.Second

// Append replicates entries as one unit and returns where they landed. It
// returns ErrNotLeader on a follower. When ctx ends first the outcome is
// unknown: the entries may still commit.
func (s *Shard) Append(ctx context.Context, entries []Entry) (AppendResult, error) {
	if _, sealed := s.Sealed(); sealed {
		return AppendResult{}, ErrShardSealed
	}
	if !s.IsLeader() {
		return AppendResult{}, ErrNotLeader
	}
	p := &proposal{entries: entries, done: make(chan proposalResult, 1)}
	for _, e := range entries {
		p.size += len(e.PartitionKey) + len(e.Data)
	}
	select {
	case s.proposals <- p:
	case <-ctx.Done():
		return AppendResult{}, ctx.Err() // never submitted: safe to retry
	case <-s.stop:
		return AppendResult{}, ErrShardClosed
	}
	select {
	case r := <-p.done:
		return r.res, r.err
	case <-ctx.Done():
		return AppendResult{}, ctx.Err()
	case <-s.done:
		// The batcher has exited. A proposal it answered has its result
		// waiting; one that slipped into the queue after the batcher's last
		// drain never reached raft.
		select {
		case r := <-p.done:
			return r.res, r.err
		default:
			return AppendResult{}, ErrShardClosed
		}
	}
}

// runBatcher owns s.proposals; it stops with s.stop and then closes s.done.
func (s *Shard) runBatcher() {
	pending := make(chan inflight, s.opts.MaxInflight)
	completerDone := make(chan struct{})
	go s.runCompleter(pending, completerDone)
	defer func() {
		close(pending)
		<-completerDone
		s.failQueued(ErrShardClosed)
		close(s.done)
	}()
	for {
		var first *proposal
		select {
		case first = <-s.proposals:
		case <-s.stop:
			return
		}
		batch, size := []*proposal{first}, first.size
	drain:
		for size < s.opts.MaxBatchBytes {
			select {
			case p := <-s.proposals:
				batch = append(batch, p)
				size += p.size
			default:
				break drain
			}
		}
		groups := make([][]Entry, len(batch))
		for i, p := range batch {
			groups[i] = p.entries
		}
		// The leader stamps the arrival time into the replicated entry, so
		// every replica stores the same timestamp; the state machine
		// raises it to the shard's last one if the clock stepped back.
		cmd := encodeAppend(s.opts.Now().UnixMilli(), groups)
		f := s.raft.Apply(cmd, applyEnqueueTimeout)
		select {
		case pending <- inflight{future: f, batch: batch}:
		case <-s.stop:
			answer(batch, AppendResult{}, ErrShardClosed)
			return
		}
	}
}

// runCompleter answers proposals as their entries commit, in log order.
func (s *Shard) runCompleter(pending <-chan inflight, done chan<- struct{}) {
	defer close(done)
	for in := range pending {
		if err := in.future.Error(); err != nil {
			answer(in.batch, AppendResult{}, classifyApplyError(err))
			continue
		}
		if err, isErr := in.future.Response().(error); isErr {
			answer(in.batch, AppendResult{}, err) // ErrShardSealed: refused by the state machine
			continue
		}
		r, ok := in.future.Response().(applyResult)
		if !ok {
			answer(in.batch, AppendResult{}, errBadCommand)
			continue
		}
		off := r.first
		for _, p := range in.batch {
			p.done <- proposalResult{res: AppendResult{FirstOffset: off, Timestamp: r.ts}}
			off += uint64(len(p.entries))
		}
	}
}

// classifyApplyError separates failures where the entry was never appended
// (safe to retry anywhere) from those after which it may still commit.
func classifyApplyError(err error) error {
	switch err {
	case raft.ErrNotLeader, raft.ErrLeadershipTransferInProgress:
		return ErrNotLeader
	case raft.ErrEnqueueTimeout:
		return err
	}
	return &OutcomeUnknownError{Err: err}
}

// OutcomeUnknownError wraps a failure after which a write may or may not
// have committed.
type OutcomeUnknownError struct{ Err error }

func (e *OutcomeUnknownError) Error() string {
	return "shardlog: write outcome unknown: " + e.Err.Error()
}
func (e *OutcomeUnknownError) Unwrap() error { return e.Err }

func answer(batch []*proposal, res AppendResult, err error) {
	for _, p := range batch {
		p.done <- proposalResult{res: res, err: err}
	}
}

// failQueued answers proposals that never reached raft.
func (s *Shard) failQueued(err error) {
	for {
		select {
		case p := <-s.proposals:
			p.done <- proposalResult{err: err}
		default:
			return
		}
	}
}
