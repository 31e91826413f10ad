package shardlog

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// CopyFrozen builds in dir, which must not exist yet, a frozen replica of a
// sealed shard whose records end at end (exclusive), from the records fetch
// copies from another replica: the segments, then seal.json. It is how a
// frozen shard's replica lost with its node is rebuilt elsewhere, since
// the shard's raft group no longer runs. Records keep their offsets, raft
// indexes, timestamps and batch boundaries (Log.Import); records the
// peers' retention has already deleted are skipped (Log.RestartAt). The
// result opens with OpenFrozen.
//
// The seal recorded has Offset end and, as Index, the raft index of the
// last record: the seal entry's own index is not copied, and nothing reads
// it on a replica that never runs raft. A failure leaves dir for the
// caller to remove.
func CopyFrozen(ctx context.Context, dir string, end uint64, opts LogOptions, fetch Fetcher) error {
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("shardlog: copy frozen replica: %s already exists", dir)
	}
	opts.Dir = filepath.Join(dir, "segments")
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l, err := OpenLog(opts)
	if err != nil {
		return err
	}
	defer l.Close()
	if end > 0 {
		im := &importer{log: l}
		ferr := fetch(ctx, FetchRequest{From: 0, To: end}, im.take)
		if got := l.NextOffset(); got != end {
			return fmt.Errorf("shardlog: copied records up to %d of %d (%v): %w", got, end, ferr, ErrMissingData)
		}
	}
	if err := l.Sync(); err != nil {
		return err
	}
	seal, err := loadSeal(dir)
	if err != nil {
		return err
	}
	if _, err := seal.set(Seal{Index: l.LastApplied(), Offset: end}); err != nil {
		return err
	}
	return l.Close()
}
