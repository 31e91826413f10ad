package gateway

import (
	"context"
	"errors"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Reads need a replica. A node that holds none of a shard (clusters of more
// than three nodes) passes the whole read to a live replica's public API;
// iterators are signed by the cluster, so they are valid on any node.

// proxiedHeader marks a proxied call, so that it is never proxied again.
const proxiedHeader = "x-riffle-proxied"

// replicaProxy keeps one connection per replica node it proxies to.
type replicaProxy struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func (p *replicaProxy) client(addr string) (rifflev1.StreamsClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return rifflev1.NewStreamsClient(c), nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, err
	}
	if p.conns == nil {
		p.conns = map[string]*grpc.ClientConn{}
	}
	p.conns[addr] = c
	return rifflev1.NewStreamsClient(c), nil
}

// Close releases the proxy's connections.
func (p *replicaProxy) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for addr, c := range p.conns {
		errs = append(errs, c.Close())
		delete(p.conns, addr)
	}
	return errors.Join(errs...)
}

// viaReplica calls a replica of sh with call when this node holds none.
// handled is false when the read can be served here.
func viaReplica[T any](ctx context.Context, s *Server, st *cluster.Stream, sh *cluster.Shard, call func(context.Context, rifflev1.StreamsClient) (T, error)) (resp T, handled bool, err error) {
	if _, err := s.host.Shard(st, sh); !errors.Is(err, cluster.ErrNoReplica) {
		return resp, false, nil
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(proxiedHeader)) > 0 {
		return resp, true, unavailable("no replica of %s on this node and the request was already passed on", sh.ID())
	}
	addr, err := s.host.ReplicaAddr(sh)
	if err != nil {
		return resp, true, unavailable("%v", err)
	}
	client, err := s.proxy.client(addr)
	if err != nil {
		return resp, true, unavailable("%v", err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, proxiedHeader, "1")
	resp, err = call(ctx, client)
	return resp, true, err
}
