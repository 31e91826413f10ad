package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/riffle-streams/riffle/shardlog"
)

// A reader replaying a shard makes one GetRecords call at a time: the node
// reads the batch, builds and sends the response, and only then does the
// reader unmarshal it and ask for the next. The prefetcher overlaps the
// two: once a call returns records with more left behind them, the next
// batch is read in the background, and the call that asks for exactly it
// takes it. Committed records never change, so a batch read early is the
// batch a later read would return; the read limits are charged when it is
// served.

const (
	// maxPrefetches bounds the batches held at once (each up to 10 MiB).
	maxPrefetches = 4
	// prefetchTTL drops a batch no call asked for: its reader went away.
	prefetchTTL = 10 * time.Second
)

type prefetcher struct {
	mu      sync.Mutex
	batches []*prefetched // oldest first
	closed  bool
	wg      sync.WaitGroup // the background reads
}

// prefetched is one batch read ahead: records of log from offset from, at
// most limit of them; recs and err are set when done closes.
type prefetched struct {
	log     *shardlog.Log
	from    uint64
	limit   int
	started time.Time
	done    chan struct{}
	recs    []shardlog.Record
	err     error
}

// start reads limit records of log from offset from in the background,
// unless a batch of log is already held or being read.
func (p *prefetcher) start(log *shardlog.Log, from uint64, limit int, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	kept := p.batches[:0]
	for _, b := range p.batches {
		if now.Sub(b.started) < prefetchTTL {
			kept = append(kept, b)
		}
	}
	clear(p.batches[len(kept):])
	p.batches = kept
	for _, b := range p.batches {
		if b.log == log {
			return
		}
	}
	if len(p.batches) == maxPrefetches {
		p.batches[0] = nil
		p.batches = p.batches[1:]
	}
	b := &prefetched{log: log, from: from, limit: limit, started: now, done: make(chan struct{})}
	p.batches = append(p.batches, b)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(b.done)
		b.recs, b.err = log.Read(from, limit, MaxGetRecordsBytes)
	}()
}

// take returns the batch held for log if it starts at from and was read
// with limit, waiting for its read to finish (within ctx). A batch held for
// log is dropped either way: its reader has moved on.
func (p *prefetcher) take(ctx context.Context, log *shardlog.Log, from uint64, limit int) ([]shardlog.Record, bool) {
	p.mu.Lock()
	var b *prefetched
	for i, c := range p.batches {
		if c.log == log {
			b = c
			p.batches = append(p.batches[:i], p.batches[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	if b == nil || b.from != from || b.limit != limit {
		return nil, false
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		return nil, false
	}
	if b.err != nil || len(b.recs) == 0 {
		return nil, false
	}
	return b.recs, true
}

// close stops new background reads and waits for those under way.
func (p *prefetcher) close() {
	p.mu.Lock()
	p.closed = true
	p.batches = nil
	p.mu.Unlock()
	p.wg.Wait()
}
