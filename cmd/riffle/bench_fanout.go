package main

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// The fan-out bench measures put-to-push latency: producers put records at
// a fixed rate (open loop: each record has an intended send time, and
// latency counts from it, so a stalled broker cannot hide behind a stalled
// producer), registered consumers subscribe to every shard, and each
// consumer checks that it gets every acknowledged record once and in order.
//
// A record's data starts with a header: the run id (8 bytes), the intended
// send time (unix ns, 8 bytes) and the record's number in the run (8 bytes).
// Records of other runs are ignored.
const fanoutHeaderLen = 24

// fanoutReport is the result of a fan-out bench and its --json shape.
type fanoutReport struct {
	Stream         string  `json:"stream"`
	Shards         int     `json:"shards"`
	Consumers      int     `json:"consumers"`
	Rate           int     `json:"rate"`
	RecordSize     int     `json:"record_size"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	Interrupted    bool    `json:"interrupted"`
	Attempted      uint64  `json:"attempted"`
	Acked          uint64  `json:"acked"`
	// FailedPuts counts puts that got an error, by exception name.
	FailedPuts map[string]uint64 `json:"failed_puts"`
	// Per consumer: records received, acknowledged records never received,
	// records received twice, and records out of order within a shard.
	Received   []uint64 `json:"received"`
	Missing    []uint64 `json:"missing"`
	Duplicates []uint64 `json:"duplicates"`
	OutOfOrder []uint64 `json:"out_of_order"`
	// KeyOutOfOrder counts, per consumer, records delivered after a record
	// of the same partition key with a higher sequence number: across a
	// split or merge, a key's records in a parent must all come first.
	KeyOutOfOrder []uint64 `json:"key_out_of_order"`
	// KeyOrderViolations counts acknowledged puts whose sequence number is
	// below that of a put of the same key acknowledged before they were
	// sent (real-time order per key, across the lineage).
	KeyOrderViolations uint64 `json:"key_order_violations"`
	// Subscriptions made by the consumers' subscribers, and how many of
	// them ended in an error rather than at their lifetime's end.
	Subscriptions        int64 `json:"subscriptions"`
	SubscriptionFailures int64 `json:"subscription_failures"`
	// Reshards are the splits and merges made during the run.
	Reshards     []reshardReport `json:"reshards,omitempty"`
	ReshardError string          `json:"reshard_error,omitempty"`
	// Latencies in milliseconds: put acknowledgement, and put (intended
	// send time) to the consumer receiving the record.
	AckLatency     latencyReport `json:"ack_latency_ms"`
	PutToPush      latencyReport `json:"put_to_push_latency_ms"`
	SubscribeError string        `json:"subscribe_error,omitempty"`
}

// fanoutConsumer is one registered consumer's view of the run.
type fanoutConsumer struct {
	arn string

	mu            sync.Mutex
	seen          map[uint64]bool   // record numbers received
	lastSeq       map[string]string // shard -> last sequence number received
	lastKeySeq    map[string]string // partition key -> last sequence number received
	latency       Histogram
	received      uint64
	duplicates    uint64
	outOfOrder    uint64
	keyOutOfOrder uint64
}

func (c *benchVerb) runFanout(ctx context.Context, cl *client.Client, std stdio) error {
	streams := cl.Streams()
	var runID [8]byte
	crand.Read(runID[:])
	shards, err := openShards(ctx, &c.connFlags, streams, c.stream)
	if err != nil {
		return err
	}
	consumers, err := c.registerBenchConsumers(ctx, streams, runID, std.err)
	defer c.deregisterBenchConsumers(streams, consumers)
	if err != nil {
		return err
	}
	fmt.Fprintf(std.err, "riffle: fan-out bench on stream %s: %d shards, %d consumers, %d records/s of %d bytes, for %s\n",
		c.stream, len(shards), len(consumers), c.rate, c.recordSize, c.duration)

	// Each consumer receives the open shards through one SDK subscriber,
	// which follows child shards after their parents (a split or merge
	// during the run, --split-after and --merge-after). Subscriptions start
	// at the run's start time, so they see every record of the run
	// whenever they get going; records of earlier runs are skipped by run
	// id.
	startAt := time.Now().Add(-time.Second)
	subCtx, stopSubs := context.WithCancel(context.WithoutCancel(ctx))
	var subs sync.WaitGroup
	var subscriptions, subFailures atomic.Int64
	subErr := make(chan error, len(consumers))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, con := range consumers {
		subs.Go(func() {
			sub := client.NewShardsSubscriber(cl, con.arn, shards, client.AtTimestamp(startAt), client.SubscriberConfig{Logger: quiet})
			defer func() {
				sub.Close()
				st := sub.Stats()
				subscriptions.Add(st.Subscriptions)
				subFailures.Add(st.Failures)
			}()
			for {
				b, err := sub.Next(subCtx)
				if err != nil {
					if subCtx.Err() == nil {
						subErr <- fmt.Errorf("%s: %w", con.arn, err)
					}
					return
				}
				con.receive(b.ShardID, b.Records, runID)
			}
		})
	}
	defer func() {
		stopSubs()
		subs.Wait()
	}()

	p := &fanoutProducer{streams: streams, stream: c.stream, runID: runID, recordSize: c.recordSize, timeout: c.timeout,
		keys: benchKeys(c.keyCount), newPicker: c.newKeyPicker, failed: map[string]uint64{}}
	start := time.Now()
	var reshards []*reshardEvent
	var reshardErr error
	reshardsDone := make(chan struct{})
	go func() {
		defer close(reshardsDone)
		reshards, reshardErr = c.runReshards(ctx, streams, start, std.err)
	}()
	interrupted := p.run(ctx, c.rate, c.duration, c.inFlight*c.producers, consumers, std.err)
	elapsed := time.Since(start)
	<-reshardsDone

	// Wait for the consumers to drain what was acknowledged.
	acked := p.ackedSet()
	drainUntil := time.Now().Add(10 * time.Second)
	var firstSubErr error
	for !interrupted && time.Now().Before(drainUntil) && firstSubErr == nil {
		if allReceived(consumers, acked) {
			break
		}
		select {
		case firstSubErr = <-subErr:
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			interrupted = true
		}
	}
	stopSubs()
	subs.Wait()
	if firstSubErr == nil {
		select {
		case firstSubErr = <-subErr:
		default:
		}
	}

	r := fanoutReport{Stream: c.stream, Shards: len(shards), Consumers: len(consumers), Rate: c.rate, RecordSize: c.recordSize,
		ElapsedSeconds: elapsed.Seconds(), Interrupted: interrupted, Attempted: p.attempted, Acked: uint64(len(acked)),
		FailedPuts: p.failed, AckLatency: latencies(&p.latency)}
	r.Subscriptions, r.SubscriptionFailures = subscriptions.Load(), subFailures.Load()
	if firstSubErr != nil {
		r.SubscribeError = firstSubErr.Error()
	}
	r.KeyOrderViolations = p.realTimeViolations()
	r.Reshards = p.reshardReports(reshards, start)
	if reshardErr != nil {
		r.ReshardError = reshardErr.Error()
	}
	var push Histogram
	for _, con := range consumers {
		con.mu.Lock()
		missing := uint64(0)
		for n := range acked {
			if !con.seen[n] {
				missing++
			}
		}
		r.Received = append(r.Received, con.received)
		r.Missing = append(r.Missing, missing)
		r.Duplicates = append(r.Duplicates, con.duplicates)
		r.OutOfOrder = append(r.OutOfOrder, con.outOfOrder)
		r.KeyOutOfOrder = append(r.KeyOutOfOrder, con.keyOutOfOrder)
		push.Merge(&con.latency)
		con.mu.Unlock()
	}
	r.PutToPush = latencies(&push)
	switch {
	case c.json:
		err = writeJSON(std.out, r)
	case c.csv:
		err = writeCSV(std.out, r.csvRow(c))
	default:
		err = writeFanoutReport(std.out, r)
	}
	if err != nil {
		return err
	}
	for i := range r.Missing {
		if r.Missing[i] > 0 || r.Duplicates[i] > 0 || r.OutOfOrder[i] > 0 || r.KeyOutOfOrder[i] > 0 {
			return &exitError{code: exitFailure, msg: fmt.Sprintf("consumer %d: %d missing, %d duplicates, %d out of order in a shard, %d out of order for a key",
				i, r.Missing[i], r.Duplicates[i], r.OutOfOrder[i], r.KeyOutOfOrder[i])}
		}
	}
	if r.KeyOrderViolations > 0 {
		return &exitError{code: exitFailure, msg: fmt.Sprintf("%d puts got a lower sequence number than a put of the same key acknowledged before they began", r.KeyOrderViolations)}
	}
	if r.ReshardError != "" {
		return &exitError{code: exitFailure, msg: "resharding: " + r.ReshardError}
	}
	if r.Acked == 0 {
		return &exitError{code: exitFailure, msg: "no record was acknowledged"}
	}
	return nil
}

func latencies(h *Histogram) latencyReport {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return latencyReport{P50: ms(h.Quantile(0.50)), P90: ms(h.Quantile(0.90)), P99: ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)), Max: ms(h.Max())}
}

func allReceived(consumers []*fanoutConsumer, acked map[uint64]bool) bool {
	for _, con := range consumers {
		con.mu.Lock()
		for n := range acked {
			if !con.seen[n] {
				con.mu.Unlock()
				return false
			}
		}
		con.mu.Unlock()
	}
	return true
}

// openShards lists the ids of the stream's open shards.
func openShards(ctx context.Context, conn *connFlags, streams rifflev1.StreamsClient, stream string) ([]string, error) {
	shards, err := listAllShards(ctx, conn, streams, stream)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, sh := range shards {
		if sh.GetSequenceNumberRange().GetEndingSequenceNumber() == "" {
			out = append(out, sh.GetShardId())
		}
	}
	return out, nil
}

// registerBenchConsumers registers --consumers consumers named after the
// run and waits until they are ACTIVE.
func (c *benchVerb) registerBenchConsumers(ctx context.Context, streams rifflev1.StreamsClient, runID [8]byte, progress io.Writer) ([]*fanoutConsumer, error) {
	var out []*fanoutConsumer
	for i := range c.consumers {
		name := fmt.Sprintf("bench-%x-%d", runID[:4], i)
		callCtx, cancel := c.call(ctx)
		resp, err := streams.RegisterStreamConsumer(callCtx, &rifflev1.RegisterStreamConsumerRequest{StreamName: c.stream, ConsumerName: name})
		cancel()
		if err != nil {
			return out, fmt.Errorf("register consumer %s: %w", name, err)
		}
		out = append(out, &fanoutConsumer{arn: resp.GetConsumer().GetConsumerArn(), seen: map[uint64]bool{},
			lastSeq: map[string]string{}, lastKeySeq: map[string]string{}})
	}
	deadline := time.Now().Add(c.timeout)
	for _, con := range out {
		for {
			callCtx, cancel := c.call(ctx)
			d, err := streams.DescribeStreamConsumer(callCtx, &rifflev1.DescribeStreamConsumerRequest{ConsumerArn: con.arn})
			cancel()
			if err != nil {
				return out, err
			}
			if d.GetConsumerDescription().GetConsumerStatus() == rifflev1.ConsumerStatus_CONSUMER_STATUS_ACTIVE {
				break
			}
			if time.Now().After(deadline) {
				return out, fmt.Errorf("consumer %s not ACTIVE after %v", con.arn, c.timeout)
			}
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return out, ctx.Err()
			}
		}
	}
	fmt.Fprintf(progress, "riffle: %d consumers registered\n", len(out))
	return out, nil
}

func (c *benchVerb) deregisterBenchConsumers(streams rifflev1.StreamsClient, consumers []*fanoutConsumer) {
	for _, con := range consumers {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		_, _ = streams.DeregisterStreamConsumer(ctx, &rifflev1.DeregisterStreamConsumerRequest{ConsumerArn: con.arn})
		cancel()
	}
}

// receive checks and counts one event's records.
func (con *fanoutConsumer) receive(shard string, recs []*rifflev1.Record, runID [8]byte) {
	now := time.Now()
	con.mu.Lock()
	defer con.mu.Unlock()
	for _, r := range recs {
		if last := con.lastSeq[shard]; last != "" && !seqLess(last, r.GetSequenceNumber()) {
			con.outOfOrder++
		}
		con.lastSeq[shard] = r.GetSequenceNumber()
		key := r.GetPartitionKey()
		if last := con.lastKeySeq[key]; last != "" && !seqLess(last, r.GetSequenceNumber()) {
			con.keyOutOfOrder++
		}
		con.lastKeySeq[key] = r.GetSequenceNumber()
		d := r.GetData()
		if len(d) < fanoutHeaderLen || string(d[:8]) != string(runID[:]) {
			continue
		}
		sent := time.Unix(0, int64(binary.BigEndian.Uint64(d[8:16])))
		n := binary.BigEndian.Uint64(d[16:24])
		if con.seen[n] {
			con.duplicates++
			continue
		}
		con.seen[n] = true
		con.received++
		con.latency.Record(now.Sub(sent))
	}
}

// seqLess compares two decimal sequence numbers.
func seqLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// fanoutProducer puts records at a fixed rate.
type fanoutProducer struct {
	streams    rifflev1.StreamsClient
	stream     string
	runID      [8]byte
	recordSize int
	timeout    time.Duration

	// keys, when set, are the partition keys to pick from (--key-count);
	// otherwise each record gets a fresh random key. Each worker picks
	// with a picker of its own (--keys).
	keys      []string
	newPicker func([]string) *keyPicker

	mu        sync.Mutex
	attempted uint64
	acked     []uint64
	puts      []putRecord // every acknowledged put, for the order and reshard checks
	failures  []time.Time // when each failed put was sent
	failed    map[string]uint64
	latency   Histogram
}

// putRecord is one acknowledged put.
type putRecord struct {
	key       string
	shard     string
	seq       string
	sent, ack time.Time
}

// run puts rate records per second for d with up to workers calls in
// flight, printing progress each second; it reports whether ctx ended it.
func (p *fanoutProducer) run(ctx context.Context, rate int, d time.Duration, workers int, consumers []*fanoutConsumer, progress io.Writer) bool {
	type job struct {
		n    uint64
		when time.Time
	}
	jobs := make(chan job, rate) // a second of backlog, then the schedule slips
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			keys := p.newPicker(p.keys)
			for j := range jobs {
				p.put(ctx, keys, j.n, j.when)
			}
		})
	}
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	total := uint64(d / interval)
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	interrupted := false
	for n := uint64(0); n < total && !interrupted; n++ {
		when := start.Add(time.Duration(n) * interval)
		if wait := time.Until(when); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				interrupted = true
				continue
			}
		}
		select {
		case <-ticker.C:
			p.mu.Lock()
			acked := len(p.acked)
			p.mu.Unlock()
			var received uint64
			for _, con := range consumers {
				con.mu.Lock()
				received += con.received
				con.mu.Unlock()
			}
			fmt.Fprintf(progress, "%6s %8d acked %10d received by %d consumers\n", time.Since(start).Round(time.Second), acked, received, len(consumers))
		default:
		}
		select {
		case jobs <- job{n: n, when: when}:
		case <-ctx.Done():
			interrupted = true
		}
	}
	close(jobs)
	wg.Wait()
	return interrupted
}

func (p *fanoutProducer) put(ctx context.Context, keys *keyPicker, n uint64, when time.Time) {
	data := make([]byte, max(p.recordSize, fanoutHeaderLen))
	copy(data, p.runID[:])
	binary.BigEndian.PutUint64(data[8:], uint64(when.UnixNano()))
	binary.BigEndian.PutUint64(data[16:], n)
	key := keys.next()
	sent := time.Now()
	callCtx, cancel := context.WithTimeout(ctx, p.timeout)
	resp, err := p.streams.PutRecord(callCtx, &rifflev1.PutRecordRequest{StreamName: p.stream, PartitionKey: key, Data: data})
	cancel()
	ack := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempted++
	if err != nil {
		p.failed[errorName(err)]++
		p.failures = append(p.failures, sent)
		return
	}
	p.acked = append(p.acked, n)
	p.puts = append(p.puts, putRecord{key: key, shard: resp.GetShardId(), seq: resp.GetSequenceNumber(), sent: sent, ack: ack})
	p.latency.Record(ack.Sub(when))
}

func (p *fanoutProducer) ackedSet() map[uint64]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[uint64]bool, len(p.acked))
	for _, n := range p.acked {
		out[n] = true
	}
	return out
}

func writeFanoutReport(w io.Writer, r fanoutReport) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	if r.Interrupted {
		fmt.Fprintf(tw, "interrupted\tafter %.1fs\n", r.ElapsedSeconds)
	}
	fmt.Fprintf(tw, "puts\t%d attempted, %d acknowledged in %.1fs (%d/s asked), failed: %v\n", r.Attempted, r.Acked, r.ElapsedSeconds, r.Rate, r.FailedPuts)
	for i := range r.Received {
		fmt.Fprintf(tw, "consumer %d\t%d received, %d missing, %d duplicates, %d out of order\n", i, r.Received[i], r.Missing[i], r.Duplicates[i], r.OutOfOrder[i])
	}
	fmt.Fprintf(tw, "subscriptions\t%d, %d ended in an error\n", r.Subscriptions, r.SubscriptionFailures)
	fmt.Fprintf(tw, "per-key order\t%d puts below an earlier acknowledged put of their key; consumers: %v out of order\n", r.KeyOrderViolations, r.KeyOutOfOrder)
	for _, rs := range r.Reshards {
		fmt.Fprintf(tw, "%s\t%s -> %s at %.1fs: call %s, first write acknowledged by a child %s after the call\n",
			rs.Kind, strings.Join(rs.Parents, "+"), strings.Join(rs.Children, "+"), rs.AtSeconds, fmtMillis(rs.CallMillis), fmtMillis(rs.FirstChildAckMillis))
		fmt.Fprintf(tw, "\taffected keys' puts sent in the switch: %d, ack p50 %s  p99 %s  max %s (run p50 %s), %d puts failed then\n",
			rs.AffectedPuts, fmtMillis(rs.AffectedAck.P50), fmtMillis(rs.AffectedAck.P99), fmtMillis(rs.AffectedAck.Max), fmtMillis(r.AckLatency.P50), rs.FailedPuts)
	}
	if r.ReshardError != "" {
		fmt.Fprintf(tw, "reshard error\t%s\n", r.ReshardError)
	}
	fmt.Fprintf(tw, "ack latency\tp50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		fmtMillis(r.AckLatency.P50), fmtMillis(r.AckLatency.P90), fmtMillis(r.AckLatency.P99), fmtMillis(r.AckLatency.P999), fmtMillis(r.AckLatency.Max))
	fmt.Fprintf(tw, "put-to-push latency\tp50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		fmtMillis(r.PutToPush.P50), fmtMillis(r.PutToPush.P90), fmtMillis(r.PutToPush.P99), fmtMillis(r.PutToPush.P999), fmtMillis(r.PutToPush.Max))
	if r.SubscribeError != "" {
		fmt.Fprintf(tw, "subscribe error\t%s\n", r.SubscribeError)
	}
	return tw.Flush()
}
