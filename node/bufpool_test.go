package node

import (
	"runtime"
	"testing"
)

// Large buffers come back from the free list after a garbage collection
// (which empties grpc's sync.Pools), the best fit first; the list never
// holds more than maxFreeBytes; small sizes go to grpc's default pool.
func TestBufferPoolKeepsLargeBuffersAcrossCollections(t *testing.T) {
	p := newBufferPool()
	a := p.Get(10<<20 + 5)
	if len(*a) != 10<<20+5 || cap(*a) != 11<<20 {
		t.Fatalf("Get(10 MiB + 5): len %d cap %d, want the length asked and the capacity rounded up to 11 MiB", len(*a), cap(*a))
	}
	b := p.Get(3 << 20)
	p.Put(a)
	p.Put(b)
	runtime.GC()
	runtime.GC()
	c := p.Get(2<<20 + 1)
	if &(*c)[0] != &(*b)[0] || len(*c) != 2<<20+1 {
		t.Fatalf("Get(2 MiB + 1) after two collections did not reuse the 3 MiB buffer (len %d cap %d)", len(*c), cap(*c))
	}
	d := p.Get(9 << 20)
	if &(*d)[0] != &(*a)[0] {
		t.Fatal("Get(9 MiB) did not reuse the 11 MiB buffer")
	}
	if e := p.Get(9 << 20); &(*e)[0] == &(*a)[0] {
		t.Fatal("a buffer was handed out twice")
	}

	// The free list is bounded.
	for range 10 {
		big := make([]byte, 16<<20)
		p.Put(&big)
	}
	if p.freeBytes > maxFreeBytes || len(p.free) != maxFreeBytes/(16<<20) {
		t.Fatalf("free list holds %d buffers, %d bytes; want %d, at most %d bytes", len(p.free), p.freeBytes, maxFreeBytes/(16<<20), maxFreeBytes)
	}

	small := p.Get(4096)
	if len(*small) != 4096 {
		t.Fatalf("Get(4096) has length %d", len(*small))
	}
	p.Put(small)
	if len(p.free) != maxFreeBytes/(16<<20) {
		t.Fatal("a small buffer went to the large free list")
	}
}
