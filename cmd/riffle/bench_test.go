package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"
)

// The bench creates a missing stream, without per-shard limits (a benchmark
// measures the broker, not the limiter), stops by itself after --duration,
// and reports what the broker acknowledged.
func TestBenchCreatesStreamAndStops(t *testing.T) {
	for _, batch := range []string{"1", "50"} {
		t.Run("batch "+batch, func(t *testing.T) {
			f := newFakeBroker()
			addr, _ := f.start(t)
			start := time.Now()
			code, stdout, stderr := runCLI(t, "", "bench", "--stream", "b", "--create-shards", "2", "--producers", "2", "--in-flight", "2",
				"--batch", batch, "--record-size", "100", "--duration", "1200ms", "--json", "--addr", addr)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if elapsed := time.Since(start); elapsed > 10*time.Second {
				t.Errorf("a 1.2s bench took %v", elapsed)
			}
			var r benchReport
			if err := json.Unmarshal([]byte(stdout), &r); err != nil {
				t.Fatalf("not one JSON object: %v\n%s", err, stdout)
			}
			f.mu.Lock()
			stored := len(f.streams["b"].records)
			limits := f.streams["b"].limits
			f.mu.Unlock()
			if limits == nil || limits.WriteRecordsPerSecond == nil || limits.GetWriteRecordsPerSecond() != 0 ||
				limits.WriteBytesPerSecond == nil || limits.GetWriteBytesPerSecond() != 0 || limits.ReadCallsPerSecond == nil {
				t.Errorf("bench created its stream with shard_limits %v, want every limit 0 (unlimited)", limits)
			}
			if r.Records == 0 || r.Records != uint64(stored) {
				t.Errorf("reported %d records, broker stored %d", r.Records, stored)
			}
			if r.Calls == 0 || r.FailedCalls != 0 || len(r.Errors) != 0 || r.Interrupted {
				t.Errorf("report %+v", r)
			}
			if r.Latency.P50 <= 0 || r.Latency.P50 > r.Latency.P99 || r.Latency.P99 > r.Latency.Max {
				t.Errorf("latency %+v", r.Latency)
			}
			if r.ElapsedSeconds < 1.2 || r.RecordsPerSecond <= 0 || r.MiBPerSecond <= 0 {
				t.Errorf("rates %+v", r)
			}
			if !strings.Contains(stderr, "records/s") {
				t.Errorf("no progress line on stderr:\n%s", stderr)
			}
		})
	}
}

// --shard-batches sends each call's records to one shard: every record of
// a call carries the same explicit hash key, a decimal in the 128-bit key
// space, new for each call, while partition keys stay random.
func TestBenchShardBatches(t *testing.T) {
	f := newFakeBroker()
	addr, _ := f.start(t)
	code, _, stderr := runCLI(t, "", "bench", "--stream", "b", "--create-shards", "4", "--producers", "1", "--in-flight", "2",
		"--batch", "20", "--record-size", "10", "--duration", "300ms", "--shard-batches", "--json", "--addr", addr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.putCalls) < 2 {
		t.Fatalf("%d PutRecords calls, want several", len(f.putCalls))
	}
	maxKey := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))
	seen := map[string]bool{}
	for i, recs := range f.putCalls {
		hashKey := recs[0].GetExplicitHashKey()
		k, ok := new(big.Int).SetString(hashKey, 10)
		if !ok || k.Sign() < 0 || k.Cmp(maxKey) > 0 {
			t.Fatalf("call %d: explicit hash key %q is not a decimal in [0, 2^128-1]", i, hashKey)
		}
		if seen[hashKey] {
			t.Errorf("call %d reuses hash key %s", i, hashKey)
		}
		seen[hashKey] = true
		keys := map[string]bool{}
		for _, r := range recs {
			if r.GetExplicitHashKey() != hashKey {
				t.Fatalf("call %d mixes hash keys %s and %s", i, hashKey, r.GetExplicitHashKey())
			}
			keys[r.GetPartitionKey()] = true
		}
		if len(keys) != len(recs) {
			t.Errorf("call %d: %d partition keys for %d records, want a new one per record", i, len(keys), len(recs))
		}
	}
}

// --shard-batches refuses what it cannot honour.
func TestBenchShardBatchesRefused(t *testing.T) {
	for _, args := range [][]string{
		{"--batch", "1"},
		{"--key-count", "10"},
		{"--mode", "consume"},
	} {
		code, _, stderr := runCLI(t, "", append([]string{"bench", "--stream", "b", "--shard-batches", "--addr", "127.0.0.1:1"}, args...)...)
		if code != exitUsage || !strings.Contains(stderr, "--shard-batches") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

// Without --create-shards a missing stream is an error (exit 3) with a hint.
func TestBenchNeedsStream(t *testing.T) {
	f := newFakeBroker()
	addr, _ := f.start(t)
	code, _, stderr := runCLI(t, "", "bench", "--stream", "nope", "--duration", "1s", "--addr", addr)
	if code != exitNotFound || !strings.Contains(stderr, "--create-shards") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// An interrupt stops the bench early and still prints the report.
func TestBenchInterrupted(t *testing.T) {
	f := newFakeBroker()
	f.addStream("b")
	addr, _ := f.start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int)
	go func() {
		done <- runMain(ctx, []string{"bench", "--stream", "b", "--duration", "1h", "--json", "--addr", addr},
			stdio{in: strings.NewReader(""), out: &stdout, err: &stderr})
	}()
	waitFor(t, "a progress line", func() bool { return strings.Contains(stderr.String(), "records/s") })
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("interrupt did not stop the bench")
	}
	var r benchReport
	if err := json.Unmarshal([]byte(stdout.String()), &r); err != nil {
		t.Fatal(err)
	}
	if !r.Interrupted || r.Records == 0 || r.FailedCalls != 0 || len(r.Errors) != 0 {
		t.Errorf("report %+v", r)
	}
}

// The text report shows every number of the JSON one.
func TestBenchReportText(t *testing.T) {
	r := benchReport{
		Records: 123456, ElapsedSeconds: 30, RecordsPerSecond: 4115.2, MiBPerSecond: 4.02,
		Calls: 1235, FailedCalls: 1, FailedRecords: 112,
		Errors:  map[string]uint64{"ProvisionedThroughputExceededException": 12, "DeadlineExceeded": 100},
		Latency: latencyReport{P50: 3.2134, P90: 5.1, P99: 9.87, P999: 15, Max: 1234.5},
	}
	var buf bytes.Buffer
	if err := writeBenchReport(&buf, r); err != nil {
		t.Fatal(err)
	}
	want := `records      123456 in 30.0s: 4115 records/s, 4.02 MiB/s
calls        1235, 1 failed
errors       112 records: DeadlineExceeded 100, ProvisionedThroughputExceededException 12
ack latency  p50 3.21ms  p90 5.1ms  p99 9.87ms  p99.9 15ms  max 1.23s
`
	if buf.String() != want {
		t.Errorf("report\n%s\nwant\n%s", buf.String(), want)
	}
}

// Bench keys have the length the size checks assume, and differ.
func TestRandomKey(t *testing.T) {
	a, b := randomKey(), randomKey()
	if len(a) != benchKeyLen || a == b {
		t.Errorf("keys %q and %q", a, b)
	}
}

// The per-key real-time check flags a put sent after another of its key was
// acknowledged with a higher sequence number, and nothing else: concurrent
// puts may commit in either order.
func TestRealTimeViolations(t *testing.T) {
	at := func(ms int) time.Time { return time.Unix(0, 0).Add(time.Duration(ms) * time.Millisecond) }
	put := func(seq string, sent, ack int) putRecord {
		return putRecord{key: "k", seq: seq, sent: at(sent), ack: at(ack)}
	}
	for _, tt := range []struct {
		name string
		puts []putRecord
		want uint64
	}{
		{"in order", []putRecord{put("10", 0, 5), put("11", 6, 9), put("20", 10, 12)}, 0},
		{"concurrent, either order", []putRecord{put("11", 0, 5), put("10", 1, 6)}, 0},
		{"child before parent", []putRecord{put("100000000000000000000", 0, 5), put("7", 6, 9)}, 1},
		{"equal sequence numbers", []putRecord{put("10", 0, 5), put("10", 6, 9)}, 1},
		{"one of two later puts", []putRecord{put("10", 0, 5), put("9", 6, 9), put("11", 6, 9)}, 1},
	} {
		if got := realTimeViolations(tt.puts); got != tt.want {
			t.Errorf("%s: %d violations, want %d", tt.name, got, tt.want)
		}
	}
}
