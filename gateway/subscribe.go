package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// SubscribeToShard implements riffle.v1.Streams: enhanced fan-out.
//
// A subscription is served on its shard leader's node, where records can be
// pushed the moment they commit (followers apply them later). Any other
// node relays the whole call to the leader's node; a node without a replica
// that does not know the leader relays it to a live replica. A call that
// was already relayed (the proxied header) is served where it lands, from
// the local replica, whether it leads or not: every replica holds only
// committed records, so any of them serves a correct subscription. For the
// same reason a subscription keeps running on a node that loses the
// leadership. See docs/fan-out.md.
func (s *Server) SubscribeToShard(req *rifflev1.SubscribeToShardRequest, ss grpc.ServerStreamingServer[rifflev1.SubscribeToShardEvent]) error {
	ctx := ss.Context()
	if s.fanout.ctx.Err() != nil {
		return unavailable("this node is shutting down; subscribe through another node")
	}
	if req.ConsumerArn == "" {
		return validation("consumer_arn is required")
	}
	if verr := checkShardID(req.ShardId); verr != nil {
		return verr
	}
	if req.StartingPosition == nil {
		return validation("starting_position is required")
	}
	st, c, err := s.consumerByARN(ctx, req.ConsumerArn)
	if (err == nil && c.Status == cluster.ConsumerCreating) || (err != nil && s.justRegistered(req.ConsumerArn)) {
		st, c, err = s.awaitConsumerActive(ctx, req.ConsumerArn)
	}
	if err != nil {
		return err
	}
	switch c.Status {
	case cluster.ConsumerCreating:
		e := inUse("consumer %s is still CREATING; subscribe once it is ACTIVE", c.Name)
		e.Transient, e.RetryAfter = true, 200*time.Millisecond
		return e
	case cluster.ConsumerDeleting:
		return notFound("consumer %s is being deregistered", c.Name)
	}
	sh, ok := st.ShardByID(req.ShardId)
	if !ok {
		return notFound("shard %s of stream %s not found", req.ShardId, st.Name)
	}
	replica, rerr := s.host.WaitShard(ctx, st, sh)
	if rerr != nil && !errors.Is(rerr, cluster.ErrNoReplica) {
		return rerr
	}
	if !proxied(ctx) {
		if conn, target := s.subscriptionRelay(sh, replica); conn != nil {
			err := s.relaySubscription(ctx, conn, target, req, ss)
			if !errors.Is(err, errUpstreamUnreachable) {
				return err
			}
			if replica == nil {
				return unavailable("%v", err)
			}
			// The leader's node cannot be reached (it may have just died
			// and the replicas not noticed yet): serve from the replica
			// here rather than send the client away.
			s.logger.Debug("subscription served by a follower: the leader's node is unreachable", "shard", sh.ID(), "leader", target, "err", err)
		}
	}
	if replica == nil {
		return unavailable("no replica of %s on this node and the subscription was already passed on", sh.ID())
	}
	return s.serveSubscription(ctx, st, c, sh, replica, req.StartingPosition, ss)
}

// activationWait bounds how long a subscription waits for a CREATING
// consumer to turn ACTIVE, or for a consumer registered moments ago to
// appear. The metadata leader activates consumers at once, so either mostly
// means that this node has not applied the change yet, while the client
// already saw the consumer ACTIVE through another node.
const activationWait = time.Second

// justRegistered reports whether a consumer ARN names a registration of
// the last few seconds, which this node's metadata may not hold yet.
func (s *Server) justRegistered(arn string) bool {
	_, _, created, err := cluster.ParseConsumerARN(arn)
	return err == nil && s.now().Sub(time.UnixMilli(created)).Abs() < 10*time.Second
}

// awaitConsumerActive waits on metadata changes until the consumer exists
// and is no longer CREATING, or activationWait passes.
func (s *Server) awaitConsumerActive(ctx context.Context, arn string) (*cluster.Stream, *cluster.Consumer, error) {
	timer := time.NewTimer(activationWait)
	defer timer.Stop()
	for {
		changed := s.host.Meta().Changed()
		st, c, err := s.consumerByARN(ctx, arn)
		if err == nil && c.Status != cluster.ConsumerCreating {
			return st, c, nil
		}
		select {
		case <-changed:
		case <-timer.C:
			return st, c, err
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// proxied reports whether the call was passed on by another node.
func proxied(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(proxiedHeader)) > 0
}

// subscriptionRelay picks the node to relay a subscription to, nil when it
// is served here: this node leads the shard, or holds a replica and the
// leader is unknown or unreachable (the replica serves committed records
// as well as the leader, only later).
func (s *Server) subscriptionRelay(sh *cluster.Shard, replica *shardlog.Shard) (*grpc.ClientConn, string) {
	if replica == nil {
		conn, err := s.host.ReplicaConn(sh)
		if err != nil {
			return nil, ""
		}
		return conn, "a replica of " + sh.ID()
	}
	leader := string(replica.Leader())
	if replica.IsLeader() || leader == "" || leader == s.host.NodeID() {
		return nil, ""
	}
	conn, err := s.host.NodeConn(leader)
	if err != nil {
		return nil, ""
	}
	return conn, "node " + leader
}

// relaySubscription passes a subscription to another node and its events
// back, one at a time: a slow client stops this relay from reading, which
// stops the serving node through gRPC flow control, and memory stays one
// event. An upstream that fails ends the call with a retryable
// ServiceUnavailable; the client resumes from its continuation number.
func (s *Server) relaySubscription(ctx context.Context, conn *grpc.ClientConn, target string, req *rifflev1.SubscribeToShardRequest, ss grpc.ServerStreamingServer[rifflev1.SubscribeToShardEvent]) error {
	clientCtx := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.fanout.ctx, cancel)()
	ctx = metadata.AppendToOutgoingContext(ctx, proxiedHeader, "1")
	up, err := rifflev1.NewStreamsClient(conn).SubscribeToShard(ctx, req)
	relayed := 0
	for err == nil {
		var ev *rifflev1.SubscribeToShardEvent
		if ev, err = up.Recv(); err == nil {
			if err = ss.Send(ev); err != nil && clientCtx.Err() != nil {
				return nil // the client left; nobody hears a status
			}
			relayed++
		}
	}
	switch {
	case errors.Is(err, io.EOF):
		return nil // the serving node ended the subscription cleanly
	case clientCtx.Err() != nil:
		return nil
	case s.fanout.ctx.Err() != nil:
		return unavailable("this node is shutting down; resume from the last continuation_sequence_number through another node")
	}
	if relayed == 0 && unreachable(err) {
		return fmt.Errorf("%w: %s: %v", errUpstreamUnreachable, target, err)
	}
	return upstreamError(target, err)
}

// errUpstreamUnreachable: a relayed subscription failed to reach its node
// before any event, so nothing was sent and it can be served elsewhere.
var errUpstreamUnreachable = errors.New("gateway: subscription relay could not reach its node")

// unreachable reports whether a call failed for want of a connection, not
// with an answer from the node.
func unreachable(err error) bool {
	st, _ := status.FromError(err)
	return st.Code() == codes.Unavailable && len(st.Details()) == 0
}

// upstreamError turns the end of a relayed call into the error the client
// gets: the serving node's own exception as it sent it, or, when the call
// broke (the node died, the connection dropped), a retryable
// ServiceUnavailable.
func upstreamError(target string, err error) error {
	st, ok := status.FromError(err)
	if ok {
		for _, d := range st.Details() {
			info, ok := d.(*errdetails.ErrorInfo)
			if !ok || info.Domain != ErrorDomain {
				continue
			}
			e := &Error{
				Exception: info.Reason,
				Message:   strings.TrimPrefix(st.Message(), info.Reason+": "),
				Outcome:   Outcome(info.Metadata["outcome"]),
				Transient: info.Metadata["retryable"] == "true",
			}
			for _, d := range st.Details() {
				if ri, ok := d.(*errdetails.RetryInfo); ok {
					e.RetryAfter = ri.RetryDelay.AsDuration()
				}
			}
			return e
		}
	}
	return unavailable("subscription relayed to %s broke off: %v; resume from the last continuation_sequence_number", target, err)
}
