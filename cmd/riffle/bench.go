package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// benchKeyLen is the length of a bench partition key: 128 random bits in
// hex, which spread evenly over the hash-key space.
const benchKeyLen = 32

var benchCommand = &command{
	path:     "bench",
	synopsis: "--stream S [--create-shards N] [--create-limits unlimited|cluster] [--producers P] [--in-flight K] [--batch B] [--record-size BYTES] [--duration D] [--keys uniform] [--mode produce|fanout] [--rate R] [--consumers C] [--key-count N] [--split-after D] [--merge-after D]",
	summary:  "measure produce throughput and ack latency",
	details: `
Creates the stream when it is missing and --create-shards is given, waits
until it is ACTIVE, then runs P producers, each with its own connection and
K calls in flight, for --duration: PutRecords of B records (PutRecord when B
is 1) of random data with random partition keys. Nothing is retried:
throttled records (ProvisionedThroughputExceededException) count as errors.
A stream bench creates has no per-shard limits (--create-limits unlimited),
since a benchmark measures the broker, not the limiter; --create-limits
cluster gives it the cluster's default limits instead. A stream that exists
keeps its own.

Progress goes to stderr once a second. At the end it prints records/s,
MiB/s of data, calls, failed records by exception name, and the ack latency
of successful calls (p50, p90, p99, p99.9, max); --json prints them as one
object. Ctrl-C stops early and prints what was measured. Exits 1 when no
record was acknowledged.

--mode fanout measures put-to-push latency instead: it registers
--consumers consumers (deregistered at the end), subscribes each to every
open shard, and puts --rate records per second one by one (PutRecord, open
loop: latency counts from each record's scheduled time, with up to
producers x in-flight calls at once). Each consumer checks that it receives
every acknowledged record once and in order per shard; the report gives ack
and put-to-push latency quantiles, and the run exits 1 on any record
missing, duplicated or out of order.

With --split-after D the fan-out bench splits the first open shard at the
middle of its hash range D into the run, and with --merge-after merges the
two children back; the consumers follow the lineage. The report gives, for
each, the time from the call until a child acknowledged a write and the ack
latency of the affected keys' puts meanwhile (the write pause). With
--key-count N the records use N partition keys, and the run also exits 1
when a key's records reach a consumer out of sequence order, or when a put
got a lower sequence number than a put of its key acknowledged before it
was sent (per-key order across parents and children).`,
	newVerb: func() verb { return &benchVerb{} },
}

type benchVerb struct {
	connFlags
	stream       string
	createShards int
	producers    int
	inFlight     int
	batch        int
	recordSize   int
	duration     time.Duration
	keys         string
	// The fan-out mode (bench_fanout.go).
	mode         string
	rate         int
	consumers    int
	keyCount     int
	splitAfter   time.Duration
	mergeAfter   time.Duration
	createLimits string
}

func (c *benchVerb) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	fs.StringVar(&c.stream, "stream", "", "stream to write to (required)")
	fs.IntVar(&c.createShards, "create-shards", 0, "create the stream with this many shards if it does not exist")
	fs.StringVar(&c.createLimits, "create-limits", "unlimited", "per-shard limits of a stream bench creates: unlimited, or cluster (the cluster's default)")
	fs.IntVar(&c.producers, "producers", 4, "producers, each with its own connection")
	fs.IntVar(&c.inFlight, "in-flight", 4, "calls each producer keeps in flight")
	fs.IntVar(&c.batch, "batch", 100, "records per PutRecords call, 1 to 500")
	fs.IntVar(&c.recordSize, "record-size", 1024, "bytes of data per record")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long to produce")
	fs.StringVar(&c.keys, "keys", "uniform", "partition key distribution: uniform (random keys)")
	fs.StringVar(&c.mode, "mode", "produce", "produce (throughput and ack latency) or fanout (put-to-push latency through registered consumers)")
	fs.IntVar(&c.rate, "rate", 1000, "fanout mode: records per second, put one by one at a fixed rate")
	fs.IntVar(&c.consumers, "consumers", 2, "fanout mode: registered consumers, each subscribed to every open shard")
	fs.IntVar(&c.keyCount, "key-count", 0, "fanout mode: pick each record's partition key from this many keys (0: a new random key per record)")
	fs.DurationVar(&c.splitAfter, "split-after", 0, "fanout mode: split the first open shard at the middle of its range this long into the run")
	fs.DurationVar(&c.mergeAfter, "merge-after", 0, "fanout mode: merge the split's two children back this long into the run (needs --split-after)")
}

func (c *benchVerb) validate(_ *flag.FlagSet, args []string) error {
	if err := noPositional(args); err != nil {
		return err
	}
	switch {
	case c.stream == "":
		return errors.New("--stream is required")
	case c.createShards < 0:
		return fmt.Errorf("--create-shards must not be negative, got %d", c.createShards)
	case c.producers < 1:
		return fmt.Errorf("--producers must be at least 1, got %d", c.producers)
	case c.inFlight < 1:
		return fmt.Errorf("--in-flight must be at least 1, got %d", c.inFlight)
	case c.batch < 1 || c.batch > maxPutRecordsCount:
		return fmt.Errorf("--batch must be between 1 and %d, got %d", maxPutRecordsCount, c.batch)
	case c.recordSize < 1 || c.recordSize > maxRecordBytes-benchKeyLen:
		return fmt.Errorf("--record-size must be between 1 and %d, got %d", maxRecordBytes-benchKeyLen, c.recordSize)
	case c.batch*(c.recordSize+benchKeyLen) > maxPutRecordsBytes:
		return fmt.Errorf("--batch %d of --record-size %d is over the 5 MiB of one PutRecords call", c.batch, c.recordSize)
	case c.duration <= 0:
		return fmt.Errorf("--duration must be positive, got %v", c.duration)
	case c.keys != "uniform":
		return fmt.Errorf("--keys %q: only uniform is supported", c.keys)
	case c.mode != "produce" && c.mode != "fanout":
		return fmt.Errorf("--mode must be produce or fanout, got %q", c.mode)
	case c.mode == "fanout" && (c.rate < 1 || c.rate > 1_000_000):
		return fmt.Errorf("--rate must be between 1 and 1000000, got %d", c.rate)
	case c.mode == "fanout" && (c.consumers < 1 || c.consumers > 20):
		return fmt.Errorf("--consumers must be between 1 and 20 (Kinesis's limit per stream), got %d", c.consumers)
	case c.keyCount < 0:
		return fmt.Errorf("--key-count must not be negative, got %d", c.keyCount)
	case c.mode != "fanout" && (c.keyCount != 0 || c.splitAfter != 0 || c.mergeAfter != 0):
		return errors.New("--key-count, --split-after and --merge-after go with --mode fanout")
	case c.splitAfter < 0 || c.splitAfter >= c.duration:
		return fmt.Errorf("--split-after must lie within --duration %v, got %v", c.duration, c.splitAfter)
	case c.mergeAfter != 0 && (c.splitAfter == 0 || c.mergeAfter <= c.splitAfter || c.mergeAfter >= c.duration):
		return fmt.Errorf("--merge-after needs --split-after and must lie between it and --duration, got %v", c.mergeAfter)
	case c.createLimits != "unlimited" && c.createLimits != "cluster":
		return fmt.Errorf("--create-limits must be unlimited or cluster, got %q", c.createLimits)
	}
	return nil
}

func (c *benchVerb) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := c.ensureStream(ctx, cl.Streams(), std.err); err != nil {
		return err
	}
	if c.mode == "fanout" {
		return c.runFanout(ctx, cl, std)
	}
	// A connection per producer, as separate producer processes would
	// have: one HTTP/2 connection would share one flow-control window.
	producers := make([]*client.Client, 0, c.producers)
	defer func() {
		for _, p := range producers {
			p.Close()
		}
	}()
	for range c.producers {
		p, err := c.dial(ctx)
		if err != nil {
			return err
		}
		producers = append(producers, p)
	}
	fmt.Fprintf(std.err, "riffle: bench on stream %s: %d producers x %d in flight, batch %d, %d-byte records, for %s\n",
		c.stream, c.producers, c.inFlight, c.batch, c.recordSize, c.duration)

	report := c.measure(ctx, producers, std.err)
	if c.json {
		err = writeJSON(std.out, report)
	} else {
		err = writeBenchReport(std.out, report)
	}
	if err != nil {
		return err
	}
	if report.Records == 0 && len(report.Errors) > 0 {
		return &exitError{code: exitFailure, msg: "no record was acknowledged"}
	}
	return nil
}

// ensureStream makes sure the stream exists and is ACTIVE, creating it
// when --create-shards allows.
func (c *benchVerb) ensureStream(ctx context.Context, streams rifflev1.StreamsClient, progress io.Writer) error {
	summary, err := describeSummary(ctx, &c.connFlags, streams, c.stream)
	switch {
	case err == nil && summary.GetStreamStatus() == rifflev1.StreamStatus_STREAM_STATUS_ACTIVE:
		return nil
	case err == nil:
	case isNotFound(err) && c.createShards == 0:
		fmt.Fprintf(progress, "riffle: stream %s does not exist; --create-shards N creates it\n", c.stream)
		return err
	case isNotFound(err):
		callCtx, cancel := c.call(ctx)
		req := &rifflev1.CreateStreamRequest{
			StreamName:        c.stream,
			ShardCount:        int32(c.createShards),
			StreamModeDetails: &rifflev1.StreamModeDetails{StreamMode: rifflev1.StreamMode_STREAM_MODE_PROVISIONED},
		}
		if c.createLimits == "unlimited" {
			zero := int64(0)
			req.ShardLimits = &rifflev1.ShardLimits{WriteBytesPerSecond: &zero, WriteRecordsPerSecond: &zero,
				ReadBytesPerSecond: &zero, ReadCallsPerSecond: &zero, FanOutBytesPerSecond: &zero}
		}
		_, err = streams.CreateStream(callCtx, req)
		cancel()
		// Another bench may have created it meanwhile; that is as good.
		if err != nil && client.ExceptionName(err) != client.ResourceInUseException {
			return err
		}
	default:
		return err
	}
	_, err = waitActive(ctx, &c.connFlags, streams, c.stream, time.Now().Add(defaultActiveWait), progress)
	return err
}

// measure runs the producers for the duration, or until ctx ends, printing
// progress once a second.
func (c *benchVerb) measure(ctx context.Context, producers []*client.Client, progress io.Writer) benchReport {
	// Calls run on their own context: when the duration is up, calls in
	// flight finish and count; on interrupt they are cancelled and do not.
	callsCtx, cancelCalls := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCalls()
	stop := make(chan struct{})
	payload := make([]byte, c.batch*c.recordSize)
	crand.Read(payload)

	var workers []*benchWorker
	var wg sync.WaitGroup
	start := time.Now()
	for _, p := range producers {
		for range c.inFlight {
			w := newBenchWorker(p.Streams(), c.stream, payload, c.batch, c.recordSize, c.timeout)
			workers = append(workers, w)
			wg.Go(func() { w.run(callsCtx, stop) })
		}
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()

	timer := time.NewTimer(c.duration)
	defer timer.Stop()
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	interrupted := false
	var lastRecords uint64
	lastTick := start
	interrupt, timeUp := ctx.Done(), timer.C
	for running := true; running; {
		select {
		case now := <-ticker.C:
			records, errs := sumProgress(workers)
			rate := float64(records-lastRecords) / now.Sub(lastTick).Seconds()
			fmt.Fprintf(progress, "%6s %10.0f records/s %12d total %8d errors\n",
				now.Sub(start).Round(time.Second), rate, records, errs)
			lastRecords, lastTick = records, now
		case <-timeUp:
			close(stop)
			interrupt, timeUp = nil, nil
		case <-interrupt:
			interrupted = true
			close(stop)
			cancelCalls()
			interrupt, timeUp = nil, nil
		case <-done:
			running = false
		}
	}
	return c.report(workers, time.Since(start), interrupted)
}

func sumProgress(workers []*benchWorker) (records, errs uint64) {
	for _, w := range workers {
		w.mu.Lock()
		records += w.records
		errs += w.failedRecords
		w.mu.Unlock()
	}
	return records, errs
}

// benchWorker keeps one call in flight at a time.
type benchWorker struct {
	streams    rifflev1.StreamsClient
	stream     string
	batch      int
	recordSize int
	timeout    time.Duration
	putRecords *rifflev1.PutRecordsRequest
	putRecord  *rifflev1.PutRecordRequest

	// latency belongs to the worker's goroutine until it returns.
	latency Histogram

	mu            sync.Mutex // guards what follows, read by the progress line
	records       uint64
	bytes         uint64
	calls         uint64
	failedCalls   uint64
	failedRecords uint64
	errors        map[string]uint64
}

// newBenchWorker builds the worker's one request. Records share the
// read-only payload: gRPC only reads it while marshalling.
func newBenchWorker(streams rifflev1.StreamsClient, stream string, payload []byte, batch, recordSize int, timeout time.Duration) *benchWorker {
	w := &benchWorker{
		streams: streams, stream: stream, batch: batch, recordSize: recordSize, timeout: timeout,
		errors: make(map[string]uint64),
	}
	if batch == 1 {
		w.putRecord = &rifflev1.PutRecordRequest{StreamName: stream, Data: payload[:recordSize]}
		return w
	}
	w.putRecords = &rifflev1.PutRecordsRequest{StreamName: stream}
	for i := range batch {
		w.putRecords.Records = append(w.putRecords.Records, &rifflev1.PutRecordsRequestEntry{
			Data: payload[i*recordSize : (i+1)*recordSize],
		})
	}
	return w
}

func (w *benchWorker) run(ctx context.Context, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		start := time.Now()
		callCtx, cancel := context.WithTimeout(ctx, w.timeout)
		var results []*rifflev1.PutRecordsResultEntry
		var err error
		if w.putRecord != nil {
			w.putRecord.PartitionKey = randomKey()
			_, err = w.streams.PutRecord(callCtx, w.putRecord)
		} else {
			for _, r := range w.putRecords.Records {
				r.PartitionKey = randomKey()
			}
			var resp *rifflev1.PutRecordsResponse
			resp, err = w.streams.PutRecords(callCtx, w.putRecords)
			results = resp.GetRecords()
		}
		cancel()
		elapsed := time.Since(start)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			w.latency.Record(elapsed)
		}
		w.count(err, results)
	}
}

// count adds one call's outcome: a failed call fails all of its records.
func (w *benchWorker) count(err error, results []*rifflev1.PutRecordsResultEntry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	switch {
	case err != nil:
		w.failedCalls++
		w.failedRecords += uint64(w.batch)
		w.errors[errorName(err)] += uint64(w.batch)
	case w.putRecord != nil:
		w.records++
		w.bytes += uint64(w.recordSize)
	default:
		for _, r := range results {
			if code := r.GetErrorCode(); code != "" {
				w.failedRecords++
				w.errors[code]++
				continue
			}
			w.records++
			w.bytes += uint64(w.recordSize)
		}
	}
}

// randomKey is a partition key of benchKeyLen hex digits.
func randomKey() string {
	var raw [benchKeyLen / 2]byte
	for i := 0; i < len(raw); i += 8 {
		v := rand.Uint64()
		for j := range 8 {
			raw[i+j] = byte(v >> (8 * j))
		}
	}
	return hex.EncodeToString(raw[:])
}

// benchReport is the result of a bench, and its --json shape.
type benchReport struct {
	Stream           string            `json:"stream"`
	Producers        int               `json:"producers"`
	InFlight         int               `json:"in_flight"`
	Batch            int               `json:"batch"`
	RecordSize       int               `json:"record_size"`
	ElapsedSeconds   float64           `json:"elapsed_seconds"`
	Interrupted      bool              `json:"interrupted"`
	Records          uint64            `json:"records"`
	RecordsPerSecond float64           `json:"records_per_second"`
	MiBPerSecond     float64           `json:"mib_per_second"`
	Calls            uint64            `json:"calls"`
	FailedCalls      uint64            `json:"failed_calls"`
	FailedRecords    uint64            `json:"failed_records"`
	Errors           map[string]uint64 `json:"errors"`
	Latency          latencyReport     `json:"ack_latency_ms"`
}

// latencyReport holds quantiles of the ack latency, in milliseconds.
type latencyReport struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

// report sums the workers; they have all returned.
func (c *benchVerb) report(workers []*benchWorker, elapsed time.Duration, interrupted bool) benchReport {
	r := benchReport{
		Stream: c.stream, Producers: c.producers, InFlight: c.inFlight, Batch: c.batch, RecordSize: c.recordSize,
		ElapsedSeconds: elapsed.Seconds(), Interrupted: interrupted, Errors: make(map[string]uint64),
	}
	var latency Histogram
	var bytes uint64
	for _, w := range workers {
		latency.Merge(&w.latency)
		r.Records += w.records
		bytes += w.bytes
		r.Calls += w.calls
		r.FailedCalls += w.failedCalls
		r.FailedRecords += w.failedRecords
		for name, n := range w.errors {
			r.Errors[name] += n
		}
	}
	if s := elapsed.Seconds(); s > 0 {
		r.RecordsPerSecond = float64(r.Records) / s
		r.MiBPerSecond = float64(bytes) / (1 << 20) / s
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	r.Latency = latencyReport{
		P50:  ms(latency.Quantile(0.50)),
		P90:  ms(latency.Quantile(0.90)),
		P99:  ms(latency.Quantile(0.99)),
		P999: ms(latency.Quantile(0.999)),
		Max:  ms(latency.Max()),
	}
	return r
}

func writeBenchReport(w io.Writer, r benchReport) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	if r.Interrupted {
		fmt.Fprintf(tw, "interrupted\tafter %.1fs\n", r.ElapsedSeconds)
	}
	fmt.Fprintf(tw, "records\t%d in %.1fs: %.0f records/s, %.2f MiB/s\n", r.Records, r.ElapsedSeconds, r.RecordsPerSecond, r.MiBPerSecond)
	fmt.Fprintf(tw, "calls\t%d, %d failed\n", r.Calls, r.FailedCalls)
	errs := "none"
	if len(r.Errors) > 0 {
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(r.Errors)) {
			parts = append(parts, fmt.Sprintf("%s %d", name, r.Errors[name]))
		}
		errs = fmt.Sprintf("%d records: %s", r.FailedRecords, strings.Join(parts, ", "))
	}
	fmt.Fprintf(tw, "errors\t%s\n", errs)
	fmt.Fprintf(tw, "ack latency\tp50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		fmtMillis(r.Latency.P50), fmtMillis(r.Latency.P90), fmtMillis(r.Latency.P99), fmtMillis(r.Latency.P999), fmtMillis(r.Latency.Max))
	return tw.Flush()
}

// fmtMillis prints a latency with three significant digits.
func fmtMillis(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	for precision := time.Duration(1); precision < time.Hour; precision *= 10 {
		if d < 1000*precision {
			return d.Round(precision).String()
		}
	}
	return d.Round(time.Second).String()
}
