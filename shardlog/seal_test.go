package shardlog

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestShardSealRefusesLaterWrites checks the seal's guarantees: writes
// racing the seal are either acknowledged below the seal's offset or refused
// with ErrShardSealed (never both, never lost), sealing again returns the
// same seal, and the seal survives a restart and a snapshot.
func TestShardSealRefusesLaterWrites(t *testing.T) {
	dir := t.TempDir()
	s := openTestShard(t, dir)
	appendN(t, s, 4, 40, "before")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	acked := map[uint64]bool{}
	refused := 0
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				res, err := s.Append(ctx, []Entry{{PartitionKey: "k", Data: []byte("x")}})
				mu.Lock()
				switch {
				case err == nil:
					acked[res.FirstOffset] = true
				case errors.Is(err, ErrShardSealed):
					refused++
				default:
					t.Errorf("append: %v", err)
				}
				mu.Unlock()
				if err != nil {
					return
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	sl, err := s.Seal(ctx)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	close(stop)
	wg.Wait()
	if refused == 0 {
		t.Log("no writer raced the seal")
	}
	for off := range acked {
		if off >= sl.Offset {
			t.Errorf("write acknowledged at %d, at or above the seal's offset %d", off, sl.Offset)
		}
	}
	if sl.Offset != s.Log().NextOffset() {
		t.Errorf("seal offset %d, log ends at %d", sl.Offset, s.Log().NextOffset())
	}
	if _, err := s.Append(ctx, []Entry{{PartitionKey: "k", Data: []byte("late")}}); !errors.Is(err, ErrShardSealed) {
		t.Errorf("append after seal: %v, want ErrShardSealed", err)
	}
	again, err := s.Seal(ctx)
	if err != nil || again != sl {
		t.Errorf("second Seal = %+v, %v; want %+v", again, err, sl)
	}
	if err := s.Raft().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestShard(t, dir)
	defer s.Close()
	got, ok := s.Sealed()
	if !ok || got != sl {
		t.Fatalf("after restart Sealed = %+v, %v; want %+v", got, ok, sl)
	}
	if _, err := s.Append(ctx, []Entry{{PartitionKey: "k", Data: []byte("late")}}); !errors.Is(err, ErrShardSealed) {
		t.Errorf("append after restart: %v, want ErrShardSealed", err)
	}
	if n := s.Log().NextOffset(); n != sl.Offset {
		t.Errorf("log ends at %d after restart, seal at %d", n, sl.Offset)
	}
}

// TestShardSealReachesReplicaBySnapshot checks that a replica that was down
// while its group was sealed, and that catches up from a snapshot (raft no
// longer holds the seal entry), records the same seal and refuses writes.
func TestShardSealReachesReplicaBySnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("700 replicated writes")
	}
	g := &raftTrio{t: t}
	g.start()
	l := g.leader()
	appendN(t, g.shards[l], 8, 100, "before")
	down := (l + 1) % 3
	waitFor(t, func() bool { return g.shards[down].Log().NextOffset() == 100 })
	g.close(down)
	appendN(t, g.shards[l], 1, 600, "while-down")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sl, err := g.shards[l].Seal(ctx)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	// Writes after the seal are refused (without reaching raft).
	for range 20 {
		if _, err := g.shards[l].Append(ctx, []Entry{{PartitionKey: "k", Data: []byte("late")}}); !errors.Is(err, ErrShardSealed) {
			t.Fatalf("append after seal: %v", err)
		}
	}
	// The snapshots cover the seal entry: the replica that was down gets the
	// seal from the snapshot's manifest alone.
	for i, s := range g.shards {
		if s != nil {
			if err := s.Raft().Snapshot().Error(); err != nil {
				t.Fatalf("snapshot on n%d: %v", i+1, err)
			}
		}
	}
	src := g.shards[l].Log()
	g.open(down, logFetcher(src, 37))
	waitFor(t, func() bool {
		got, ok := g.shards[down].Sealed()
		return ok && got == sl && g.shards[down].Log().NextOffset() == sl.Offset
	})
	g.close(down)
	g.open(down, logFetcher(src, 37))
	if got, ok := g.shards[down].Sealed(); !ok || got != sl {
		t.Fatalf("after restart the replica's seal is %+v, %v; want %+v", got, ok, sl)
	}
}
