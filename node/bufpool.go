package node

import (
	"sync"

	"google.golang.org/grpc/mem"
)

// The gRPC server marshals each response into a buffer from its pool, and
// reads each request into one. grpc's default pool keeps buffers in
// sync.Pools, which every garbage collection empties: a node replaying a
// shard sends a 10 MiB GetRecords response every few tens of milliseconds
// and collects about as often, so each response got fresh memory, zeroed
// and faulted in page by page (a third of the replaying node's CPU time).
// bufferPool keeps large buffers in a bounded free list instead, which a
// collection leaves alone.

const (
	// largeBuffer is the size above which bufferPool keeps buffers itself;
	// grpc's default pool serves the smaller ones.
	largeBuffer = 1 << 20
	// maxFreeBytes bounds the memory the free list holds while idle: a
	// few full GetRecords responses (10 MiB) or PutRecords requests (5 MiB).
	maxFreeBytes = 64 << 20
)

type bufferPool struct {
	small mem.BufferPool

	mu        sync.Mutex
	free      []*[]byte // buffers of capacity > largeBuffer
	freeBytes int
}

func newBufferPool() *bufferPool { return &bufferPool{small: mem.DefaultBufferPool()} }

// Get implements mem.BufferPool: the smallest free buffer that fits, else
// a new one rounded up to a MiB so that sizes that vary a little reuse it.
func (p *bufferPool) Get(n int) *[]byte {
	if n <= largeBuffer {
		return p.small.Get(n)
	}
	p.mu.Lock()
	best := -1
	for i, b := range p.free {
		if cap(*b) >= n && (best < 0 || cap(*b) < cap(*p.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		b := p.free[best]
		p.free[best] = p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
		p.freeBytes -= cap(*b)
		p.mu.Unlock()
		*b = (*b)[:n]
		return b
	}
	p.mu.Unlock()
	b := make([]byte, n, (n+largeBuffer-1)&^(largeBuffer-1))
	return &b
}

// Put implements mem.BufferPool. A large buffer that would take the free
// list past maxFreeBytes is left to the garbage collector.
func (p *bufferPool) Put(b *[]byte) {
	if cap(*b) <= largeBuffer {
		p.small.Put(b)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.freeBytes+cap(*b) > maxFreeBytes {
		return
	}
	p.free = append(p.free, b)
	p.freeBytes += cap(*b)
}
