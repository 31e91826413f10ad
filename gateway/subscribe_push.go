package gateway

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// An event holds at most this much: memory per subscription is one event
// (plus gRPC's flow-control windows), whatever the subscriber's speed.
const (
	maxEventBytes   = 1 << 20
	maxEventRecords = 10000
)

// subscription is one SubscribeToShard call served from a local replica.
// Its loop runs on the handler's goroutine and owns every field.
type subscription struct {
	s        *Server
	ss       grpc.ServerStreamingServer[rifflev1.SubscribeToShardEvent]
	reg      *registration
	arn      string
	streamID uint64
	shard    *cluster.Shard // refreshed from the metadata
	replica  *shardlog.Shard
	log      *shardlog.Log
	pace     *pacer
	metrics  subscriptionMetrics

	// next is the offset of the next record to send; continuation is the
	// sequence number of the record before it (empty before offset 0).
	next         uint64
	continuation string
	// heartbeatDue is when a quiet subscription sends an empty event.
	heartbeatDue time.Time
}

// errConsumerGone marks the end of a subscription whose consumer or stream
// no longer exists, so that its metrics can go too.
var errConsumerGone = errors.New("gateway: consumer gone")

// serveSubscription resolves the starting position, claims the consumer's
// hold on the shard and pushes events until the subscription ends.
func (s *Server) serveSubscription(ctx context.Context, st *cluster.Stream, c *cluster.Consumer, sh *cluster.Shard, replica *shardlog.Shard,
	pos *rifflev1.StartingPosition, ss grpc.ServerStreamingServer[rifflev1.SubscribeToShardEvent]) error {
	// A subscriber is a reader: the replica it reads stays awake.
	defer s.host.KeepAwake(st, sh)()
	start, err := s.startingOffset(ctx, st, sh, pos.Type, pos.SequenceNumber, pos.Timestamp)
	if err != nil {
		return err
	}
	now := time.Now()
	arn := c.ARN(st.Name)
	sub := &subscription{
		s: s, ss: ss, arn: arn, streamID: st.ID, shard: sh, replica: replica, log: replica.Log(), next: start,
		pace:         newPacer(s.host.Limits(st).FanOutBytes, now),
		metrics:      s.fanout.metrics.forSubscription(st.Name, sh.ID(), c.Name),
		reg:          &registration{started: now, replaced: make(chan struct{}), labels: [3]string{st.Name, sh.ID(), c.Name}},
		heartbeatDue: now, // the first event goes out at once, records or not
	}
	if start > 0 {
		// The record before the position, even if retention removed it:
		// resuming after it starts here again.
		sub.continuation = shardlog.SequenceNumber(sh.Index, start-1)
	}
	key := subKey{consumerARN: arn, streamID: st.ID, shardIndex: sh.Index}
	if err := s.fanout.claim(key, sub.reg); err != nil {
		return err
	}
	err = sub.run(ctx)
	s.fanout.release(key, sub.reg, errors.Is(err, errConsumerGone))
	if ctx.Err() != nil {
		return nil // the client left; nobody hears a status
	}
	return err
}

// run is the push loop. It reads at most one event's worth, sends it, and
// reads again, so a slow subscriber only slows itself. With nothing to
// send it waits, without polling, for the first of: an apply on the local
// replica, a metadata change (consumer deregistered, shard closed), its
// heartbeat, the end of its lifetime, the fan-out pacer, replacement by a
// newer subscription, or the client leaving.
func (sub *subscription) run(ctx context.Context) error {
	s := sub.s
	lifetimeEnd := time.Now().Add(s.opts.SubscriptionLifetime)
	metaChanged := s.host.Meta().Changed()
	if err := sub.refresh(); err != nil {
		return err
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		applied := sub.log.Changed()
		if err := sub.interrupted(ctx); err != nil {
			return err
		}
		select {
		case <-metaChanged:
			metaChanged = s.host.Meta().Changed()
			if err := sub.refresh(); err != nil {
				return err
			}
		default:
		}
		now := time.Now()
		if !now.Before(lifetimeEnd) {
			// Ends cleanly; the last event repeats the continuation.
			return sub.send(nil, 0, nil)
		}
		if trim := sub.log.TrimOffset(); sub.next < trim {
			sub.next = trim // retention removed what was not yet sent
		}
		if end, closed := closedEnd(sub.shard); closed && sub.next >= end {
			return sub.sendEnd(nil, 0)
		}
		wake := earliest(sub.heartbeatDue, lifetimeEnd)
		paced := false
		if sub.next < sub.log.NextOffset() {
			maxBytes, wait := sub.pace.allow(now, maxEventBytes)
			if wait == 0 {
				if err := sub.sendRecords(maxBytes); err != nil {
					return err
				}
				continue
			}
			paced = true
			wake = earliest(wake, now.Add(wait))
		}
		if !now.Before(sub.heartbeatDue) {
			if err := sub.send(nil, 0, nil); err != nil {
				return err
			}
			continue
		}
		if !paced {
			// Nothing to read: make sure the replica still runs, since the
			// apply channel of a closed log never blocks again.
			if _, err := sub.log.Read(sub.next, 1, 1); errors.Is(err, shardlog.ErrClosed) {
				return sub.readError(err)
			}
		}
		timer.Reset(wake.Sub(now))
		select {
		case <-applied:
		case <-metaChanged:
		case <-timer.C:
		case <-sub.reg.replaced:
		case <-s.fanout.ctx.Done():
		case <-ctx.Done():
		}
		if paced {
			sub.metrics.paced.Add(time.Since(now).Seconds())
		}
	}
}

// interrupted says why the subscription must end now, if it must: a newer
// subscription took over, the node is stopping, or the client left. It is
// checked on every turn, so a subscriber that is always behind notices too.
func (sub *subscription) interrupted(ctx context.Context) error {
	select {
	case <-sub.reg.replaced:
		return inUse("subscription replaced by a newer subscription of the same consumer to %s", sub.shard.ID())
	case <-sub.s.fanout.ctx.Done():
		return unavailable("this node is shutting down; resume from the last continuation_sequence_number through another node")
	case <-ctx.Done():
		return ctx.Err()
	default:
		return nil
	}
}

// refresh rereads the consumer, stream and shard from the metadata.
func (sub *subscription) refresh() error {
	st, c, err := sub.s.host.Meta().State().ConsumerByARN(sub.arn)
	switch {
	case err != nil:
		return errors.Join(notFound("consumer %s is gone: %v", sub.arn, err), errConsumerGone)
	case st.ID != sub.streamID || st.Status == cluster.StreamDeleting:
		return errors.Join(notFound("stream %s was deleted", st.Name), errConsumerGone)
	case c.Status == cluster.ConsumerDeleting:
		return errors.Join(notFound("consumer %s was deregistered", c.Name), errConsumerGone)
	}
	sh, ok := st.ShardByIndex(sub.shard.Index)
	if !ok {
		// Removed once retention passed its last record.
		return errors.Join(notFound("shard %s no longer exists: its records are past the stream's retention period", sub.shard.ID()), errConsumerGone)
	}
	sub.shard = sh
	sub.pace.setRate(sub.s.host.Limits(st).FanOutBytes)
	return nil
}

// sendRecords reads up to maxBytes from the replica and sends them.
func (sub *subscription) sendRecords(maxBytes int) error {
	recs, err := sub.log.Read(sub.next, maxEventRecords, maxBytes)
	if err != nil {
		if errors.Is(err, shardlog.ErrOutOfRange) && sub.next < sub.log.TrimOffset() {
			return nil // retention got there first; the loop moves to the trim horizon
		}
		return sub.readError(err)
	}
	out := make([]*rifflev1.Record, len(recs))
	bytes := 0
	for i, r := range recs {
		out[i] = &rifflev1.Record{
			SequenceNumber:              shardlog.SequenceNumber(sub.shard.Index, r.Offset),
			ApproximateArrivalTimestamp: timestamppb.New(time.UnixMilli(r.Timestamp)),
			Data:                        r.Data,
			PartitionKey:                r.PartitionKey,
		}
		bytes += len(r.Data) + len(r.PartitionKey)
	}
	sub.pace.take(bytes)
	sub.next += uint64(len(recs))
	if len(recs) > 0 {
		sub.continuation = out[len(out)-1].SequenceNumber
	}
	if end, closed := closedEnd(sub.shard); closed && sub.next >= end {
		return sub.sendEnd(out, bytes)
	}
	return sub.send(out, bytes, nil)
}

// readError ends a subscription whose replica stopped (moved away, stream
// deleted, node stopping): retryable, from the continuation number.
func (sub *subscription) readError(err error) error {
	if errors.Is(err, shardlog.ErrClosed) {
		return unavailable("the replica of %s serving this subscription stopped; resume from the last continuation_sequence_number", sub.shard.ID())
	}
	return err
}

// sendEnd sends the last event of a closed shard: the child shards and no
// continuation, since nothing follows in this shard.
func (sub *subscription) sendEnd(recs []*rifflev1.Record, bytes int) error {
	st, ok := sub.s.host.Meta().State().StreamByID(sub.streamID)
	if !ok {
		return errors.Join(notFound("stream of %s was deleted", sub.arn), errConsumerGone)
	}
	sub.continuation = ""
	return sub.send(recs, bytes, childShards(st, sub.shard))
}

// send sends one event and accounts for it.
func (sub *subscription) send(recs []*rifflev1.Record, bytes int, children []*rifflev1.ChildShard) error {
	behind := millisBehind(sub.log, sub.next, sub.s.now())
	if children == nil && sub.next >= sub.log.NextOffset() && !sub.current() {
		// At this replica's end, which may not be the shard's (contract 7).
		behind = millisBehindUnconfirmed(sub.log, sub.next, sub.s.now())
	}
	ev := &rifflev1.SubscribeToShardEvent{
		Records:                    recs,
		ContinuationSequenceNumber: sub.continuation,
		MillisBehindLatest:         behind,
		ChildShards:                children,
	}
	if err := sub.ss.Send(ev); err != nil {
		return err
	}
	sub.heartbeatDue = time.Now().Add(sub.s.opts.SubscriptionHeartbeat)
	sub.metrics.records.Add(float64(len(recs)))
	sub.metrics.bytes.Add(float64(bytes))
	sub.metrics.behind.Set(float64(behind))
	return nil
}

// current reports whether a subscription at its replica's end is at the
// shard's end: the replica is frozen, or leads the shard and has applied
// what its predecessors committed, or follows and its leader says nothing
// lies beyond (a follower serves a subscription only when the leader was
// unknown or unreachable, or the call was passed on to it).
func (sub *subscription) current() bool {
	if sub.replica.Raft() == nil {
		return true
	}
	ctx := sub.ss.Context()
	if sub.replica.IsLeader() {
		ctx, cancel := context.WithTimeout(ctx, followerCommitWait)
		defer cancel()
		return sub.replica.WaitCurrent(ctx) == nil && sub.next >= sub.log.NextOffset()
	}
	st, ok := sub.s.host.Meta().State().StreamByID(sub.streamID)
	if !ok {
		return false
	}
	return sub.s.leaderEnd(ctx, st, sub.shard, sub.log, false).covers(sub.next)
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
