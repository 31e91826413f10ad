package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// Catch-up between shard replicas. A replica that lacks records raft has
// compacted away (shardlog/catchup.go) copies them from another replica's
// log over Forward.FetchRecords: the leader first, then the other replicas
// in metadata order, each serving what it has applied.

const (
	// fetchChunkBytes and fetchChunkRecords bound one FetchRecordsChunk.
	fetchChunkBytes   = 1 << 20
	fetchChunkRecords = 16 << 10
	// fetchIdleTimeout abandons a peer that sends nothing for this long.
	fetchIdleTimeout = 30 * time.Second
	// fetchPatience is how long the replicas are tried in turn before the
	// fetch fails. Raft retries a failed snapshot install; a replica that
	// fails to catch up at startup stays stopped, so give peers that are
	// restarting too some time.
	fetchPatience = 30 * time.Second
)

// shardFetcher is the catch-up source given to the local replica of sh.
func (h *Host) shardFetcher(s *Stream, sh *Shard) shardlog.Fetcher {
	streamID, shardIndex := s.ID, sh.Index
	return func(ctx context.Context, req shardlog.FetchRequest, sink func(shardlog.FetchedChunk) error) error {
		// The host's end also ends the fetch: Host.Close waits for the
		// reconciler, which may be starting this replica.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(h.ctx, cancel)()
		return h.fetchRecords(ctx, streamID, shardIndex, req, sink)
	}
}

// fetchRecords tries the other replicas in turn, resuming each time after
// the last record delivered, until sink has every record below req.To or
// fetchPatience has passed.
func (h *Host) fetchRecords(ctx context.Context, streamID, shardIndex uint64, req shardlog.FetchRequest,
	sink func(shardlog.FetchedChunk) error) error {
	next, start := req.From, time.Now()
	var failures []error // of the last round
	for round := 0; round == 0 || time.Since(start) < fetchPatience; round++ {
		if round > 0 {
			if err := sleepCtx(ctx, retryDelay(round+2)); err != nil {
				return err
			}
		}
		var err error
		next, failures, err = h.fetchRound(ctx, streamID, shardIndex, h.fetchPeers(streamID, shardIndex, req.Leader), next, req.To, sink)
		if err != nil || next >= req.To {
			return err
		}
	}
	if len(failures) == 0 {
		return fmt.Errorf("cluster: no other replica of stream %d shard %d to fetch from: %w", streamID, shardIndex, ErrNoReplica)
	}
	return fmt.Errorf("cluster: stream %d shard %d: fetched records only up to %d of %d: %w",
		streamID, shardIndex, next, req.To, errors.Join(failures...))
}

// fetchRound tries peers in turn for the records [from, to), each resuming
// after the last record the one before delivered, and returns how far the
// sink got. The fetch is over when that reaches to or err is set (the sink
// failed, or ctx ended); otherwise failures says what each peer lacked.
func (h *Host) fetchRound(ctx context.Context, streamID, shardIndex uint64, peers []string, from, to uint64,
	sink func(shardlog.FetchedChunk) error) (next uint64, failures []error, err error) {
	next = from
	for _, peer := range peers {
		got, err := h.fetchFrom(ctx, peer, streamID, shardIndex, next, to, sink)
		next = max(next, got)
		var se sinkError
		switch {
		case errors.As(err, &se):
			return next, nil, se.err
		case next >= to:
			return next, nil, nil
		case ctx.Err() != nil:
			return next, nil, ctx.Err()
		case err == nil:
			err = fmt.Errorf("holds records only below %d", got)
		}
		failures = append(failures, fmt.Errorf("%s: %w", peer, err))
	}
	return next, failures, nil
}

// fetchPeers lists the other replicas of a shard, leader first.
func (h *Host) fetchPeers(streamID, shardIndex uint64, leader raft.ServerID) []string {
	st, ok := h.meta.State().StreamByID(streamID)
	if !ok {
		return nil
	}
	sh, ok := st.ShardByIndex(shardIndex)
	if !ok {
		return nil
	}
	var peers []string
	for _, n := range sh.Replicas {
		if n != h.opts.NodeID {
			peers = append(peers, n)
		}
	}
	if i := slices.Index(peers, string(leader)); i > 0 {
		peers[0], peers[i] = peers[i], peers[0]
	}
	return peers
}

// sinkError marks a failure of the local import, which another peer would
// not cure.
type sinkError struct{ err error }

func (e sinkError) Error() string { return e.err.Error() }

// fetchFrom streams records [from, to) from peer into sink and returns the
// offset after the last one delivered (or the peer's trim horizon, when its
// retention has deleted the records from on).
func (h *Host) fetchFrom(ctx context.Context, peer string, streamID, shardIndex, from, to uint64,
	sink func(shardlog.FetchedChunk) error) (next uint64, err error) {
	next = from
	client, err := h.bulkClient(peer)
	if err != nil {
		return next, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(fetchIdleTimeout, func() {
		cancel(fmt.Errorf("cluster: no records from %s for %v", peer, fetchIdleTimeout))
	})
	defer watchdog.Stop()

	stream, err := client.FetchRecords(ctx, &internalv1.FetchRecordsRequest{
		StreamId: streamID, ShardIndex: shardIndex, FromOffset: from, ToOffset: to})
	if err != nil {
		return next, err
	}
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return next, nil
		}
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
				err = cause
			}
			return next, err
		}
		watchdog.Reset(fetchIdleTimeout)
		c := chunkFromProto(chunk)
		start := max(next, c.Horizon.Offset)
		if len(c.Records) > 0 && c.Records[0].Offset != start {
			return next, fmt.Errorf("cluster: %s sent offset %d, expected %d", peer, c.Records[0].Offset, start)
		}
		if err := sink(c); err != nil {
			return next, sinkError{err}
		}
		next = start
		if n := len(c.Records); n > 0 {
			next = c.Records[n-1].Offset + 1
		}
	}
}

func chunkFromProto(c *internalv1.FetchRecordsChunk) shardlog.FetchedChunk {
	out := shardlog.FetchedChunk{
		Horizon: shardlog.TrimHorizon{Offset: c.TrimOffset, RaftIndex: c.TrimRaftIndex, Timestamp: c.TrimTimestampMillis},
		Records: make([]shardlog.Record, len(c.Records)),
	}
	for i, r := range c.Records {
		out.Records[i] = shardlog.Record{Offset: r.Offset, RaftIndex: r.RaftIndex, Timestamp: r.TimestampMillis,
			PartitionKey: r.PartitionKey, Data: r.Data, LastInBatch: r.LastInBatch}
	}
	return out
}

// FetchRecords serves a peer's catch-up from this node's replica of the
// shard, leader or not: it streams what the replica has applied of
// [from_offset, to_offset), starting at its trim horizon when retention has
// deleted the records below. Server-streaming sends block on flow control,
// so at most one chunk per call is in memory.
func (s forwardServer) FetchRecords(req *internalv1.FetchRecordsRequest, stream grpc.ServerStreamingServer[internalv1.FetchRecordsChunk]) error {
	st, ok := s.h.meta.State().StreamByID(req.StreamId)
	var sh *Shard
	if ok {
		sh, ok = st.ShardByIndex(req.ShardIndex)
	}
	if !ok {
		return status.Error(codes.NotFound, "cluster: shard unknown on this node")
	}
	r, err := s.h.Shard(st, sh)
	if err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	replica := r.Log()
	from, sent := req.FromOffset, false
	for {
		hz := replica.TrimHorizon()
		from = max(from, hz.Offset)
		end := min(req.ToOffset, replica.NextOffset())
		if from >= end {
			if !sent && hz.Offset > req.FromOffset {
				// Nothing to send, but the caller must learn the horizon.
				return stream.Send(chunkHeader(hz))
			}
			return nil
		}
		recs, err := replica.Read(from, fetchChunkRecords, fetchChunkBytes)
		if errors.Is(err, shardlog.ErrOutOfRange) {
			continue // retention deleted from since the horizon was read
		}
		if err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		if k := int(min(uint64(len(recs)), end-from)); k < len(recs) {
			recs = recs[:k]
		}
		chunk := chunkHeader(hz)
		chunk.Records = make([]*internalv1.FetchedRecord, len(recs))
		for i, rec := range recs {
			chunk.Records[i] = &internalv1.FetchedRecord{Offset: rec.Offset, RaftIndex: rec.RaftIndex,
				TimestampMillis: rec.Timestamp, PartitionKey: rec.PartitionKey, Data: rec.Data, LastInBatch: rec.LastInBatch}
		}
		if err := stream.Send(chunk); err != nil {
			return err
		}
		sent = true
		from += uint64(len(recs))
	}
}

func chunkHeader(hz shardlog.TrimHorizon) *internalv1.FetchRecordsChunk {
	return &internalv1.FetchRecordsChunk{TrimOffset: hz.Offset, TrimRaftIndex: hz.RaftIndex, TrimTimestampMillis: hz.Timestamp}
}
