package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/riffle-streams/riffle/cluster"
	"github.com/riffle-streams/riffle/node"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// Per-shard limits (DESIGN.md): Kinesis's numbers by default, measured here
// over several seconds after the first second's burst, and the errors a
// throttled caller gets.

// rateTolerance is how far a measured rate may be from its limit.
const rateTolerance = 0.05

func int64p(v int64) *int64 { return &v }

// limitedNode starts one node with Kinesis's limits as the cluster default.
func limitedNode(t *testing.T) *testNode {
	t.Helper()
	return startNodeConfig(t, node.Config{DataDir: tempDataDir(t), ShardLimits: cluster.KinesisLimits})
}

// createLimitedStream creates a stream with its own limits and waits until
// it is ACTIVE.
func createLimitedStream(t testing.TB, c rifflev1.StreamsClient, name string, shards int32, limits *rifflev1.ShardLimits) {
	t.Helper()
	if _, err := c.CreateStream(context.Background(), &rifflev1.CreateStreamRequest{StreamName: name, ShardCount: shards, ShardLimits: limits}); err != nil {
		t.Fatalf("CreateStream %s: %v", name, err)
	}
	waitActive(t, c, name)
}

// throttleInfo is what a throttled call's status says.
type throttleInfo struct {
	code       codes.Code
	reason     string
	retryable  string
	outcome    string
	retryAfter time.Duration
}

func throttleInfoOf(err error) throttleInfo {
	st, _ := status.FromError(err)
	ti := throttleInfo{code: st.Code()}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			ti.reason, ti.retryable, ti.outcome = d.Reason, d.Metadata["retryable"], d.Metadata["outcome"]
		case *errdetails.RetryInfo:
			ti.retryAfter = d.RetryDelay.AsDuration()
		}
	}
	return ti
}

// check reports what a throttled call must carry: RESOURCE_EXHAUSTED,
// ProvisionedThroughputExceededException, safe to retry, and a delay.
func (ti throttleInfo) check() error {
	if ti.code != codes.ResourceExhausted || ti.reason != "ProvisionedThroughputExceededException" ||
		ti.retryable != "true" || ti.outcome != "not_applied" || ti.retryAfter <= 0 {
		return fmt.Errorf("throttled call answered %+v", ti)
	}
	return nil
}

// acceptance is one acknowledged call: when, and how much it carried.
type acceptance struct {
	at             time.Time
	records, bytes int
}

// acceptLog collects acknowledgements from concurrent clients.
type acceptLog struct {
	mu     sync.Mutex
	events []acceptance
	errs   []error
}

func (l *acceptLog) add(records, bytes int) {
	l.mu.Lock()
	l.events = append(l.events, acceptance{time.Now(), records, bytes})
	l.mu.Unlock()
}

func (l *acceptLog) fail(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

// records is how many records were acknowledged.
func (l *acceptLog) records() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		n += e.records
	}
	return n
}

// callRate measures admissions that each leave a bucket empty (reads): the
// records and bytes of every admitted call from the first after `from` up
// to, not including, the last, over the time between those two, and the
// number of calls.
func (l *acceptLog) callRate(from time.Time) (calls, bytes float64, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var in []acceptance
	for _, e := range l.events {
		if !e.at.Before(from) {
			in = append(in, e)
		}
	}
	if len(in) < 2 {
		return 0, 0, len(in)
	}
	secs := in[len(in)-1].at.Sub(in[0].at).Seconds()
	var b int
	for _, e := range in[:len(in)-1] {
		b += e.bytes
	}
	return float64(len(in)-1) / secs, float64(b) / secs, len(in)
}

func (l *acceptLog) failures() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.errs...)
}

// produce runs producers that put batches of new records of size bytes as
// fast as the shard takes them, until ctx ends: PutRecords calls spread
// over clients, a short pause after a call with throttled records (as an
// SDK backs off), nothing retried. Calls in flight when ctx ends finish, so
// that l holds every record written. Any failure other than throttling is
// logged to l.
func produce(ctx context.Context, clients []rifflev1.StreamsClient, stream string, producers, batch, size int, l *acceptLog) {
	var wg sync.WaitGroup
	data := make([]byte, size)
	for p := range producers {
		c := clients[p%len(clients)]
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				req := &rifflev1.PutRecordsRequest{StreamName: stream}
				for i := range batch {
					req.Records = append(req.Records, &rifflev1.PutRecordsRequestEntry{PartitionKey: fmt.Sprintf("%d-%d-%d", p, n, i), Data: data})
				}
				callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				out, err := c.PutRecords(callCtx, req)
				cancel()
				if err != nil {
					l.fail(err)
					return
				}
				records, bytes, throttled := 0, 0, false
				for i, r := range out.Records {
					switch r.ErrorCode {
					case "":
						if throttled {
							l.fail(fmt.Errorf("record %d acknowledged after a throttled one in the same call", i))
						}
						records++
						bytes += len(req.Records[i].PartitionKey) + len(req.Records[i].Data)
					case "ProvisionedThroughputExceededException":
						throttled = true
					default:
						l.fail(fmt.Errorf("PutRecords entry %d: %s: %s", i, r.ErrorCode, r.ErrorMessage))
					}
				}
				if records > 0 {
					l.add(records, bytes)
				}
				if throttled {
					select {
					case <-ctx.Done():
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		})
	}
	wg.Wait()
}

// measureWrites runs produce against shard 0 of stream for a burst second
// plus five, and returns the records and bytes per second the shard took
// over the last five. The rates are counted from the records' arrival
// timestamps, which the leader sets as it appends them, so the latency of
// the acknowledgements does not blur the edges of the window; every
// acknowledged record must be there. The stream's reads must be unlimited.
func measureWrites(t *testing.T, clients []rifflev1.StreamsClient, stream string, batch, size int) (float64, float64) {
	t.Helper()
	const burst, window = time.Second, 5 * time.Second
	l := &acceptLog{}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), burst+window+300*time.Millisecond)
	defer cancel()
	produce(ctx, clients, stream, 4, batch, size, l)
	if err := l.failures(); err != nil {
		t.Fatal(err)
	}
	stored := readShard(t, clients[0], stream, "shardId-000000000000")
	if acked := l.records(); len(stored) != acked {
		t.Fatalf("the shard holds %d records, %d were acknowledged", len(stored), acked)
	}
	from, to := start.Add(burst).UnixMilli(), start.Add(burst+window).UnixMilli()
	var records, bytes int
	for _, r := range stored {
		if at := r.ApproximateArrivalTimestamp.AsTime().UnixMilli(); at >= from && at < to {
			records++
			bytes += len(r.PartitionKey) + len(r.Data)
		}
	}
	return float64(records) / window.Seconds(), float64(bytes) / window.Seconds()
}

// unlimitedReads are limits that keep the cluster's write limits and lift
// the read limits, so that a test can read back at once what it wrote.
func unlimitedReads() *rifflev1.ShardLimits {
	return &rifflev1.ShardLimits{ReadCallsPerSecond: int64p(0), ReadBytesPerSecond: int64p(0)}
}

func within(got, want float64) bool { return math.Abs(got/want-1) <= rateTolerance }

// TestWriteLimitsHold checks that a shard's write limits hold: with
// producers putting as fast as they can, the records acknowledged per
// second after the first second stay within 5% of 1000 (512-byte records:
// the records limit binds, the bytes limit alone would let twice as many
// through; at 1 KiB the two limits nearly coincide and could not be told
// apart) and the bytes within 5% of 1 MiB (8 KiB records: 128 a second, the
// bytes limit binds). Every refused record is reported as
// ProvisionedThroughputExceededException, and only ever after the last
// accepted record of its call.
func TestWriteLimitsHold(t *testing.T) {
	if testing.Short() {
		t.Skip("measures rates over several seconds")
	}
	tn := limitedNode(t)
	for _, c := range []struct {
		name        string
		batch, size int
		records     bool // the records limit binds, else the bytes limit
	}{
		{"records", 100, 512, true},
		{"bytes", 50, 8192, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			createLimitedStream(t, tn.client, "w-"+c.name, 1, unlimitedReads())
			records, bytes := measureWrites(t, []rifflev1.StreamsClient{tn.client}, "w-"+c.name, c.batch, c.size)
			t.Logf("%d-byte records: %.1f records/s, %.0f bytes/s (limits %d records/s, %d bytes/s)",
				c.size, records, bytes, cluster.KinesisLimits.WriteRecords, cluster.KinesisLimits.WriteBytes)
			if c.records && !within(records, float64(cluster.KinesisLimits.WriteRecords)) {
				t.Errorf("%.1f records/s, want %d within 5%%", records, cluster.KinesisLimits.WriteRecords)
			}
			if !c.records && !within(bytes, float64(cluster.KinesisLimits.WriteBytes)) {
				t.Errorf("%.0f bytes/s, want %d within 5%%", bytes, cluster.KinesisLimits.WriteBytes)
			}
		})
	}
}

// TestThrottledPutReportsKinesisError checks what a throttled writer gets:
// PutRecord fails with RESOURCE_EXHAUSTED, ErrorInfo
// ProvisionedThroughputExceededException marked retryable and not applied,
// and a RetryInfo delay after which the put is accepted; a PutRecords over
// the remaining budget fails only its tail, with that exception per entry,
// and the shard holds exactly the accepted records at their sequence
// numbers. The throttle metrics count the refusals.
func TestThrottledPutReportsKinesisError(t *testing.T) {
	tn := limitedNode(t)
	c, ctx := tn.client, context.Background()

	// One record a second: the second put in a row is refused.
	createLimitedStream(t, c, "slow", 1, &rifflev1.ShardLimits{WriteRecordsPerSecond: int64p(1)})
	put := func() error {
		_, err := c.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "slow", PartitionKey: "k", Data: []byte("v")})
		return err
	}
	if err := put(); err != nil {
		t.Fatalf("first PutRecord: %v", err)
	}
	ti := throttleInfoOf(put())
	if err := ti.check(); err != nil {
		t.Fatal(err)
	}
	if ti.retryAfter > time.Second {
		t.Errorf("RetryInfo %v, more than the second a token takes", ti.retryAfter)
	}
	waitFor(t, 3*time.Second, "a PutRecord accepted again after RetryInfo", put)

	// A hundred records a second, reads unlimited so that the check reads
	// the shard in one go.
	createLimitedStream(t, c, "tail", 1, &rifflev1.ShardLimits{WriteRecordsPerSecond: int64p(100),
		ReadCallsPerSecond: int64p(0), ReadBytesPerSecond: int64p(0)})
	req := &rifflev1.PutRecordsRequest{StreamName: "tail"}
	for i := range 500 {
		req.Records = append(req.Records, &rifflev1.PutRecordsRequestEntry{PartitionKey: fmt.Sprint(i), Data: []byte(fmt.Sprintf("r%d", i))})
	}
	out, err := c.PutRecords(ctx, req)
	if err != nil {
		t.Fatalf("PutRecords: %v", err)
	}
	admitted := 0
	for admitted < len(out.Records) && out.Records[admitted].ErrorCode == "" {
		admitted++
	}
	for i, r := range out.Records[admitted:] {
		if r.ErrorCode != "ProvisionedThroughputExceededException" || r.ErrorMessage == "" || r.SequenceNumber != "" {
			t.Fatalf("entry %d after the %d accepted: %+v", admitted+i, admitted, r)
		}
	}
	if admitted < 100 || admitted >= 500 || int(out.FailedRecordCount) != 500-admitted {
		t.Fatalf("%d of 500 accepted, %d failed; want the first 100 or a few more accepted, the rest failed", admitted, out.FailedRecordCount)
	}
	t.Logf("PutRecords of 500 at 100 records/s: %d accepted, %d throttled", admitted, out.FailedRecordCount)
	got := readShard(t, c, "tail", "shardId-000000000000")
	if len(got) != admitted {
		t.Fatalf("the shard holds %d records, %d were accepted", len(got), admitted)
	}
	for i, r := range got {
		if r.SequenceNumber != out.Records[i].SequenceNumber || string(r.Data) != fmt.Sprintf("r%d", i) {
			t.Fatalf("record %d: %s %q, accepted as %s %q", i, r.SequenceNumber, r.Data, out.Records[i].SequenceNumber, fmt.Sprintf("r%d", i))
		}
	}

	metrics := adminMetrics(t, tn)
	for _, want := range []string{
		`riffle_throttled_requests_total{operation="PutRecord",shard="shardId-000000000000",stream="slow"}`,
		`riffle_throttled_requests_total{operation="PutRecords",shard="shardId-000000000000",stream="tail"} 1`,
		fmt.Sprintf(`riffle_throttled_bytes_total{operation="PutRecords",shard="shardId-000000000000",stream="tail"} %d`, throttledBytes(req, admitted)),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func throttledBytes(req *rifflev1.PutRecordsRequest, admitted int) int {
	n := 0
	for _, e := range req.Records[admitted:] {
		n += len(e.PartitionKey) + len(e.Data)
	}
	return n
}

func adminMetrics(t *testing.T, tn *testNode) string {
	t.Helper()
	resp, err := http.Get("http://" + tn.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestForwardedWritesShareTheLeadersLimit checks that write limits live at
// the shard's leader: writers on the two other nodes of a three-node
// cluster, whose writes are forwarded, together get 1000 records/s within
// 5%, not 1000 each; and that a forwarded PutRecord that is refused reports
// the same exception and RetryInfo as a local one.
func TestForwardedWritesShareTheLeadersLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("measures rates over several seconds")
	}
	// Raft's default election timeouts: the fast ones of other tests can
	// lose a leadership under this load on a small machine, and a new
	// leader starts with a full bucket.
	steady := shardlog.RaftTiming{CommitTimeout: 5 * time.Millisecond}
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: steady, limits: cluster.KinesisLimits})
	createLimitedStream(t, c.nodes[0].client, "shared", 1, unlimitedReads())
	createLimitedStream(t, c.nodes[0].client, "slow", 1, &rifflev1.ShardLimits{WriteRecordsPerSecond: int64p(1)})
	// A leadership that moves restarts the limit with a full bucket:
	// measure once each shard is led by its preferred replica, where the
	// balancer leaves it.
	shared := preferredLeader(t, c, "shared")
	slow := preferredLeader(t, c, "slow")

	var followers []rifflev1.StreamsClient
	for i, n := range c.nodes {
		if i != shared {
			followers = append(followers, n.client)
		}
	}
	term := leaderTerm(t, c.nodes[shared], "shared")
	records, _ := measureWrites(t, followers, "shared", 100, 1024)
	t.Logf("writers on two followers: %.1f records/s together (limit %d)", records, cluster.KinesisLimits.WriteRecords)
	if after := leaderTerm(t, c.nodes[shared], "shared"); after != term || preferredLeaderNow(c, "shared") != shared {
		t.Fatalf("the shard's leadership changed during the measure (term %s, then %s): the rate says nothing", term, after)
	}
	// What this checks is that the two followers share one budget (apart,
	// they would reach 2000/s). The rate is counted from arrival stamps,
	// taken when the leader's batcher forms an entry after admission; on a
	// loaded CI machine, with three nodes and forwarding, that delay
	// shifted records into the window once (1071/s): 10% here, 5% where a
	// single node writes locally.
	if math.Abs(records/float64(cluster.KinesisLimits.WriteRecords)-1) > 0.10 {
		t.Errorf("%.1f records/s through two followers, want %d within 10%%", records, cluster.KinesisLimits.WriteRecords)
	}

	follower := c.nodes[(slow+1)%3].client
	put := func() error {
		_, err := follower.PutRecord(context.Background(), &rifflev1.PutRecordRequest{StreamName: "slow", PartitionKey: "k", Data: []byte("v")})
		return err
	}
	if err := put(); err != nil {
		t.Fatalf("first forwarded PutRecord: %v", err)
	}
	if err := throttleInfoOf(put()).check(); err != nil {
		t.Fatalf("forwarded PutRecord: %v", err)
	}
}

// leaderTerm is the raft term of n's replica of shard 0 of stream.
func leaderTerm(t *testing.T, n *testNode, stream string) string {
	t.Helper()
	st := n.Host().Meta().State().Streams[stream]
	r, err := n.Host().Shard(st, st.Shards[0])
	if err != nil {
		t.Fatal(err)
	}
	return r.Raft().Stats()["term"]
}

// preferredLeader waits until shard 0 of stream is led by its first
// replica, where leader balancing keeps it, and returns that node's index.
func preferredLeader(t *testing.T, c *testCluster, stream string) int {
	t.Helper()
	leader := -1
	waitFor(t, 30*time.Second, stream+" led by its preferred replica", func() error {
		leader = preferredLeaderNow(c, stream)
		if leader < 0 {
			return errors.New("not yet")
		}
		return nil
	})
	return leader
}

// preferredLeaderNow is the index of the node leading shard 0 of stream if
// that is its first replica, else -1.
func preferredLeaderNow(c *testCluster, stream string) int {
	for i, n := range c.nodes {
		st := n.Host().Meta().State().Streams[stream]
		if st == nil || len(st.Shards[0].Replicas) == 0 || st.Shards[0].Replicas[0] != n.Host().NodeID() {
			continue
		}
		if r, err := n.Host().Shard(st, st.Shards[0]); err == nil && r.IsLeader() {
			return i
		}
	}
	return -1
}

// poll runs readers that follow their own iterators over shard 0 of stream
// until ctx ends, each GetRecords asking for at most limit records. A
// throttled call must carry the Kinesis exception and a RetryInfo delay,
// which the reader then waits (as an SDK does); other failures are logged.
// It returns how many calls were throttled.
func poll(ctx context.Context, c rifflev1.StreamsClient, stream string, readers int, limit int32, l *acceptLog) int {
	var mu sync.Mutex
	throttled := 0
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			it, err := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: stream, ShardId: "shardId-000000000000",
				ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON})
			if err != nil {
				l.fail(err)
				return
			}
			iter := it.ShardIterator
			for ctx.Err() == nil {
				out, err := c.GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: iter, Limit: limit})
				if err != nil {
					if ctx.Err() != nil || status.Code(err) == codes.DeadlineExceeded {
						return
					}
					ti := throttleInfoOf(err)
					if cerr := ti.check(); cerr != nil {
						l.fail(fmt.Errorf("GetRecords: %v: %w", err, cerr))
						return
					}
					mu.Lock()
					throttled++
					mu.Unlock()
					select {
					case <-ctx.Done():
					case <-time.After(ti.retryAfter):
					}
					continue
				}
				bytes := 0
				for _, r := range out.Records {
					bytes += len(r.Data) + len(r.PartitionKey)
				}
				l.add(len(out.Records), bytes)
				iter = out.NextShardIterator
			}
		})
	}
	wg.Wait()
	return throttled
}

// TestGetRecordsLimitsHold checks the classic read limits, shared by every
// poller of a shard on the node serving them: pollers at the tip get 5
// calls a second within 5%, and pollers reading a backlog 2 MiB a second
// within 5% (a call is admitted while the bytes budget is out of debt and
// then charged what it returned); every throttled call carries
// ProvisionedThroughputExceededException and RetryInfo. The
// millis-behind-latest gauge shows the backlog readers behind.
func TestGetRecordsLimitsHold(t *testing.T) {
	if testing.Short() {
		t.Skip("measures rates over several seconds")
	}
	tn := limitedNode(t)
	const burst, window = time.Second, 6 * time.Second
	limits := cluster.KinesisLimits

	t.Run("calls", func(t *testing.T) {
		createStream(t, tn.client, "polled", 1)
		l := &acceptLog{}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), burst+window)
		defer cancel()
		throttled := poll(ctx, tn.client, "polled", 3, 0, l)
		if err := l.failures(); err != nil {
			t.Fatal(err)
		}
		calls, _, n := l.callRate(start.Add(burst))
		t.Logf("3 pollers at the tip: %.2f calls/s over %d calls, %d throttled (limit %d calls/s)", calls, n, throttled, limits.ReadCalls)
		if !within(calls, float64(limits.ReadCalls)) {
			t.Errorf("%.2f GetRecords calls/s, want %d within 5%%", calls, limits.ReadCalls)
		}
		if throttled == 0 {
			t.Error("no call was throttled: the pollers did not press the limit")
		}
	})

	t.Run("bytes", func(t *testing.T) {
		// Writes unlimited to lay down the backlog fast; reads at the
		// cluster default.
		createLimitedStream(t, tn.client, "bulk", 1, &rifflev1.ShardLimits{WriteBytesPerSecond: int64p(0), WriteRecordsPerSecond: int64p(0)})
		data := make([]byte, 64<<10)
		for b := range 5 { // 5 x 64 records of 64 KiB: 20 MiB
			req := &rifflev1.PutRecordsRequest{StreamName: "bulk"}
			for i := range 64 {
				req.Records = append(req.Records, &rifflev1.PutRecordsRequestEntry{PartitionKey: fmt.Sprintf("%d-%d", b, i), Data: data})
			}
			out, err := tn.client.PutRecords(context.Background(), req)
			if err != nil || out.FailedRecordCount != 0 {
				t.Fatalf("writing the backlog: %v, %d failed", err, out.GetFailedRecordCount())
			}
		}
		l := &acceptLog{}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), burst+window)
		defer cancel()
		// 16 records of 64 KiB a call: 1 MiB, so bytes bind before calls.
		throttled := poll(ctx, tn.client, "bulk", 2, 16, l)
		if err := l.failures(); err != nil {
			t.Fatal(err)
		}
		_, bytes, n := l.callRate(start.Add(burst))
		t.Logf("2 pollers of a backlog: %.0f bytes/s over %d calls, %d throttled (limit %d bytes/s)", bytes, n, throttled, limits.ReadBytes)
		if !within(bytes, float64(limits.ReadBytes)) {
			t.Errorf("%.0f bytes/s read, want %d within 5%%", bytes, limits.ReadBytes)
		}
		metrics := adminMetrics(t, tn)
		for _, want := range []string{
			`riffle_throttled_requests_total{operation="GetRecords",shard="shardId-000000000000",stream="bulk"}`,
			`riffle_getrecords_millis_behind_latest{shard="shardId-000000000000",stream="bulk"}`,
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		if strings.Contains(metrics, `riffle_getrecords_millis_behind_latest{shard="shardId-000000000000",stream="bulk"} 0`+"\n") {
			t.Error("readers of a backlog reported 0 millis behind latest")
		}
	})
}

// TestStreamLimitOverrides checks CreateStream's shard_limits: a field set
// to 0 makes that limit unlimited on a node whose default is Kinesis's,
// unset fields keep the default, DescribeStreamSummary reports the limits
// in force, and a negative value is refused with ValidationException
// before anything is created.
func TestStreamLimitOverrides(t *testing.T) {
	tn := limitedNode(t)
	c, ctx := tn.client, context.Background()
	createLimitedStream(t, c, "free", 1, &rifflev1.ShardLimits{WriteRecordsPerSecond: int64p(0)})
	createStream(t, c, "kinesis", 1)

	// 3000 small records at once: three times the records limit, far
	// under the bytes limit.
	accepted := func(stream string) int {
		n := 0
		for b := range 6 {
			req := &rifflev1.PutRecordsRequest{StreamName: stream}
			for i := range 500 {
				req.Records = append(req.Records, &rifflev1.PutRecordsRequestEntry{PartitionKey: fmt.Sprintf("%d-%d", b, i), Data: []byte("x")})
			}
			out, err := c.PutRecords(ctx, req)
			if err != nil {
				t.Fatalf("PutRecords %s: %v", stream, err)
			}
			n += 500 - int(out.FailedRecordCount)
		}
		return n
	}
	if n := accepted("free"); n != 3000 {
		t.Errorf("stream with write_records_per_second 0 accepted %d of 3000 records", n)
	}
	if n := accepted("kinesis"); n >= 3000 {
		t.Errorf("stream at the Kinesis default accepted all 3000 records at once")
	}

	summary := func(stream string) *rifflev1.ShardLimits {
		out, err := c.DescribeStreamSummary(ctx, &rifflev1.DescribeStreamSummaryRequest{StreamName: stream})
		if err != nil {
			t.Fatal(err)
		}
		return out.StreamDescriptionSummary.ShardLimits
	}
	k := cluster.KinesisLimits
	for stream, want := range map[string]cluster.Limits{
		"free":    {WriteBytes: k.WriteBytes, WriteRecords: 0, ReadBytes: k.ReadBytes, ReadCalls: k.ReadCalls, FanOutBytes: k.FanOutBytes},
		"kinesis": k,
	} {
		got := summary(stream)
		if got.GetWriteBytesPerSecond() != want.WriteBytes || got.GetWriteRecordsPerSecond() != want.WriteRecords ||
			got.GetReadBytesPerSecond() != want.ReadBytes || got.GetReadCallsPerSecond() != want.ReadCalls ||
			got.GetFanOutBytesPerSecond() != want.FanOutBytes || got.WriteRecordsPerSecond == nil {
			t.Errorf("%s: DescribeStreamSummary limits %v, want %+v", stream, got, want)
		}
	}

	expectException(t, "negative limit", "ValidationException", codes.InvalidArgument, func() error {
		_, err := c.CreateStream(ctx, &rifflev1.CreateStreamRequest{StreamName: "negative", ShardCount: 1,
			ShardLimits: &rifflev1.ShardLimits{ReadCallsPerSecond: int64p(-1)}})
		return err
	})
	if _, err := c.DescribeStreamSummary(ctx, &rifflev1.DescribeStreamSummaryRequest{StreamName: "negative"}); status.Code(err) != codes.NotFound {
		t.Errorf("a refused CreateStream left a stream behind: %v", err)
	}
}

// adminMetric is the value of an unlabelled metric on tn's /metrics.
func adminMetric(t *testing.T, tn *testNode, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(adminMetrics(t, tn), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics lacks %s", name)
	return 0
}
