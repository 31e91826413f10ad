package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/riffle-streams/riffle/shardlog"
)

func prefetchLog(t *testing.T, n int) *shardlog.Log {
	t.Helper()
	log, err := shardlog.OpenLog(shardlog.LogOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	entries := make([]shardlog.Entry, n)
	for i := range entries {
		entries[i] = shardlog.Entry{PartitionKey: "k", Data: []byte(fmt.Sprintf("r%d", i))}
	}
	if _, _, err := log.Append(1, 1, entries); err != nil {
		t.Fatal(err)
	}
	return log
}

// A batch read ahead is taken only by the read that asks for exactly it
// (same log, offset and limit), once, and holds the records a read would
// return; one for another position is dropped; old batches expire, and at
// most maxPrefetches are held.
func TestPrefetcherServesOnlyTheBatchAskedFor(t *testing.T) {
	var p prefetcher
	defer p.close()
	ctx := context.Background()
	now := time.Unix(1000, 0)
	log := prefetchLog(t, 100)

	p.start(log, 10, 5, now)
	p.start(log, 50, 5, now) // one batch per log: ignored
	recs, ok := p.take(ctx, log, 10, 5)
	if !ok || len(recs) != 5 || recs[0].Offset != 10 || string(recs[4].Data) != "r14" {
		t.Fatalf("take(10, 5) = %d records, %v; want offsets 10-14", len(recs), ok)
	}
	if _, ok := p.take(ctx, log, 10, 5); ok {
		t.Fatal("a batch was served twice")
	}

	p.start(log, 20, 5, now)
	if _, ok := p.take(ctx, log, 21, 5); ok {
		t.Fatal("a batch was served for another offset")
	}
	if _, ok := p.take(ctx, log, 20, 5); ok {
		t.Fatal("a batch passed over by its reader was kept")
	}
	p.start(log, 20, 5, now)
	if _, ok := p.take(ctx, log, 20, 6); ok {
		t.Fatal("a batch was served for another limit")
	}

	// Expiry and the bound.
	p.start(log, 30, 5, now)
	others := make([]*shardlog.Log, maxPrefetches)
	for i := range others {
		others[i] = prefetchLog(t, 10)
		p.start(others[i], 0, 5, now.Add(prefetchTTL))
	}
	if _, ok := p.take(ctx, log, 30, 5); ok {
		t.Fatal("a batch older than prefetchTTL was served")
	}
	p.start(prefetchLog(t, 10), 0, 5, now.Add(prefetchTTL))
	p.mu.Lock()
	held := len(p.batches)
	p.mu.Unlock()
	if held != maxPrefetches {
		t.Fatalf("%d batches held, want at most %d", held, maxPrefetches)
	}
	if _, ok := p.take(ctx, others[0], 0, 5); ok {
		t.Fatal("the oldest batch was not the one dropped")
	}
	if recs, ok := p.take(ctx, others[1], 0, 5); !ok || len(recs) != 5 {
		t.Fatalf("take of a held batch: %d records, %v", len(recs), ok)
	}

	// After close nothing more is read ahead.
	p.close()
	p.start(log, 40, 5, now)
	if _, ok := p.take(ctx, log, 40, 5); ok {
		t.Fatal("a batch was read after close")
	}
}
