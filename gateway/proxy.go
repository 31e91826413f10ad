package gateway

import (
	"context"
	"errors"

	"google.golang.org/grpc/metadata"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Reads need a replica. A node that holds none of a shard (clusters of more
// than three nodes) passes the whole read to a live replica's public API;
// iterators are signed by the cluster, so they are valid on any node.

// proxiedHeader marks a proxied call, so that it is never proxied again.
const proxiedHeader = "x-riffle-proxied"

// viaReplica calls a replica of sh with call when this node holds none.
// handled is false when the read can be served here.
func viaReplica[T any](ctx context.Context, s *Server, st *cluster.Stream, sh *cluster.Shard, call func(context.Context, rifflev1.StreamsClient) (T, error)) (resp T, handled bool, err error) {
	// A replica this node is assigned but still opening (just after a
	// restart) is waited for: passed on, the call could come back here.
	if _, err := s.host.WaitShard(ctx, st, sh); !errors.Is(err, cluster.ErrNoReplica) {
		return resp, false, nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(proxiedHeader)) > 0 {
		return resp, true, unavailable("no replica of %s on this node and the request was already passed on", sh.ID())
	}
	conn, err := s.host.ReplicaConn(sh)
	if err != nil {
		return resp, true, unavailable("%v", err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, proxiedHeader, "1")
	resp, err = call(ctx, rifflev1.NewStreamsClient(conn))
	return resp, true, err
}
