package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

func newTestProducer(t *testing.T, c *Client, cfg ProducerConfig) *Producer {
	t.Helper()
	if cfg.Retry.BaseDelay == 0 {
		cfg.Retry.BaseDelay, cfg.Retry.MaxDelay = time.Millisecond, 10*time.Millisecond
	}
	p, err := NewProducer(context.Background(), c, "s", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p
}

func waitAll(t *testing.T, futures []*PutFuture) []PutResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := make([]PutResult, len(futures))
	for i, f := range futures {
		res, err := f.Wait(ctx)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		out[i] = res
	}
	return out
}

func (f *fakeStreams) sizes() (records, bytes []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.putSizes...), append([]int(nil), f.putBytes...)
}

// Batching by count: full batches are sent without waiting for the linger
// time, MaxBatchRecords records per call.
func TestProducerBatchesByCount(t *testing.T) {
	f := newFakeStreams(1)
	p := newTestProducer(t, f.start(t), ProducerConfig{MaxBatchRecords: 10, Linger: time.Hour})
	var futures []*PutFuture
	for i := range 100 {
		futures = append(futures, p.Put(context.Background(), "k", []byte(strconv.Itoa(i))))
	}
	waitAll(t, futures) // no Flush: only full batches can have gone
	sizes, _ := f.sizes()
	if len(sizes) != 10 {
		t.Fatalf("%d PutRecords calls %v, want 10", len(sizes), sizes)
	}
	for _, n := range sizes {
		if n != 10 {
			t.Fatalf("batch sizes %v, want 10 each", sizes)
		}
	}
}

// Batching by bytes: a call carries at most MaxBatchBytes of data and keys.
func TestProducerBatchesByBytes(t *testing.T) {
	f := newFakeStreams(1)
	p := newTestProducer(t, f.start(t), ProducerConfig{MaxBatchBytes: 1000, Linger: time.Hour})
	var futures []*PutFuture
	for range 90 {
		futures = append(futures, p.Put(context.Background(), "k", make([]byte, 100))) // 101 bytes
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitAll(t, futures)
	sizes, bytes := f.sizes()
	if len(sizes) != 10 {
		t.Errorf("%d calls %v, want 10 of 9 records", len(sizes), sizes)
	}
	for i, b := range bytes {
		if b > 1000 || sizes[i] != 9 {
			t.Errorf("call %d: %d records, %d bytes; want 9 records, at most 1000 bytes", i, sizes[i], b)
		}
	}
}

// Lingering: records that do not fill a batch wait for Linger and then go
// together in one call.
func TestProducerLinger(t *testing.T) {
	f := newFakeStreams(1)
	p := newTestProducer(t, f.start(t), ProducerConfig{Linger: 100 * time.Millisecond})
	start := time.Now()
	var futures []*PutFuture
	for i := range 3 {
		futures = append(futures, p.Put(context.Background(), "k", []byte{byte(i)}))
	}
	waitAll(t, futures)
	if elapsed := time.Since(start); elapsed < 100*time.Millisecond {
		t.Errorf("answered after %v, before the linger time", elapsed)
	}
	if sizes, _ := f.sizes(); len(sizes) != 1 || sizes[0] != 3 {
		t.Errorf("calls %v, want one of 3 records", sizes)
	}
}

// Per-key order under throttling: the fake throttles a suffix of each
// shard's part on most calls, and some whole calls with a RetryInfo. Every
// record is still stored, each key's records in Put order, because
// throttled records are sent again before anything later of their shard.
func TestProducerKeepsKeyOrderUnderThrottling(t *testing.T) {
	f := newFakeStreams(4)
	f.admit = func(call int, _ string, n int) int {
		if call%3 == 0 {
			return n
		}
		return (n + 1) / 2 // a refilling limit admits something
	}
	f.putErr = func(call int) error {
		if call%7 == 0 {
			return throttledError(2 * time.Millisecond)
		}
		return nil
	}
	p := newTestProducer(t, f.start(t), ProducerConfig{MaxBatchRecords: 50, Linger: time.Millisecond})
	const keys, perKey = 20, 100
	var futures []*PutFuture
	for i := range keys * perKey {
		key := fmt.Sprintf("key-%d", i%keys)
		futures = append(futures, p.Put(context.Background(), key, []byte(fmt.Sprintf("%s/%d", key, i/keys))))
	}
	results := waitAll(t, futures)

	// Acknowledged sequence numbers increase per key in Put order.
	last := map[string]string{}
	for i, res := range results {
		key := fmt.Sprintf("key-%d", i%keys)
		if prev := last[key]; prev != "" && compareSequence(res.SequenceNumber, prev) <= 0 {
			t.Fatalf("%s: record %d got %s after %s", key, i/keys, res.SequenceNumber, prev)
		}
		last[key] = res.SequenceNumber
	}
	// The stored order of each key is its Put order, with nothing twice.
	f.mu.Lock()
	next := map[string]int{}
	stored := 0
	for _, sh := range f.shards {
		for _, r := range sh.records {
			key, n, _ := strings.Cut(string(r.Data), "/")
			if want := strconv.Itoa(next[key]); n != want {
				f.mu.Unlock()
				t.Fatalf("%s: stored record %s where %s was due", key, n, want)
			}
			next[key]++
			stored++
		}
	}
	f.mu.Unlock()
	if stored != keys*perKey {
		t.Errorf("stored %d records, want %d", stored, keys*perKey)
	}
	st := p.Stats()
	if st.Throttled == 0 || st.Retried == 0 || st.Acked != keys*perKey || st.Failed != 0 {
		t.Errorf("stats %+v: want throttles and retries, every record acked", st)
	}
}

// A throttled shard's calls shrink to what the broker admits, then grow
// back: a producer held to 10 records a call does not keep sending 500.
func TestProducerShrinksBatchesWhenThrottled(t *testing.T) {
	f := newFakeStreams(1)
	f.admit = func(_ int, _ string, n int) int { return min(n, 10) }
	p := newTestProducer(t, f.start(t), ProducerConfig{Linger: time.Hour})
	var futures []*PutFuture
	for i := range 1000 {
		futures = append(futures, p.Put(context.Background(), "k", []byte(strconv.Itoa(i))))
	}
	p.Flush(context.Background())
	waitAll(t, futures)
	sizes, _ := f.sizes()
	big := 0
	for _, n := range sizes[1:] {
		if n > 20 {
			big++
		}
	}
	if big > len(sizes)/4 {
		t.Errorf("%d of %d calls carried over 20 records while 10 were admitted: %v", big, len(sizes), sizes)
	}
	if st := p.Stats(); st.Throttled > 1000 {
		t.Errorf("%d entries throttled for 1000 records", st.Throttled)
	}

	// Unthrottled, calls grow back to full batches.
	f.mu.Lock()
	f.admit = nil
	f.mu.Unlock()
	before := len(sizes)
	futures = futures[:0]
	for i := range 2000 {
		futures = append(futures, p.Put(context.Background(), "k", []byte(strconv.Itoa(i))))
	}
	p.Flush(context.Background())
	waitAll(t, futures)
	sizes, _ = f.sizes()
	if last := sizes[len(sizes)-2]; last != MaxPutRecordsEntries {
		t.Errorf("calls after the throttling: %v, want back to %d", sizes[before:], MaxPutRecordsEntries)
	}
}

// Throttling without progress is bounded: after MaxAttempts calls in a row
// that store nothing, the records fail with the throttling error.
func TestProducerGivesUpAfterMaxAttempts(t *testing.T) {
	f := newFakeStreams(1)
	f.admit = func(int, string, int) int { return 0 }
	p := newTestProducer(t, f.start(t), ProducerConfig{Retry: RetryPolicy{MaxAttempts: 3}})
	_, err := p.Put(context.Background(), "k", []byte("x")).Wait(context.Background())
	if ExceptionName(err) != ProvisionedThroughputExceededException {
		t.Errorf("err = %v, want the throttling error", err)
	}
	if n := f.count("PutRecords"); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
}

// A record whose outcome is unknown is not sent again (it could be stored
// twice) and its future says ErrOutcomeUnknown; the same holds for a whole
// call of unknown outcome. Rejected records get the broker's error.
func TestProducerReportsUnknownOutcome(t *testing.T) {
	f := newFakeStreams(1)
	f.entryErr = func(call, i int) string {
		if call == 1 && i == 1 {
			return InternalFailure
		}
		if call == 1 && i == 2 {
			return InvalidArgumentException
		}
		return ""
	}
	f.putErr = func(call int) error {
		if call == 2 {
			return testBrokerError(codes.Unknown, InternalFailure, "false", "unknown")
		}
		return nil
	}
	p := newTestProducer(t, f.start(t), ProducerConfig{Linger: time.Hour})
	var futures []*PutFuture
	for i := range 3 {
		futures = append(futures, p.Put(context.Background(), "k", []byte{byte(i)}))
	}
	p.Flush(context.Background())
	ctx := context.Background()
	if _, err := futures[0].Wait(ctx); err != nil {
		t.Errorf("record 0: %v", err)
	}
	if _, err := futures[1].Wait(ctx); !errors.Is(err, ErrOutcomeUnknown) || ExceptionName(err) != InternalFailure {
		t.Errorf("record 1: %v, want ErrOutcomeUnknown from InternalFailure", err)
	}
	if _, err := futures[2].Wait(ctx); ExceptionName(err) != InvalidArgumentException || errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("record 2: %v, want InvalidArgumentException", err)
	}
	whole := p.Put(ctx, "k", []byte("whole call unknown"))
	p.Flush(ctx)
	_, err := whole.Wait(ctx)
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("whole call: %v, want ErrOutcomeUnknown", err)
	}
	if n := f.count("PutRecords"); n != 2 {
		t.Errorf("%d calls, want 2 (nothing resent)", n)
	}
	if st := p.Stats(); st.OutcomeUnknown != 2 {
		t.Errorf("stats %+v, want 2 of unknown outcome", st)
	}
}

// Backpressure: Put blocks while the buffer holds MaxBufferedRecords
// unanswered records, and goes on once answers free room.
func TestProducerBackpressure(t *testing.T) {
	f := newFakeStreams(1)
	f.putGate = make(chan struct{})
	p := newTestProducer(t, f.start(t), ProducerConfig{MaxBufferedRecords: 5, Linger: -1})
	var futures []*PutFuture
	for i := range 5 {
		futures = append(futures, p.Put(context.Background(), "k", []byte{byte(i)}))
	}
	// The buffer is full: a Put waits until its context ends, and its
	// future carries the context's error.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	refused := p.Put(ctx, "k", []byte("no room"))
	select {
	case <-refused.Done():
	default:
		t.Fatal("Put on a full buffer returned a pending future: it did not wait for room")
	}
	if _, err := refused.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("Put on a full buffer: %v after %v, want DeadlineExceeded after 100ms", err, time.Since(start))
	}
	blocked := make(chan *PutFuture)
	go func() { blocked <- p.Put(context.Background(), "k", []byte("waits")) }()
	close(f.putGate) // answers free room
	var late *PutFuture
	select {
	case late = <-blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("Put still blocked after room was freed")
	}
	waitAll(t, append(futures, late))
}

// Flush waits for every record put before it; Close flushes and stops;
// Put after Close fails at once.
func TestProducerFlushAndClose(t *testing.T) {
	f := newFakeStreams(2)
	p := newTestProducer(t, f.start(t), ProducerConfig{Linger: time.Hour})
	var futures []*PutFuture
	for i := range 7 {
		futures = append(futures, p.Put(context.Background(), strconv.Itoa(i), []byte("x")))
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, fu := range futures {
		select {
		case <-fu.Done():
		default:
			t.Fatalf("record %d has no result after Flush", i)
		}
	}
	last := p.Put(context.Background(), "k", []byte("last"))
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := last.Wait(context.Background()); err != nil {
		t.Errorf("record put before Close: %v", err)
	}
	if _, err := p.Put(context.Background(), "k", []byte("late")).Wait(context.Background()); !errors.Is(err, ErrProducerClosed) {
		t.Errorf("Put after Close: %v, want ErrProducerClosed", err)
	}
	if err := p.Flush(context.Background()); err != nil {
		t.Errorf("Flush after Close: %v", err)
	}
}

// Close gives up when its context ends: the call in flight is cancelled
// (its record's outcome is unknown), unsent records fail as closed, and the
// owner goroutine exits.
func TestProducerCloseGivesUp(t *testing.T) {
	f := newFakeStreams(1)
	f.putGate = make(chan struct{})
	p := newTestProducer(t, f.start(t), ProducerConfig{Linger: -1, MaxBatchRecords: 1})
	inflight := p.Put(context.Background(), "k", []byte("1"))
	waitUntil(t, 10*time.Second, "a call in flight", func() bool { return f.count("PutRecordsArrived") == 1 })
	queued := p.Put(context.Background(), "k", []byte("2"))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close: %v, want DeadlineExceeded", err)
	}
	if _, err := inflight.Wait(context.Background()); !errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("record in flight: %v, want ErrOutcomeUnknown", err)
	}
	if _, err := queued.Wait(context.Background()); !errors.Is(err, ErrProducerClosed) {
		t.Errorf("queued record: %v, want ErrProducerClosed", err)
	}
	select {
	case <-p.done:
	default:
		t.Error("owner goroutine still running")
	}
}

// Records the broker would refuse fail at once, without a call.
func TestProducerValidatesRecords(t *testing.T) {
	f := newFakeStreams(1)
	p := newTestProducer(t, f.start(t), ProducerConfig{})
	tests := []struct {
		name, key, ehk string
		size           int
		want           string
	}{
		{name: "empty key", key: "", want: ValidationException},
		{name: "key of 257 characters", key: strings.Repeat("é", 257), want: ValidationException},
		{name: "invalid UTF-8", key: "\xff", want: ValidationException},
		{name: "over 1 MiB", key: "k", size: 1 << 20, want: ValidationException},
		{name: "bad explicit hash key", key: "k", ehk: "-1", want: InvalidArgumentException},
		{name: "explicit hash key of 2^128", key: "k", ehk: "340282366920938463463374607431768211456", want: InvalidArgumentException},
	}
	for _, tt := range tests {
		var opts []PutOption
		if tt.ehk != "" {
			opts = append(opts, WithExplicitHashKey(tt.ehk))
		}
		fu := p.Put(context.Background(), tt.key, make([]byte, tt.size), opts...)
		select {
		case <-fu.Done():
		default:
			t.Errorf("%s: not failed at once", tt.name)
			continue
		}
		if _, err := fu.Wait(context.Background()); ExceptionName(err) != tt.want {
			t.Errorf("%s: %v, want %s", tt.name, err, tt.want)
		}
	}
	// The largest valid record and key pass.
	if _, err := p.Put(context.Background(), strings.Repeat("é", 256), make([]byte, 1<<20-512)).Wait(context.Background()); err != nil {
		t.Errorf("largest valid record: %v", err)
	}
	if n := f.count("PutRecords"); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}

// An explicit hash key routes the record to the shard whose range holds
// it, not to its partition key's shard.
func TestProducerExplicitHashKey(t *testing.T) {
	f := newFakeStreams(3)
	p := newTestProducer(t, f.start(t), ProducerConfig{Linger: -1})
	res, err := p.Put(context.Background(), "k", []byte("x"), WithExplicitHashKey(maxHashKey.String())).Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.ShardID != "shardId-000000000002" {
		t.Errorf("shard %s, want the last one", res.ShardID)
	}
}

// A stale shard map (the broker answers from another shard, after a
// reshard) makes the producer list the shards again, and records go on.
func TestProducerRefreshesStaleShardMap(t *testing.T) {
	f := newFakeStreams(1)
	p := newTestProducer(t, f.start(t), ProducerConfig{Linger: -1})
	if _, err := p.Put(context.Background(), "k", []byte("1")).Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.addChild(0) // shard 0 closes; shard 1 takes its range
	res, err := p.Put(context.Background(), "k", []byte("2")).Wait(context.Background())
	if err != nil || res.ShardID != "shardId-000000000001" {
		t.Fatalf("after the reshard: %+v, %v", res, err)
	}
	waitUntil(t, 10*time.Second, "a ListShards after the stale answer", func() bool { return f.count("ListShards") >= 2 })
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Put(context.Background(), "k", []byte("3")).Wait(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}
