package shardlog

import (
	"fmt"
	"testing"
)

// benchRequests are the entries of n PutRecords requests of 100 records
// of size bytes, as the batcher hands them to one raft entry.
func benchRequests(n, size int) [][]Entry {
	data := make([]byte, size)
	batches := make([][]Entry, n)
	for i := range batches {
		batches[i] = make([]Entry, 100)
		for j := range batches[i] {
			batches[i][j] = Entry{PartitionKey: fmt.Sprintf("%032d", i*100+j), Data: data}
		}
	}
	return batches
}

// BenchmarkEncodeAppend measures building one raft entry from group-
// committed requests: the copy of every record into the command.
func BenchmarkEncodeAppend(b *testing.B) {
	for _, size := range []int{128, 1024} {
		for _, requests := range []int{1, 10} {
			b.Run(fmt.Sprintf("size=%d/requests=%d", size, requests), func(b *testing.B) {
				batches := benchRequests(requests, size)
				b.SetBytes(int64(requests * 100 * size))
				b.ReportAllocs()
				for b.Loop() {
					encodeAppend(1, batches)
				}
			})
		}
	}
}

// BenchmarkDecodeAppend measures reading the entries back out of a raft
// entry, done by every replica's FSM on apply.
func BenchmarkDecodeAppend(b *testing.B) {
	for _, size := range []int{128, 1024} {
		b.Run(fmt.Sprintf("size=%d/requests=10", size), func(b *testing.B) {
			buf := encodeAppend(1, benchRequests(10, size))
			b.SetBytes(int64(1000 * size))
			b.ReportAllocs()
			for b.Loop() {
				if _, entries, err := decodeAppend(buf); err != nil || len(entries) != 1000 {
					b.Fatalf("%d entries, %v", len(entries), err)
				}
			}
		})
	}
}
