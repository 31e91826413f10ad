// Package gateway is the public gRPC API (riffle.v1.Streams) on every node:
// it validates requests, hashes partition keys to shards, applies writes
// through the shard leader and serves reads of committed records.
//
// It does not store anything or decide placement; that is package cluster.
// The Kinesis semantics live in plain functions and types (validation,
// iterators, errors) so that a second front end speaking Kinesis's HTTP API
// can reuse them; only server*.go know about gRPC.
package gateway
