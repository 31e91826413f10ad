package cluster

import (
	"fmt"
	"testing"
)

// benchStream is a stream of n shards over even hash ranges, as
// CreateStream makes it.
func benchStream(b *testing.B, n int) *Stream {
	ranges, err := EvenRanges(n)
	if err != nil {
		b.Fatal(err)
	}
	s := &Stream{Name: "bench"}
	for i, r := range ranges {
		s.Shards = append(s.Shards, &Shard{Index: uint64(i), HashStart: r.Start.String(), HashEnd: r.End.String(), hashRange: r})
	}
	(&State{Streams: map[string]*Stream{s.Name: s}}).indexRoutes()
	return s
}

// benchKeys are partition keys of the length Kinesis clients often use.
func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%032x", uint64(i)*0x9e3779b97f4a7c15)
	}
	return keys
}

// BenchmarkPartitionHash measures the MD5 routing hash of one 32-character
// partition key, done for every record the gateway accepts.
func BenchmarkPartitionHash(b *testing.B) {
	keys := benchKeys(1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		PartitionHash(keys[i%len(keys)])
		i++
	}
}

// BenchmarkRouteRecord measures what the gateway does to place one record:
// hash its key, then find the open shard whose range holds the hash (a
// binary search over the open shards), at several shard counts.
func BenchmarkRouteRecord(b *testing.B) {
	keys := benchKeys(1024)
	for _, n := range []int{1, 4, 64, 500} {
		b.Run(fmt.Sprintf("shards=%d", n), func(b *testing.B) {
			s := benchStream(b, n)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := s.ShardForHash(PartitionHash(keys[i%len(keys)])); !ok {
					b.Fatal("no shard for a hash")
				}
				i++
			}
		})
	}
}
