package shardlog

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestOpenFrozenServesSealedRecords checks the read-only open of a closed
// shard: it refuses a shard that is not sealed, reads exactly the records
// written before the seal, never leads, and refuses writes as sealed.
func TestOpenFrozenServesSealedRecords(t *testing.T) {
	dir := t.TempDir()
	s := openTestShard(t, dir)
	acked := appendN(t, s, 3, 30, "rec")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFrozen(context.Background(), dir, nil, nil); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("OpenFrozen of an open shard: %v, want ErrNotSealed", err)
	}

	s = openTestShard(t, dir)
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
		t.Fatalf("OpenFrozen: %v", err)
	}
	defer f.Close()
	if got, ok := f.Sealed(); !ok || got != sl {
		t.Fatalf("Sealed = %+v %v, want %+v", got, ok, sl)
	}
	if f.Log().NextOffset() != sl.Offset || sl.Offset != uint64(len(acked)) {
		t.Fatalf("NextOffset %d, seal %d, acked %d", f.Log().NextOffset(), sl.Offset, len(acked))
	}
	checkHolds(t, f.Log(), acked)
	if f.IsLeader() || f.Leader() != "" || f.Raft() != nil {
		t.Fatal("a frozen replica reports a raft group")
	}
	if _, err := f.Append(ctx, []Entry{{PartitionKey: "k", Data: []byte("x")}}); !errors.Is(err, ErrShardSealed) {
		t.Fatalf("Append on a frozen replica: %v, want ErrShardSealed", err)
	}
	if err := f.WaitLeader(ctx); !errors.Is(err, ErrShardClosed) {
		t.Fatalf("WaitLeader on a frozen replica: %v, want ErrShardClosed", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
