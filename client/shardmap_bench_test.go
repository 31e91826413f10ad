package client

import (
	"fmt"
	"math/big"
	"testing"
)

// BenchmarkShardMapRoute measures the SDK producer's routing of one record:
// the MD5 hash of its key and a binary search of the open shards' ranges.
func BenchmarkShardMapRoute(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("%032x", uint64(i)*0x9e3779b97f4a7c15)
	}
	for _, n := range []int{1, 64, 500} {
		b.Run(fmt.Sprintf("shards=%d", n), func(b *testing.B) {
			// n even ranges of the 2^128 hash space.
			width := new(big.Int).Div(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(int64(n)))
			m := &shardMap{}
			for i := range n {
				start := new(big.Int).Mul(width, big.NewInt(int64(i)))
				end := new(big.Int).Sub(new(big.Int).Add(start, width), big.NewInt(1))
				if i == n-1 {
					end = maxHashKey
				}
				m.ranges = append(m.ranges, shardRange{id: fmt.Sprintf("shardId-%012d", i), start: start, end: end})
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := m.shardFor(PartitionHash(keys[i%len(keys)])); !ok {
					b.Fatal("no shard for a hash")
				}
				i++
			}
		})
	}
}
