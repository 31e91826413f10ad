//go:build e2e

package e2e

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// ackedRecord is a record the cluster acknowledged: where it says it stored it.
type ackedRecord struct {
	key, data string
	shardID   string
	seq       string
}

// storedRecord is a record as GetRecords returns it; two nodes serving the
// same shard must return equal slices of these.
type storedRecord struct {
	seq       string
	key, data string
	arrivalMs int64
}

func (r storedRecord) String() string {
	return fmt.Sprintf("{seq %s key %q data %q arrival %d}", r.seq, r.key, r.data, r.arrivalMs)
}

// uniqueStreamName keeps the tests independent of each other and of earlier
// runs against a cluster that stayed up.
func uniqueStreamName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
}

// createStream creates a provisioned stream through one node and waits until
// every node of the cluster describes it as ACTIVE: the metadata has reached
// them all. It deletes the stream when the test ends. The stream has the
// cluster's per-shard limits (Kinesis's in deploy/docker-compose.yml).
func (c *cluster) createStream(through, name string, shards int32) []*rifflev1.Shard {
	c.t.Helper()
	return c.createStreamWithLimits(through, name, shards, nil)
}

// unlimited are shard limits that lift every per-shard limit of a stream,
// for tests that write as fast as they can to check something else.
func unlimited() *rifflev1.ShardLimits {
	zero := func() *int64 { return new(int64) }
	return &rifflev1.ShardLimits{WriteBytesPerSecond: zero(), WriteRecordsPerSecond: zero(),
		ReadBytesPerSecond: zero(), ReadCallsPerSecond: zero(), FanOutBytesPerSecond: zero()}
}

// createStreamWithLimits is createStream with the stream's own per-shard
// limits (nil: the cluster's).
func (c *cluster) createStreamWithLimits(through, name string, shards int32, limits *rifflev1.ShardLimits) []*rifflev1.Shard {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if _, err := c.streams(through).CreateStream(ctx, &rifflev1.CreateStreamRequest{StreamName: name, ShardCount: shards, ShardLimits: limits}); err != nil {
		c.t.Fatalf("CreateStream %s through %s: %v", name, through, err)
	}
	c.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		if _, err := c.streams(through).DeleteStream(ctx, &rifflev1.DeleteStreamRequest{StreamName: name}); err != nil {
			c.t.Logf("cleanup: DeleteStream %s: %v", name, err)
		}
	})
	for _, n := range clusterNodes {
		eventually(c.t, metadataTimeout, name+" ACTIVE on "+n.service, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			out, err := c.streams(n.service).DescribeStreamSummary(ctx, &rifflev1.DescribeStreamSummaryRequest{StreamName: name})
			if err != nil {
				return err
			}
			if s := out.GetStreamDescriptionSummary().GetStreamStatus(); s != rifflev1.StreamStatus_STREAM_STATUS_ACTIVE {
				return fmt.Errorf("status %v", s)
			}
			return nil
		})
	}
	ctx, cancel = context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	out, err := c.streams(through).ListShards(ctx, &rifflev1.ListShardsRequest{StreamName: name})
	if err != nil {
		c.t.Fatalf("ListShards %s: %v", name, err)
	}
	if len(out.GetShards()) != int(shards) {
		c.t.Fatalf("ListShards %s: %d shards, want %d", name, len(out.GetShards()), shards)
	}
	return out.GetShards()
}

// errWriteRefused is a write failure that is not safe to retry: a test
// failure, never a fault to ride out.
var errWriteRefused = errors.New("write refused")

// putRecords writes entries with PutRecords through the given clients, one
// call after another in turn, until every entry is acknowledged. A call that
// fails with a retryable error (ServiceUnavailable, Unavailable, throttling,
// a deadline: the broker's retryable metadata or client.IsRetryable) is sent
// again to the next client, as are the entries whose per-record error is
// retryable. onRetry sees every retryable failure. Any other failure ends it
// with errWriteRefused. The acknowledgements come back in entry order.
func putRecords(ctx context.Context, stream string, clients []rifflev1.StreamsClient, entries []*rifflev1.PutRecordsRequestEntry,
	onRetry func(error)) ([]ackedRecord, error) {
	acks := make([]ackedRecord, len(entries))
	pending := make([]int, len(entries)) // indexes into entries still to write
	for i := range pending {
		pending[i] = i
	}
	backoff := 50 * time.Millisecond
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
		}
		req := &rifflev1.PutRecordsRequest{StreamName: stream}
		for _, i := range pending {
			req.Records = append(req.Records, entries[i])
		}
		callCtx, cancel := context.WithTimeout(ctx, callTimeout)
		out, err := clients[attempt%len(clients)].PutRecords(callCtx, req)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if !client.IsRetryable(err) {
				return nil, fmt.Errorf("%w: PutRecords: %v", errWriteRefused, err)
			}
			onRetry(err)
			continue
		}
		if len(out.GetRecords()) != len(pending) {
			return nil, fmt.Errorf("%w: PutRecords answered %d results for %d records", errWriteRefused, len(out.GetRecords()), len(pending))
		}
		var still []int
		for j, res := range out.GetRecords() {
			i := pending[j]
			switch {
			case res.GetErrorCode() == "":
				acks[i] = ackedRecord{key: entries[i].GetPartitionKey(), data: string(entries[i].GetData()),
					shardID: res.GetShardId(), seq: res.GetSequenceNumber()}
			case client.IsRetryableRecordError(res.GetErrorCode()):
				still = append(still, i)
			default:
				return nil, fmt.Errorf("%w: record %q: %s: %s", errWriteRefused, entries[i].GetPartitionKey(), res.GetErrorCode(), res.GetErrorMessage())
			}
		}
		if len(still) > 0 {
			onRetry(fmt.Errorf("%d of %d records failed, first with %s", len(still), len(pending),
				out.GetRecords()[indexOf(pending, still[0])].GetErrorCode()))
		} else {
			backoff = 50 * time.Millisecond
		}
		pending = still
	}
	return acks, nil
}

func indexOf(xs []int, x int) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// readShard reads a whole shard through one node from TRIM_HORIZON until an
// empty answer at the tip. Throttling (five GetRecords a second per shard,
// shared by every reader) and unavailability are waited out; any other error
// is returned.
func readShard(ctx context.Context, c rifflev1.StreamsClient, stream, shardID string) ([]storedRecord, error) {
	var it string
	err := retryCall(ctx, func(ctx context.Context) error {
		out, err := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: stream, ShardId: shardID,
			ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON})
		it = out.GetShardIterator()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("GetShardIterator %s: %w", shardID, err)
	}
	var records []storedRecord
	for it != "" {
		var out *rifflev1.GetRecordsResponse
		err := retryCall(ctx, func(ctx context.Context) error {
			var err error
			out, err = c.GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: it})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("GetRecords %s after %d records: %w", shardID, len(records), err)
		}
		for _, r := range out.GetRecords() {
			records = append(records, storedRecord{seq: r.GetSequenceNumber(), key: r.GetPartitionKey(),
				data: string(r.GetData()), arrivalMs: r.GetApproximateArrivalTimestamp().AsTime().UnixMilli()})
		}
		if len(out.GetRecords()) == 0 && out.GetMillisBehindLatest() == 0 {
			break
		}
		it = out.GetNextShardIterator()
	}
	return records, nil
}

// retryCall runs one call, again after the delay the broker asks for while
// it fails with a retryable error. For a write that can store it twice,
// which checkShard allows for.
func retryCall(ctx context.Context, call func(context.Context) error) error {
	for {
		callCtx, cancel := context.WithTimeout(ctx, callTimeout)
		err := call(callCtx)
		cancel()
		if err == nil || !client.IsRetryable(err) || ctx.Err() != nil {
			return err
		}
		delay, ok := client.RetryDelay(err)
		if !ok {
			delay = 200 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
	}
}

// readStream reads every shard of a stream through one node.
func readStream(ctx context.Context, c rifflev1.StreamsClient, stream string, shards []*rifflev1.Shard) (map[string][]storedRecord, error) {
	out := map[string][]storedRecord{}
	for _, s := range shards {
		records, err := readShard(ctx, c, stream, s.GetShardId())
		if err != nil {
			return nil, err
		}
		out[s.GetShardId()] = records
	}
	return out, nil
}

// checkShard checks one shard as a node served it against what the writers
// know: sequence numbers strictly increasing; nothing that was never sent
// (written holds the data of every record sent, acknowledged or not); every
// acknowledged record of the shard at its acknowledged sequence number, with
// its key and data. Records sent but never acknowledged may be there or not
// (a retry whose first outcome was unknown may even store one twice).
//
// The error is a *shardMismatch; a node that is only behind (acknowledged
// records missing, nothing else wrong) may still catch up.
func checkShard(got []storedRecord, acked []ackedRecord, written map[string]bool) error {
	var problems []string
	wrong := false
	bySeq := make(map[string]storedRecord, len(got))
	var prev *big.Int
	for _, r := range got {
		seq, ok := new(big.Int).SetString(r.seq, 10)
		if !ok {
			problems = append(problems, fmt.Sprintf("sequence number %q is not a decimal", r.seq))
			wrong = true
			continue
		}
		if prev != nil && seq.Cmp(prev) <= 0 {
			problems = append(problems, fmt.Sprintf("sequence %s after %s: not strictly increasing", r.seq, prev))
			wrong = true
		}
		prev = seq
		if !written[r.data] {
			problems = append(problems, fmt.Sprintf("record %v was never written", r))
			wrong = true
		}
		bySeq[r.seq] = r
	}
	missing := 0
	for _, a := range acked {
		r, ok := bySeq[a.seq]
		switch {
		case !ok:
			missing++
			if missing <= 5 {
				problems = append(problems, fmt.Sprintf("acknowledged record %q (seq %s) is missing", a.data, a.seq))
			}
		case r.key != a.key || r.data != a.data:
			problems = append(problems, fmt.Sprintf("seq %s holds %v, acknowledged as key %q data %q", a.seq, r, a.key, a.data))
			wrong = true
		}
	}
	if missing > 5 {
		problems = append(problems, fmt.Sprintf("... %d acknowledged records missing in all", missing))
	}
	if len(problems) > 10 {
		problems = append(problems[:10], fmt.Sprintf("... %d problems in all", len(problems)))
	}
	if len(problems) > 0 {
		return &shardMismatch{onlyBehind: !wrong, msg: fmt.Sprintf("%d records read, %d acknowledged:\n  %s",
			len(got), len(acked), strings.Join(problems, "\n  "))}
	}
	return nil
}

// shardMismatch is what checkShard found wrong with a shard.
type shardMismatch struct {
	onlyBehind bool // acknowledged records missing, and nothing else wrong
	msg        string
}

func (e *shardMismatch) Error() string { return e.msg }

// checkStream checks every shard of a stream as one node served it, failing
// the test at once on anything but missing records, which are returned as
// an error for the caller to poll on.
func checkStream(t *testing.T, node string, got map[string][]storedRecord, shards []*rifflev1.Shard,
	acked map[string][]ackedRecord, written map[string]bool) error {
	t.Helper()
	for _, s := range shards {
		err := checkShard(got[s.GetShardId()], acked[s.GetShardId()], written)
		var mismatch *shardMismatch
		if errors.As(err, &mismatch) && !mismatch.onlyBehind {
			t.Fatalf("%s as served by %s: %v", s.GetShardId(), node, err)
		}
		if err != nil {
			return fmt.Errorf("%s through %s: %w", s.GetShardId(), node, err)
		}
	}
	return nil
}

// ackedByShard groups acknowledgements by shard, in acknowledgement order.
func ackedByShard(acks []ackedRecord) map[string][]ackedRecord {
	out := map[string][]ackedRecord{}
	for _, a := range acks {
		out[a.shardID] = append(out[a.shardID], a)
	}
	return out
}

// sameOnEveryNode compares what the nodes served, shard by shard: the same
// sequence numbers, keys, data and arrival times (set once by the leader
// inside the replicated entry), in the same order. A node whose records are
// a prefix of another's is only behind, and gets an error to poll on; two
// nodes with different records at the same position fail the test at once.
func sameOnEveryNode(t *testing.T, reads map[string]map[string][]storedRecord, shards []*rifflev1.Shard) error {
	t.Helper()
	first := clusterNodes[0].service
	for _, s := range shards {
		id := s.GetShardId()
		want := reads[first][id]
		for _, n := range clusterNodes[1:] {
			got := reads[n.service][id]
			i := firstDifference(want, got)
			if i < 0 {
				continue
			}
			msg := fmt.Sprintf("%s differs between %s (%d records) and %s (%d records) from record %d: %s vs %s",
				id, first, len(want), n.service, len(got), i, recordAt(want, i), recordAt(got, i))
			if i < len(want) && i < len(got) {
				t.Fatal(msg)
			}
			return errors.New(msg)
		}
	}
	return nil
}

// waitEveryNodeServes polls every node until each serves every acknowledged
// record where it was acknowledged and all serve identical shards. Writes
// whose outcome the writer never learned (a call cut short) may still be
// applying on some replica, hence the polling even once every ack is in.
func (c *cluster) waitEveryNodeServes(stream string, shards []*rifflev1.Shard, acks []ackedRecord, written map[string]bool) {
	c.t.Helper()
	byShard := ackedByShard(acks)
	eventually(c.t, catchUpTimeout, "every node serving every acknowledged record, all alike", func() error {
		reads := map[string]map[string][]storedRecord{}
		for _, n := range clusterNodes {
			got, err := readStream(context.Background(), c.streams(n.service), stream, shards)
			if err != nil {
				return fmt.Errorf("through %s: %w", n.service, err)
			}
			if err := checkStream(c.t, n.service, got, shards, byShard, written); err != nil {
				return err
			}
			reads[n.service] = got
		}
		return sameOnEveryNode(c.t, reads, shards)
	})
}

func firstDifference(a, b []storedRecord) int {
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return -1
}

func recordAt(rs []storedRecord, i int) string {
	if i < len(rs) {
		return rs[i].String()
	}
	return "(none)"
}

// shardForKey is the shard whose hash-key range holds MD5(key), the routing
// rule of DESIGN.md.
func shardForKey(shards []*rifflev1.Shard, key string) (string, error) {
	sum := md5.Sum([]byte(key))
	h := new(big.Int).SetBytes(sum[:])
	for _, s := range shards {
		lo, ok1 := new(big.Int).SetString(s.GetHashKeyRange().GetStartingHashKey(), 10)
		hi, ok2 := new(big.Int).SetString(s.GetHashKeyRange().GetEndingHashKey(), 10)
		if !ok1 || !ok2 {
			return "", fmt.Errorf("shard %s has a bad hash-key range %v", s.GetShardId(), s.GetHashKeyRange())
		}
		if h.Cmp(lo) >= 0 && h.Cmp(hi) <= 0 {
			return s.GetShardId(), nil
		}
	}
	return "", fmt.Errorf("no shard holds hash key %s of %q", h, key)
}
