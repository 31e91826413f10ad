package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/riffle-streams/riffle/shardlog"
	"github.com/riffle-streams/riffle/shardlog/wal"
)

// The node's write-ahead log (shardlog/wal) holds the raft log entries of
// every shard replica on the node, each as the group named by the
// replica's group id, so that the writes of all replicas share one write
// and one fdatasync. A replica's data is then in two places: its
// directory (raft.db, snapshots, segments) and its WAL group; removing a
// replica removes both (removeShardData).

func walDir(dataDir string) string { return filepath.Join(dataDir, "wal") }

// openNodeWAL opens the node's WAL and drops the groups of replicas that
// are gone: a replica's directory removed (or its raft state, once
// frozen) before a crash let its group be dropped. Nothing runs on the
// groups yet, so none is dropped while its replica opens.
func openNodeWAL(dataDir string, logger *slog.Logger) (*wal.WAL, error) {
	w, err := wal.Open(wal.Options{Dir: walDir(dataDir), Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("cluster: open the node's WAL: %w", err)
	}
	for _, gid := range w.Groups() {
		_, err := os.Stat(filepath.Join(dataDir, "shards", gid, shardlog.RaftStateFile))
		if !errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := w.Drop(gid); err != nil {
			w.Close()
			return nil, fmt.Errorf("cluster: drop the WAL group of removed replica %s: %w", gid, err)
		}
		logger.Info("WAL group of a removed shard replica dropped", "group", gid)
	}
	return w, nil
}

// removeShardData deletes a stopped replica's directory, then its WAL
// group. In that order: a crash in between leaves a group without a
// directory, which the next start drops (openNodeWAL).
func (h *Host) removeShardData(gid string) error {
	if err := os.RemoveAll(h.shardDir(gid)); err != nil {
		return err
	}
	return h.wal.Drop(gid)
}

// WALStats returns the node's write-ahead log counters, for metrics.
func (h *Host) WALStats() wal.Stats { return h.wal.Stats() }
