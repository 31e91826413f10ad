package shardlog

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/riffle-streams/riffle/shardlog/wal"
)

// A replica's raft log entries live in the node's write-ahead log (package
// wal), as the group named by the replica's GroupID. This file holds what
// the replica adds on top of the WAL's log store: the install rules of a
// snapshot over a log (checkInstall, reconcileSnapshot) and the move of a
// log that an earlier version kept elsewhere into the WAL (importOldLog).

// ErrLogConflictsWithSnapshot: a snapshot to install ends at an index this
// log holds with another term, or that it does not hold while it goes past
// it. Either way every entry after the snapshot here is one the leader
// walked back over (raft sends a snapshot only after a follower rejected
// every entry it offered, from the leader's last down past the first this
// log holds), so none is committed, and Raft's rule is to drop the log.
// hashicorp/raft cannot while it runs: the replica must restart, and the
// next open drops the log (reconcileSnapshot). Raft installing such a
// snapshot instead would panic ("log not found") applying entries the log
// no longer holds, or loop sending it again.
var ErrLogConflictsWithSnapshot = errors.New("shardlog: raft log conflicts with the snapshot to install")

// installConflictFile records, in the replica's directory, the snapshot
// an install was refused for with ErrLogConflictsWithSnapshot: its index
// and term, 8 bytes each, little-endian.
const installConflictFile = "install-conflict"

// checkInstall is called before raft installs a snapshot ending at index
// and term. A log that ends at or before index needs nothing: raft goes on
// after the snapshot. A log holding index with that term keeps it, and
// the entries after it: the compaction that follows the install leaves
// index in place, so that the leader's next AppendEntries, which names it
// as the previous entry, matches. A log that conflicts with the snapshot
// records that in dir, for the next open, and returns
// ErrLogConflictsWithSnapshot.
//
// Raft's goroutine is the one installing, so no entries are stored
// meanwhile.
func checkInstall(g *wal.Group, dir string, index, term uint64) error {
	first, _ := g.FirstIndex()
	last, _ := g.LastIndex()
	if last == 0 || last <= index {
		return nil
	}
	why := fmt.Sprintf("the log [%d, %d] goes past the snapshot's end %d without it", first, last, index)
	if index >= first {
		var e raft.Log
		if err := g.GetLog(index, &e); err != nil {
			return err
		}
		if e.Term == term {
			g.KeepFrom(index)
			return nil
		}
		why = fmt.Sprintf("entry %d has term %d, the snapshot %d (log [%d, %d])", index, e.Term, term, first, last)
	}
	var b [16]byte
	le.PutUint64(b[0:8], index)
	le.PutUint64(b[8:16], term)
	if err := writeFileSynced(filepath.Join(dir, installConflictFile), b[:]); err != nil {
		return fmt.Errorf("shardlog: raft log: recording a conflicting install: %w", err)
	}
	return fmt.Errorf("%w: %s", ErrLogConflictsWithSnapshot, why)
}

// reconcileSnapshot brings the log in line with the latest snapshot, which
// ends at index and term (0 for none), before raft starts on it. First, a
// log that conflicted with an install (checkInstall) is dropped unless it
// holds that snapshot's end with its term by now. Then, as the Raft paper's
// install rules do: entries after a matching index stay; a log that holds
// index with another term conflicts with the snapshot (committed) and
// goes whole; entries that all end before index are left (raft skips
// them). A log that starts after index+1 has a hole raft would panic on
// and is ErrRaftStateDamaged.
func reconcileSnapshot(g *wal.Group, dir string, logger *slog.Logger, index, term uint64) error {
	first, _ := g.FirstIndex()
	last, _ := g.LastIndex()
	conflictPath := filepath.Join(dir, installConflictFile)
	if b, err := os.ReadFile(conflictPath); err == nil && len(b) == 16 {
		ci, ct := le.Uint64(b[0:8]), le.Uint64(b[8:16])
		var e raft.Log
		if last != 0 && !(g.GetLog(ci, &e) == nil && e.Term == ct) {
			logger.Warn("shardlog: dropping the raft log that conflicted with an installed snapshot",
				"snapshotIndex", ci, "snapshotTerm", ct, "first", first, "last", last)
			if err := g.Reset(); err != nil {
				return err
			}
			first, last = 0, 0
		}
		if err := os.Remove(conflictPath); err != nil {
			return fmt.Errorf("shardlog: raft log: %w", err)
		}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("shardlog: raft log: %w", err)
	}
	if last == 0 || index == 0 || last <= index || first == index+1 {
		return nil
	}
	if first > index+1 {
		return fmt.Errorf("%w: entries [%d, %d] follow the snapshot at %d with a hole", ErrRaftStateDamaged, first, last, index)
	}
	var e raft.Log
	if err := g.GetLog(index, &e); err != nil {
		return err
	}
	if e.Term == term {
		return nil
	}
	logger.Warn("shardlog: raft log conflicts with the latest snapshot; dropping it",
		"snapshotIndex", index, "snapshotTerm", term, "entryTerm", e.Term, "first", first, "last", last)
	return g.Reset()
}

// importOldLog moves the entries an earlier version kept beside the
// replica into its WAL group, so that a replica upgraded in place keeps
// its uncompacted entries: first those in raft.db (before RaftLog), then a
// RaftLog directory (before the WAL). Storing an entry again replaces it,
// so an import that a crash cut short is repeated whole at the next open;
// the old copy goes only after the WAL holds every entry durably.
func importOldLog(store *raftboltdb.BoltStore, dir string, g *wal.Group, logger *slog.Logger) error {
	oldDir := filepath.Join(dir, RaftLogDir)
	done := oldDir + ".imported"
	if err := os.RemoveAll(done); err != nil {
		return fmt.Errorf("shardlog: %w", err)
	}
	_, err := os.Stat(oldDir)
	haveDir := err == nil
	if last, err := store.LastIndex(); err != nil {
		return err
	} else if last > 0 {
		first, _ := store.FirstIndex()
		if !haveDir { // else raft.db's copy was moved to oldDir already
			if err := copyEntries(store, g, first, last); err != nil {
				return fmt.Errorf("shardlog: moving raft entries out of raft.db: %w", err)
			}
		}
		if err := store.DeleteRange(first, last); err != nil {
			return err
		}
	}
	if !haveDir {
		return nil
	}
	old, err := OpenRaftLog(oldDir, logger)
	if err != nil {
		return err
	}
	first, _ := old.FirstIndex()
	last, _ := old.LastIndex()
	if last > 0 {
		err = copyEntries(old, g, first, last)
	}
	if cerr := old.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("shardlog: moving raft entries from %s into the WAL: %w", oldDir, err)
	}
	if err := os.Rename(filepath.Join(oldDir, installConflictFile), filepath.Join(dir, installConflictFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("shardlog: %w", err)
	}
	// Renamed first, so that a crash midway through the removal leaves no
	// partial log to import.
	if err := os.Rename(oldDir, done); err != nil {
		return fmt.Errorf("shardlog: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("shardlog: %w", err)
	}
	logger.Info("shardlog: raft log moved into the node's WAL", "first", first, "last", last)
	return os.RemoveAll(done)
}

// copyEntries stores from's entries [first, last] in g, a few MiB per call.
func copyEntries(from raft.LogStore, g *wal.Group, first, last uint64) error {
	const chunkBytes = 4 << 20
	var batch []*raft.Log
	size := 0
	for i := first; i <= last; i++ {
		e := new(raft.Log)
		if err := from.GetLog(i, e); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		batch = append(batch, e)
		size += len(e.Data) + len(e.Extensions)
		if size >= chunkBytes || i == last {
			if err := g.StoreLogs(batch); err != nil {
				return err
			}
			batch, size = batch[:0], 0
		}
	}
	return nil
}
