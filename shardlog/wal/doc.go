// Package wal is the node's write-ahead log: one log shared by every raft
// group on the node, behind each group's raft.LogStore.
//
// Why: with a log per group, every group wrote and fdatasynced its own
// files, so sixteen shards on a node made sixteen streams of fsyncs on one
// disk, and adding shards made the node slower. Here the StoreLogs calls of
// all groups that arrive while a write is in flight go out together in the
// next single write and one fdatasync (group commit).
//
// The log is a sequence of segment files, named by a number that grows by
// one at every roll. A record is one group's: its entries appended from an
// index on, a prefix or a suffix dropped, or a checkpoint that states the
// group's whole live log (empty for a reset). Each group keeps an in-memory
// index of where its live entries are; replaying the segments in order
// rebuilds it. A segment is deleted once no group has a live entry in it;
// a group that pins old segments while the log grows (an idle group that
// raft never compacts) is checkpointed into the newest segment.
//
// What it does not do: term, vote and configuration stay in each group's
// stable store (raft-boltdb), and the install rules of a snapshot over a
// log are the caller's (shardlog). docs/wal.md argues its safety.
package wal
