package shardlog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// sealedSource is a sealed shard's frozen replica to copy from.
func sealedSource(t *testing.T) (*Shard, Seal) {
	t.Helper()
	dir := t.TempDir()
	s := openTestShard(t, dir)
	appendN(t, s, 4, 25, "rec")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sl, err := s.Seal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFrozen(context.Background(), dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, sl
}

// fetchFromLog serves a fetch from l in chunks of at most chunk records,
// which cut batches, as a peer's FetchRecords may.
func fetchFromLog(l *Log, chunk int) Fetcher {
	return func(ctx context.Context, req FetchRequest, sink func(FetchedChunk) error) error {
		from := max(req.From, l.TrimOffset())
		if from >= req.To {
			return sink(FetchedChunk{Horizon: l.TrimHorizon()})
		}
		for from < req.To {
			recs, err := l.Read(from, chunk, 0)
			if err != nil {
				return err
			}
			if err := sink(FetchedChunk{Horizon: l.TrimHorizon(), Records: recs}); err != nil {
				return err
			}
			from += uint64(len(recs))
		}
		return nil
	}
}

// TestCopyFrozen checks the rebuild of a frozen replica from a peer's
// records: the copy opens frozen and holds the same records (offsets, raft
// indexes, times, batches), also when chunks cut batches; a peer whose
// retention deleted everything gives an empty replica at the end; a fetch
// that falls short leaves no replica that could open; an existing
// directory is refused.
func TestCopyFrozen(t *testing.T) {
	src, sl := sealedSource(t)
	want, err := src.Log().Read(0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{1, 3, 1000} {
		dir := filepath.Join(t.TempDir(), "copy")
		if err := CopyFrozen(context.Background(), dir, sl.Offset, LogOptions{}, fetchFromLog(src.Log(), chunk)); err != nil {
			t.Fatalf("chunk %d: CopyFrozen: %v", chunk, err)
		}
		f, err := OpenFrozen(context.Background(), dir, nil, nil)
		if err != nil {
			t.Fatalf("chunk %d: OpenFrozen of the copy: %v", chunk, err)
		}
		got, err := f.Log().Read(0, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, got, want)
		if s, ok := f.Sealed(); !ok || s.Offset != sl.Offset {
			t.Fatalf("chunk %d: copy sealed at %+v %v, want offset %d", chunk, s, ok, sl.Offset)
		}
		f.Close()
	}

	// The peer's retention deleted everything: the copy is empty at the end.
	if _, err := src.ExpireBefore(src.Log().LastTimestamp() + 1); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "expired")
	if err := CopyFrozen(context.Background(), dir, sl.Offset, LogOptions{}, fetchFromLog(src.Log(), 10)); err != nil {
		t.Fatalf("CopyFrozen of an expired shard: %v", err)
	}
	f, err := OpenFrozen(context.Background(), dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if trim, next := f.Log().TrimOffset(), f.Log().NextOffset(); trim != sl.Offset || next != sl.Offset {
		t.Fatalf("expired copy holds [%d, %d), want empty at %d", trim, next, sl.Offset)
	}
	f.Close()

	// A fetch that stops short: an error, and no seal to open.
	short := func(ctx context.Context, req FetchRequest, sink func(FetchedChunk) error) error {
		return errors.New("peer gone")
	}
	dir = filepath.Join(t.TempDir(), "short")
	if err := CopyFrozen(context.Background(), dir, sl.Offset, LogOptions{}, short); !errors.Is(err, ErrMissingData) {
		t.Fatalf("short copy: %v, want ErrMissingData", err)
	}
	if _, err := OpenFrozen(context.Background(), dir, nil, nil); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("OpenFrozen after a short copy: %v, want ErrNotSealed", err)
	}
	// The short copy's directory is left for the caller: a new copy into
	// it is refused rather than mixed with it.
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	if err := CopyFrozen(context.Background(), dir, sl.Offset, LogOptions{}, fetchFromLog(src.Log(), 10)); err == nil {
		t.Fatal("CopyFrozen into an existing directory succeeded")
	}
}
