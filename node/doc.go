// Package node assembles one Riffle process: it opens the data directory,
// starts the cluster host (metadata and shard raft groups), the public gRPC
// gateway with health and reflection, and the admin HTTP server, and stops
// them in order. It holds no broker logic of its own.
package node
