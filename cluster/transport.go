package cluster

import "github.com/hashicorp/raft"

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
