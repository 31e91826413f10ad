package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// PutRecord implements riffle.v1.Streams.
func (s *Server) PutRecord(ctx context.Context, req *rifflev1.PutRecordRequest) (*rifflev1.PutRecordResponse, error) {
	st, err := s.writableStream(ctx, req.StreamName, req.StreamArn)
	if err != nil {
		return nil, err
	}
	rec, verr := checkRecord(req.PartitionKey, req.Data, req.ExplicitHashKey)
	if verr != nil {
		return nil, verr
	}
	if req.SequenceNumberForOrdering != "" {
		if _, _, verr := parseSequenceNumber("sequence_number_for_ordering", req.SequenceNumberForOrdering); verr != nil {
			return nil, verr
		}
		// Sequence numbers of a shard increase in commit order, so the new
		// record is always above any number the producer already holds.
	}
	sh, ok := st.ShardForHash(rec.hash)
	if !ok {
		return nil, unavailable("no open shard of %s covers hash key %s", st.Name, rec.hash)
	}
	pl := s.appendRouted(ctx, "PutRecord", st, sh, []record{rec}, 0)[0]
	if pl.err != nil {
		return nil, pl.err
	}
	return &rifflev1.PutRecordResponse{ShardId: pl.shard.ID(), SequenceNumber: shardlog.SequenceNumber(pl.shard.Index, pl.offset)}, nil
}

// PutRecords implements riffle.v1.Streams. The request is validated whole
// before anything is written; then it is split by shard, the parts are
// written in parallel, and each record gets its own result in request order.
func (s *Server) PutRecords(ctx context.Context, req *rifflev1.PutRecordsRequest) (*rifflev1.PutRecordsResponse, error) {
	st, err := s.writableStream(ctx, req.StreamName, req.StreamArn)
	if err != nil {
		return nil, err
	}
	n := len(req.Records)
	if n == 0 || n > MaxPutRecordsEntries {
		return nil, validation("records has %d entries; 1 to %d are allowed", n, MaxPutRecordsEntries)
	}
	recs := make([]record, n)
	total := 0
	for i, e := range req.Records {
		r, verr := checkRecord(e.PartitionKey, e.Data, e.ExplicitHashKey)
		if verr != nil {
			verr.Message = fmt.Sprintf("records[%d]: %s", i, verr.Message)
			return nil, verr
		}
		recs[i] = r
		total += len(e.PartitionKey) + len(e.Data)
	}
	if total > MaxPutRecordsBytes {
		return nil, invalidArgument("records total %d bytes, more than the limit of %d per call", total, MaxPutRecordsBytes)
	}

	placements := make([]placed, n)
	s.appendByShard(ctx, "PutRecords", st, recs, placements, 0)
	results := make([]*rifflev1.PutRecordsResultEntry, n)
	for i, pl := range placements {
		if pl.err != nil {
			e := asError(pl.err)
			s.metrics.errors.WithLabelValues("PutRecords", e.Exception).Inc()
			results[i] = &rifflev1.PutRecordsResultEntry{ErrorCode: e.Exception, ErrorMessage: e.Message}
			continue
		}
		results[i] = &rifflev1.PutRecordsResultEntry{
			ShardId:        pl.shard.ID(),
			SequenceNumber: shardlog.SequenceNumber(pl.shard.Index, pl.offset),
		}
	}
	resp := &rifflev1.PutRecordsResponse{Records: results}
	for _, r := range results {
		if r.ErrorCode != "" {
			resp.FailedRecordCount++
		}
	}
	return resp, nil
}

// append writes records to one shard and accounts for them. When the
// shard's write limits admit only a prefix, the error is a
// *cluster.ThrottledError and res describes the Admitted records written.
func (s *Server) append(ctx context.Context, op string, st *cluster.Stream, sh *cluster.Shard, recs []record) (shardlog.AppendResult, error) {
	entries := make([]shardlog.Entry, len(recs))
	for i, r := range recs {
		entries[i] = shardlog.Entry{PartitionKey: r.key, Data: r.data}
	}
	start := time.Now()
	res, err := s.host.Append(ctx, st, sh, entries)
	written := len(recs)
	if err != nil {
		var throttled *cluster.ThrottledError
		if !errors.As(err, &throttled) {
			return res, err
		}
		written = throttled.Admitted
		s.throttled.throttled(op, st, sh, recs[written:])
		if written == 0 {
			return res, err
		}
	}
	bytes := 0
	for _, r := range recs[:written] {
		bytes += len(r.key) + len(r.data)
	}
	s.metrics.commit.Observe(time.Since(start).Seconds())
	s.metrics.recordsIn.WithLabelValues(st.Name, sh.ID()).Add(float64(written))
	s.metrics.bytesIn.WithLabelValues(st.Name, sh.ID()).Add(float64(bytes))
	return res, err
}

// GetShardIterator implements riffle.v1.Streams.
func (s *Server) GetShardIterator(ctx context.Context, req *rifflev1.GetShardIteratorRequest) (*rifflev1.GetShardIteratorResponse, error) {
	st, err := s.stream(ctx, req.StreamName, req.StreamArn)
	if err != nil {
		return nil, err
	}
	if verr := checkShardID(req.ShardId); verr != nil {
		return nil, verr
	}
	sh, ok := st.ShardByID(req.ShardId)
	if !ok {
		return nil, notFound("shard %s of stream %s not found", req.ShardId, st.Name)
	}
	if resp, handled, err := viaReplica(ctx, s, st, sh, func(ctx context.Context, c rifflev1.StreamsClient) (*rifflev1.GetShardIteratorResponse, error) {
		return c.GetShardIterator(ctx, req)
	}); handled {
		return resp, err
	}
	offset, err := s.startingOffset(ctx, st, sh, req.ShardIteratorType, req.StartingSequenceNumber, req.Timestamp)
	if err != nil {
		return nil, err
	}
	return &rifflev1.GetShardIteratorResponse{ShardIterator: s.issueIterator(st, sh, offset)}, nil
}

// startingOffset resolves an iterator type (of GetShardIterator, or of a
// subscription's starting position) to a position in the shard. A sequence
// number below the trim horizon resolves to the trim horizon, so that a
// reader resuming after a record retention removed loses nothing else.
func (s *Server) startingOffset(ctx context.Context, st *cluster.Stream, sh *cluster.Shard, t rifflev1.ShardIteratorType, seq string, ts *timestamppb.Timestamp) (uint64, error) {
	switch t {
	case rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_SEQUENCE_NUMBER,
		rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER:
		if seq == "" {
			return 0, invalidArgument("%v needs starting_sequence_number", t)
		}
		idx, _, verr := parseSequenceNumber("starting_sequence_number", seq)
		if verr != nil {
			return 0, verr
		}
		if idx != sh.Index {
			return 0, invalidArgument("starting_sequence_number %s does not belong to %s", seq, sh.ID())
		}
	case rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON, rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_LATEST:
	case rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_TIMESTAMP:
		if ts == nil {
			return 0, invalidArgument("AT_TIMESTAMP needs timestamp")
		}
		if err := ts.CheckValid(); err != nil {
			return 0, invalidArgument("timestamp: %v", err)
		}
	default:
		return 0, validation("shard_iterator_type is required (AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST or AT_TIMESTAMP)")
	}
	log, err := s.reader(st, sh)
	if err != nil {
		return 0, err
	}
	switch t {
	case rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON:
		return log.TrimOffset(), nil
	case rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_LATEST:
		// A follower may not have applied the latest acknowledged records:
		// LATEST is where the leader's shard ends.
		tipCtx, cancel := context.WithTimeout(ctx, followerCommitWait)
		defer cancel()
		if tip, err := s.host.LeaderTip(tipCtx, st, sh); err == nil {
			return max(tip, log.NextOffset()), nil
		}
		return log.NextOffset(), nil
	case rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_TIMESTAMP:
		return log.OffsetAtTime(ts.AsTime().UnixMilli()), nil
	}
	_, off, _ := shardlog.ParseSequenceNumber(seq)
	if off >= log.NextOffset() {
		// A follower may not have applied a number the leader already
		// acknowledged: give it a moment before calling the number unknown.
		waitCtx, cancel := context.WithTimeout(ctx, followerApplyWait)
		waitForOffset(waitCtx, log, off)
		cancel()
	}
	if off >= log.NextOffset() {
		return 0, invalidArgument("starting_sequence_number %s has not been assigned in %s", seq, sh.ID())
	}
	if t == rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER {
		off++
	}
	return max(off, log.TrimOffset()), nil
}

// followerCommitWait bounds how long a follower at its tip waits to apply
// what its leader acknowledged.
const followerCommitWait = time.Second

// followerApplyWait bounds how long a replica waits to apply a sequence
// number a client names before refusing it.
const followerApplyWait = 2 * time.Second

// waitForOffset waits on apply notifications until log holds off.
func waitForOffset(ctx context.Context, log *shardlog.Log, off uint64) {
	for {
		changed := log.Changed()
		if off < log.NextOffset() {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

func (s *Server) issueIterator(st *cluster.Stream, sh *cluster.Shard, offset uint64) string {
	key := s.host.Meta().State().IteratorKey
	return encodeIterator(key, iterator{streamID: st.ID, shardIndex: sh.Index, offset: offset, issuedAt: s.now().UnixMilli()})
}

// reader is the local replica's log of a shard.
func (s *Server) reader(st *cluster.Stream, sh *cluster.Shard) (*shardlog.Log, error) {
	r, err := s.host.Shard(st, sh)
	if err != nil {
		return nil, err
	}
	return r.Log(), nil
}

// GetRecords implements riffle.v1.Streams.
func (s *Server) GetRecords(ctx context.Context, req *rifflev1.GetRecordsRequest) (*rifflev1.GetRecordsResponse, error) {
	limit := MaxGetRecordsLimit
	if req.Limit != 0 {
		if req.Limit < 1 || req.Limit > MaxGetRecordsLimit {
			return nil, validation("limit %d is outside [1, %d]", req.Limit, MaxGetRecordsLimit)
		}
		limit = int(req.Limit)
	}
	state := s.host.Meta().State()
	it, verr := decodeIterator(state.IteratorKey, req.ShardIterator, s.now())
	if verr != nil {
		return nil, verr
	}
	st, ok := state.StreamByID(it.streamID)
	if !ok {
		// An iterator handed out by a node further ahead: catch up.
		if err := s.host.SyncMeta(ctx); err == nil {
			st, ok = s.host.Meta().State().StreamByID(it.streamID)
		}
	}
	if !ok || st.Status == cluster.StreamDeleting {
		return nil, notFound("the iterator's stream no longer exists")
	}
	if req.StreamArn != "" && req.StreamArn != st.ARN() {
		return nil, invalidArgument("stream_arn %q does not match the iterator's stream %s", truncate(req.StreamArn), st.Name)
	}
	sh, ok := st.ShardByIndex(it.shardIndex)
	if !ok {
		// Removed once retention passed its last record.
		return nil, notFound("the iterator's shard %s no longer exists: its records are past the stream's retention period", cluster.ShardID(it.shardIndex))
	}
	if resp, handled, err := viaReplica(ctx, s, st, sh, func(ctx context.Context, c rifflev1.StreamsClient) (*rifflev1.GetRecordsResponse, error) {
		return c.GetRecords(ctx, req)
	}); handled {
		return resp, err
	}
	replica, err := s.host.Shard(st, sh)
	if err != nil {
		return nil, err
	}
	log := replica.Log()
	// A follower's log can end before the shard's: it restarted, woke from
	// hibernation, or has not learned the latest commit yet. Before it
	// tells a reader at its end that nothing follows, it learns where the
	// shard ends from the leader (a read index), and never answers "0
	// behind" short of that (contract 7; issue 13).
	var end shardEnd
	if it.offset >= log.NextOffset() && replica.IsLeader() {
		// A new leader first applies what its predecessor committed.
		currentCtx, cancel := context.WithTimeout(ctx, followerCommitWait)
		_ = replica.WaitCurrent(currentCtx)
		cancel()
	} else if it.offset >= log.NextOffset() {
		// Wait, bounded, until this replica has applied that far; if it
		// has not, the leader answers the read.
		end = s.leaderEnd(ctx, st, sh, log, true)
		if !end.covers(log.NextOffset()) {
			if resp, handled, err := s.readFromLeader(ctx, replica, req); handled {
				return resp, err
			}
		}
	}
	from := max(it.offset, log.TrimOffset()) // below the trim horizon starts at it
	if from > log.NextOffset() {
		// This replica has not applied the reader's position yet (the
		// iterator came from a replica further ahead): nothing to read yet,
		// and the reader is behind.
		return &rifflev1.GetRecordsResponse{NextShardIterator: s.issueIterator(st, sh, from),
			MillisBehindLatest: millisBehindUnconfirmed(log, from, s.now())}, nil
	}
	// The shard's read limits on this node, shared by all its pollers,
	// admit the call and are charged what it read.
	var recs []shardlog.Record
	bytes := 0
	err = s.host.ReadThrottled(st, sh, func() (int, error) {
		var err error
		if pre, ok := s.prefetch.take(ctx, log, from, limit); ok {
			recs = pre
		} else {
			recs, err = log.Read(from, limit, MaxGetRecordsBytes)
		}
		if errors.Is(err, shardlog.ErrOutOfRange) && from < log.TrimOffset() {
			// Retention removed the position between the two calls above.
			from = log.TrimOffset()
			recs, err = log.Read(from, limit, MaxGetRecordsBytes)
		}
		for _, r := range recs {
			bytes += len(r.Data) + len(r.PartitionKey)
		}
		return bytes, err
	})
	if errors.Is(err, cluster.ErrThrottled) {
		s.throttled.throttled("GetRecords", st, sh, nil)
	}
	if errors.Is(err, shardlog.ErrClosed) {
		// The replica closed under the read (it was frozen, moved or
		// removed): a read changes nothing, so the client may simply ask
		// again, and will find the replica reopened or another node.
		return nil, unavailable("%s's replica on this node closed during the read; retry", sh.ID())
	}
	if err != nil {
		return nil, err
	}
	resp := &rifflev1.GetRecordsResponse{Records: make([]*rifflev1.Record, len(recs))}
	for i, r := range recs {
		resp.Records[i] = &rifflev1.Record{
			SequenceNumber:              shardlog.SequenceNumber(sh.Index, r.Offset),
			ApproximateArrivalTimestamp: timestamppb.New(time.UnixMilli(r.Timestamp)),
			Data:                        r.Data,
			PartitionKey:                r.PartitionKey,
		}
	}
	next := from + uint64(len(recs))
	if len(recs) > 0 && next < log.NextOffset() {
		// More records wait behind these: a replaying reader's next call
		// asks for them, so read them while this response is sent.
		s.prefetch.start(log, next, limit, s.now())
	}
	s.metrics.recordsOut.WithLabelValues(st.Name, sh.ID()).Add(float64(len(recs)))
	s.metrics.bytesOut.WithLabelValues(st.Name, sh.ID()).Add(float64(bytes))

	if end, closed := closedEnd(sh); closed && next >= end {
		resp.ChildShards = childShards(st, sh)
		s.throttled.millisBehind(st, sh, 0)
		return resp, nil // the reader has finished a closed shard
	}
	resp.NextShardIterator = s.issueIterator(st, sh, next)
	resp.MillisBehindLatest = millisBehind(log, next, s.now())
	if next >= log.NextOffset() && !s.atShardEnd(ctx, st, sh, replica, &end, next) {
		// The read reached this replica's end, which may not be the
		// shard's: the records read go back, and the reader hears it is
		// behind.
		resp.MillisBehindLatest = millisBehindUnconfirmed(log, next, s.now())
	}
	s.throttled.millisBehind(st, sh, resp.MillisBehindLatest)
	return resp, nil
}

// atShardEnd reports whether a read that ended at next, this replica's
// end, has every record the shard acknowledged: on the leader once it is
// current in its term, on a follower when its leader says so (asking it
// unless end already holds its answer).
func (s *Server) atShardEnd(ctx context.Context, st *cluster.Stream, sh *cluster.Shard, replica *shardlog.Shard, end *shardEnd, next uint64) bool {
	if replica.Raft() == nil {
		return true // frozen: the sealed shard is here whole
	}
	if replica.IsLeader() {
		currentCtx, cancel := context.WithTimeout(ctx, followerCommitWait)
		defer cancel()
		return replica.WaitCurrent(currentCtx) == nil && next >= replica.Log().NextOffset()
	}
	if !end.asked {
		*end = s.leaderEnd(ctx, st, sh, replica.Log(), false)
	}
	return end.covers(next)
}

// shardEnd is what a follower learned from its leader about where the
// shard ends.
type shardEnd struct {
	asked bool
	known bool
	// next is the leader's next offset: every acknowledged record of the
	// shard lies below it.
	next uint64
}

// covers reports whether a read ending at next has every record the shard
// had acknowledged when the leader was asked.
func (e shardEnd) covers(next uint64) bool { return e.known && e.next <= next }

// leaderEnd asks the shard's leader where the shard ends and, with
// catchUp, waits for this replica to apply that far, all within
// followerCommitWait.
func (s *Server) leaderEnd(ctx context.Context, st *cluster.Stream, sh *cluster.Shard, log *shardlog.Log, catchUp bool) shardEnd {
	ctx, cancel := context.WithTimeout(ctx, followerCommitWait)
	defer cancel()
	end := shardEnd{asked: true}
	tip, err := s.host.LeaderTip(ctx, st, sh)
	if err != nil {
		return end // no leader known or reachable: the end is unknown
	}
	end.known, end.next = true, tip
	if catchUp && tip > log.NextOffset() {
		waitForOffset(ctx, log, tip-1)
	}
	return end
}

// readFromLeader passes a read that this follower cannot answer in full
// to the shard's leader, which holds every acknowledged record. handled is
// false when there is no leader to ask or it cannot be reached, and when
// the call was already passed on once: the caller answers from here.
func (s *Server) readFromLeader(ctx context.Context, replica *shardlog.Shard, req *rifflev1.GetRecordsRequest) (resp *rifflev1.GetRecordsResponse, handled bool, err error) {
	leader := string(replica.Leader())
	if leader == "" || leader == s.host.NodeID() || proxied(ctx) {
		return nil, false, nil
	}
	conn, err := s.host.NodeConn(leader)
	if err != nil {
		return nil, false, nil
	}
	resp, err = rifflev1.NewStreamsClient(conn).GetRecords(metadata.AppendToOutgoingContext(ctx, proxiedHeader, "1"), req)
	if err != nil && unreachable(err) {
		return nil, false, nil
	}
	return resp, true, err
}

// millisBehind is the age of the oldest record the reader has not yet read,
// at least 1 ms while one is left here, zero at this replica's end.
func millisBehind(log *shardlog.Log, next uint64, now time.Time) int64 {
	if next >= log.NextOffset() {
		return 0
	}
	// A record left unread is never "0 behind", even one written this
	// millisecond (contract 7).
	ts, err := log.TimestampAt(next)
	if err != nil {
		return 1
	}
	return max(1, now.UnixMilli()-ts)
}

// millisBehindUnconfirmed is MillisBehindLatest for a reader at next on a
// replica that cannot tell whether records follow: never 0, the age of
// the next record here or else of the last one, at least 1 ms.
func millisBehindUnconfirmed(log *shardlog.Log, next uint64, now time.Time) int64 {
	if behind := millisBehind(log, next, now); behind > 0 {
		return behind
	}
	if next > log.TrimOffset() && next <= log.NextOffset() {
		if ts, err := log.TimestampAt(next - 1); err == nil {
			return max(1, now.UnixMilli()-ts)
		}
	}
	return 1
}

// closedEnd returns the exclusive end offset of a closed shard: a reader
// at it has read everything (at once, for a parent that closed empty).
func closedEnd(sh *cluster.Shard) (uint64, bool) {
	return sh.EndOffset, sh.Closed()
}

func childShards(st *cluster.Stream, parent *cluster.Shard) []*rifflev1.ChildShard {
	var out []*rifflev1.ChildShard
	for _, sh := range st.Shards {
		if sh.Parent != parent.ID() && sh.AdjacentParent != parent.ID() {
			continue
		}
		parents := []string{sh.Parent}
		if sh.AdjacentParent != "" {
			parents = append(parents, sh.AdjacentParent)
		}
		out = append(out, &rifflev1.ChildShard{
			ShardId:      sh.ID(),
			ParentShards: parents,
			HashKeyRange: &rifflev1.HashKeyRange{StartingHashKey: sh.HashStart, EndingHashKey: sh.HashEnd},
		})
	}
	return out
}
