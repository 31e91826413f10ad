package client

import (
	"context"
	"sync"
)

// bufferLimit bounds what a producer holds that has no result yet. Put
// reserves room before it hands a record over and blocks while there is
// none: backpressure instead of an unbounded queue.
type bufferLimit struct {
	maxBytes, maxRecords int

	mu      sync.Mutex
	bytes   int
	records int
	// freed is closed, and replaced, whenever room is given back.
	freed chan struct{}
}

func newBufferLimit(maxBytes, maxRecords int) *bufferLimit {
	return &bufferLimit{maxBytes: maxBytes, maxRecords: maxRecords, freed: make(chan struct{})}
}

// acquire reserves room for one record of size bytes, waiting while the
// buffer is full, until ctx ends or closed is closed. An empty buffer always
// takes a record, so that one larger than maxBytes cannot wait forever.
func (b *bufferLimit) acquire(ctx context.Context, size int, closed <-chan struct{}) error {
	for {
		b.mu.Lock()
		if b.records == 0 || (b.bytes+size <= b.maxBytes && b.records < b.maxRecords) {
			b.bytes += size
			b.records++
			b.mu.Unlock()
			return nil
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		case <-closed:
			return ErrProducerClosed
		}
	}
}

// release gives back the room of records records totalling bytes.
func (b *bufferLimit) release(bytes, records int) {
	if records == 0 {
		return
	}
	b.mu.Lock()
	b.bytes -= bytes
	b.records -= records
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}
