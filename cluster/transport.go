package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
)

// Transports hands out the raft transport of each group this node runs.
// Every group on a node shares the node's address; a multiplexing transport
// routes RPCs by group id.
type Transports interface {
	// Transport returns the transport for groupID, creating it on first use.
	Transport(groupID string) raft.Transport
	// Release forgets groupID once its raft group has shut down.
	Release(groupID string)
	// LocalAddress is this node's raft address as peers dial it.
	LocalAddress() raft.ServerAddress
}

// LocalTransports serves a node that is alone in its cluster: each group is
// a single voter and sends no RPCs, so in-memory transports suffice.
type LocalTransports struct {
	addr raft.ServerAddress
	mu   sync.Mutex
	m    map[string]*raft.InmemTransport
}

// NewLocalTransports returns transports for a single-node cluster.
func NewLocalTransports(addr string) *LocalTransports {
	return &LocalTransports{addr: raft.ServerAddress(addr), m: map[string]*raft.InmemTransport{}}
}

// Transport implements Transports.
func (t *LocalTransports) Transport(groupID string) raft.Transport {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr, ok := t.m[groupID]; ok {
		return tr
	}
	_, tr := raft.NewInmemTransport(t.addr)
	t.m[groupID] = tr
	return tr
}

// Release implements Transports.
func (t *LocalTransports) Release(groupID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr, ok := t.m[groupID]; ok {
		tr.Close()
		delete(t.m, groupID)
	}
}

// LocalAddress implements Transports.
func (t *LocalTransports) LocalAddress() raft.ServerAddress { return t.addr }
