package shardlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// ErrNotSealed: OpenFrozen found no seal in the replica's directory. Only a
// sealed shard is immutable, so only a sealed one may be opened without raft.
var ErrNotSealed = errors.New("shardlog: shard is not sealed")

// OpenFrozen opens a sealed replica's segments for reading only, with no
// raft group: a closed shard whose every replica has applied its seal holds
// records that can never change, so running raft for it would only cost a
// goroutine set, heartbeats and a bolt file. The returned Shard serves Log()
// like a running one; it never leads (IsLeader false, Leader empty), Append
// returns ErrShardSealed, and Close closes the files.
//
// Segments that OpenLog finds damaged and drops (or a torn tail it cuts)
// leave the log short of the seal; with no raft log to replay, the missing
// records are fetched through fetch (another replica of the shard) before
// the replica is returned. Without a fetcher, or when the fetch falls
// short, OpenFrozen fails with ErrMissingData rather than serve a shard
// with records missing.
func OpenFrozen(ctx context.Context, dir string, fetch Fetcher, logger *slog.Logger) (*Shard, error) {
	if logger == nil {
		logger = slog.Default()
	}
	seal, err := loadSeal(dir)
	if err != nil {
		return nil, err
	}
	if seal.get() == nil {
		return nil, fmt.Errorf("shardlog: open frozen %s: %w", dir, ErrNotSealed)
	}
	// OpenLog would create the directory: a frozen replica without its
	// segments has lost its data, which must not read as an empty shard.
	segDir := filepath.Join(dir, "segments")
	if _, err := os.Stat(segDir); err != nil {
		return nil, fmt.Errorf("shardlog: open frozen %s: %w", dir, err)
	}
	l, err := OpenLog(LogOptions{Dir: segDir, Logger: logger})
	if err != nil {
		return nil, err
	}
	end := seal.get().Offset
	machine := &fsm{log: l, logger: logger, fetch: fetch, ctx: ctx}
	if err := machine.catchUp(manifest{NextOffset: end}, "frozen replica short of its seal"); err != nil {
		l.Close()
		return nil, fmt.Errorf("shardlog: open frozen %s: records end at %d, sealed at %d: %w", dir, l.NextOffset(), end, err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	close(done) // no batcher runs
	return &Shard{opts: ShardOptions{Dir: dir, Logger: logger}, log: l, logger: logger, seal: seal,
		stop: stop, done: done}, nil
}

// Names in a replica's directory: raft's term, vote and configuration
// (bbolt) and its log entries (RaftLog). A frozen replica needs neither.
const (
	RaftStateFile = "raft.db"
	RaftLogDir    = "raftlog"
)

// RemoveRaftState deletes a frozen replica's raft files from dir.
func RemoveRaftState(dir string) error {
	return errors.Join(
		ignoreNotExist(os.Remove(filepath.Join(dir, RaftStateFile))),
		os.RemoveAll(filepath.Join(dir, RaftLogDir)))
}

func ignoreNotExist(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
