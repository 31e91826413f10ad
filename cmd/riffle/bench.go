package main

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	synopsis: "--stream S [--mode produce|consume|mixed|fanout] [--create-shards N] [--create-limits unlimited|cluster] [--producers P] [--in-flight K] [--batch B] [--record-size BYTES] [--duration D] [--rate R] [--keys uniform|zipf] [--key-count N] [--zipf-s S] [--get-limit L] [--poll-interval D] [--consumers C] [--split-after D] [--merge-after D] [--json|--csv]",
	summary:  "measure produce, replay and end-to-end throughput and latency",
	details: `
Creates the stream when it is missing and --create-shards is given, waits
until it is ACTIVE, then runs the workload of --mode for --duration.

--mode produce (the default) runs P producers, each with its own connection
and K calls in flight: PutRecords of B records (PutRecord when B is 1) of
random data. Without --rate each call follows the previous one's answer (as
fast as possible); with --rate R the calls are sent on a fixed schedule of R
records per second over all producers (open loop), and latency counts from
each call's scheduled time, so a stalled broker shows as latency rather than
as fewer calls. Nothing is retried: throttled records
(ProvisionedThroughputExceededException) count as errors. A run that cannot
keep up reports fewer records than scheduled.

--mode consume replays the stream: one reader per shard (open or closed),
each on its own connection, polls GetRecords of up to --get-limit records
from TRIM_HORIZON until it reaches the shard's end or tip, or --duration is
up. It reports records/s and MiB/s read, and GetRecords latency.

--mode mixed produces as --mode produce does while one polling reader per
open shard reads from LATEST (sleeping --poll-interval when a call returns
nothing); each record carries the run id and its put's scheduled time, and
the report adds the put-to-consume latency (put scheduled to record read).

--keys picks partition keys: uniform (a new random key per record, or one
of --key-count keys at random) or zipf (one of --key-count keys, key i with
probability proportional to (1+i)^-S, --zipf-s S > 1: hot keys).

A stream bench creates has no per-shard limits (--create-limits unlimited),
since a benchmark measures the broker, not the limiter; --create-limits
cluster gives it the cluster's default limits instead. A stream that exists
keeps its own.

Progress goes to stderr once a second. At the end it prints records/s,
MiB/s of data, calls, failed records by exception name, and latency
quantiles (p50, p90, p99, p99.9, max) of successful calls; --json prints
them as one object, --csv as a header line and one row whose columns are the
same for every mode (empty where a mode has no such figure). Ctrl-C stops
early and prints what was measured. Exits 1 when no record was acknowledged
(or, in consume mode, read).

--mode fanout measures put-to-push latency instead: it registers
--consumers consumers (deregistered at the end), subscribes each to every
open shard, and puts --rate records per second (default 1000) one by one
(PutRecord, open loop: latency counts from each record's scheduled time,
with up to producers x in-flight calls at once). Each consumer checks that
it receives every acknowledged record once and in order per shard; the
report gives ack and put-to-push latency quantiles, and the run exits 1 on
any record missing, duplicated or out of order.

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

// defaultFanoutRate is the fan-out bench's --rate when none is given.
const defaultFanoutRate = 1000

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
	keyCount     int
	zipfS        float64
	shardBatches bool
	mode         string
	// rate is records per second, open loop; 0 is closed loop (produce and
	// mixed modes).
	rate int
	csv  bool
	// The consume and mixed modes' readers (bench_consume.go).
	getLimit     int
	pollInterval time.Duration
	// The fan-out mode (bench_fanout.go).
	consumers    int
	splitAfter   time.Duration
	mergeAfter   time.Duration
	createLimits string
}

func (c *benchVerb) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	fs.StringVar(&c.stream, "stream", "", "stream to write to (required)")
	fs.StringVar(&c.mode, "mode", "produce", "produce (throughput and ack latency), consume (replay from TRIM_HORIZON), mixed (produce and poll: put-to-consume latency) or fanout (put-to-push latency through registered consumers)")
	fs.IntVar(&c.createShards, "create-shards", 0, "create the stream with this many shards if it does not exist")
	fs.StringVar(&c.createLimits, "create-limits", "unlimited", "per-shard limits of a stream bench creates: unlimited, or cluster (the cluster's default)")
	fs.IntVar(&c.producers, "producers", 4, "producers, each with its own connection")
	fs.IntVar(&c.inFlight, "in-flight", 4, "calls each producer keeps in flight")
	fs.IntVar(&c.batch, "batch", 100, "records per PutRecords call, 1 to 500")
	fs.IntVar(&c.recordSize, "record-size", 1024, "bytes of data per record")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long to run")
	fs.IntVar(&c.rate, "rate", 0, "records per second on a fixed schedule (open loop); 0: as fast as possible (produce, mixed), 1000 (fanout)")
	fs.StringVar(&c.keys, "keys", "uniform", "partition key distribution: uniform or zipf (zipf needs --key-count)")
	fs.IntVar(&c.keyCount, "key-count", 0, "pick each record's partition key from this many keys (0: a new random key per record)")
	fs.BoolVar(&c.shardBatches, "shard-batches", false, "every record of a PutRecords call goes to one shard, as the SDK producer and the KPL batch: one random explicit hash key per call, partition keys still random; without it every record's key picks its own shard")
	fs.Float64Var(&c.zipfS, "zipf-s", defaultZipfS, "exponent of --keys zipf, above 1: larger is hotter")
	fs.IntVar(&c.getLimit, "get-limit", maxGetRecordsLimit, "consume and mixed modes: records per GetRecords call, 1 to 10000")
	fs.DurationVar(&c.pollInterval, "poll-interval", 200*time.Millisecond, "consume and mixed modes: pause after a GetRecords call that returned nothing")
	fs.BoolVar(&c.csv, "csv", false, "print the result as CSV: a header line and one row")
	fs.IntVar(&c.consumers, "consumers", 2, "fanout mode: registered consumers, each subscribed to every open shard")
	fs.DurationVar(&c.splitAfter, "split-after", 0, "fanout mode: split the first open shard at the middle of its range this long into the run")
	fs.DurationVar(&c.mergeAfter, "merge-after", 0, "fanout mode: merge the split's two children back this long into the run (needs --split-after)")
}

func (c *benchVerb) validate(fs *flag.FlagSet, args []string) error {
	if err := noPositional(args); err != nil {
		return err
	}
	rateSet := false
	fs.Visit(func(f *flag.Flag) { rateSet = rateSet || f.Name == "rate" })
	if c.mode == "fanout" && !rateSet {
		c.rate = defaultFanoutRate
	}
	return c.check()
}

// check validates the options once --rate has its mode's default.
func (c *benchVerb) check() error {
	switch {
	case c.stream == "":
		return errors.New("--stream is required")
	case !slices.Contains([]string{"produce", "consume", "mixed", "fanout"}, c.mode):
		return fmt.Errorf("--mode must be produce, consume, mixed or fanout, got %q", c.mode)
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
	case c.mode == "mixed" && c.recordSize < mixedHeaderLen:
		return fmt.Errorf("--mode mixed stamps each record with a %d-byte header: --record-size must be at least %d, got %d", mixedHeaderLen, mixedHeaderLen, c.recordSize)
	case c.batch*(c.recordSize+benchKeyLen) > maxPutRecordsBytes:
		return fmt.Errorf("--batch %d of --record-size %d is over the 5 MiB of one PutRecords call", c.batch, c.recordSize)
	case c.duration <= 0:
		return fmt.Errorf("--duration must be positive, got %v", c.duration)
	case c.mode == "fanout" && (c.rate < 1 || c.rate > 1_000_000):
		return fmt.Errorf("--rate must be between 1 and 1000000, got %d", c.rate)
	case c.rate < 0 || c.rate > 10_000_000:
		return fmt.Errorf("--rate must be between 0 (as fast as possible) and 10000000, got %d", c.rate)
	case c.mode == "consume" && c.rate != 0:
		return errors.New("--rate goes with --mode produce, mixed or fanout: consume reads as fast as it can")
	case c.shardBatches && c.batch < 2:
		return errors.New("--shard-batches sends each call's records to one shard: it needs --batch of 2 or more")
	case c.shardBatches && (c.keys != "uniform" || c.keyCount != 0):
		return errors.New("--shard-batches routes each call by a random hash key: --keys and --key-count, which route by partition key, do not go with it")
	case c.shardBatches && c.mode != "produce" && c.mode != "mixed":
		return errors.New("--shard-batches goes with --mode produce or mixed")
	case c.keys != "uniform" && c.keys != "zipf":
		return fmt.Errorf("--keys must be uniform or zipf, got %q", c.keys)
	case c.keyCount < 0:
		return fmt.Errorf("--key-count must not be negative, got %d", c.keyCount)
	case c.keys == "zipf" && c.keyCount < 2:
		return fmt.Errorf("--keys zipf picks from --key-count keys: give at least 2, got %d", c.keyCount)
	case math.IsNaN(c.zipfS) || c.zipfS <= 1 || c.zipfS > 100:
		return fmt.Errorf("--zipf-s must be above 1 and at most 100, got %v", c.zipfS)
	case c.mode == "consume" && (c.keys != "uniform" || c.keyCount != 0):
		return errors.New("--keys and --key-count choose the keys of records put: consume puts none")
	case c.getLimit < 1 || c.getLimit > maxGetRecordsLimit:
		return fmt.Errorf("--get-limit must be between 1 and %d, got %d", maxGetRecordsLimit, c.getLimit)
	case c.pollInterval <= 0:
		return fmt.Errorf("--poll-interval must be positive, got %v", c.pollInterval)
	case c.mode == "fanout" && (c.consumers < 1 || c.consumers > 20):
		return fmt.Errorf("--consumers must be between 1 and 20 (Kinesis's limit per stream), got %d", c.consumers)
	case c.mode != "fanout" && (c.splitAfter != 0 || c.mergeAfter != 0):
		return errors.New("--split-after and --merge-after go with --mode fanout")
	case c.splitAfter < 0 || c.splitAfter >= c.duration:
		return fmt.Errorf("--split-after must lie within --duration %v, got %v", c.duration, c.splitAfter)
	case c.mergeAfter != 0 && (c.splitAfter == 0 || c.mergeAfter <= c.splitAfter || c.mergeAfter >= c.duration):
		return fmt.Errorf("--merge-after needs --split-after and must lie between it and --duration, got %v", c.mergeAfter)
	case c.createLimits != "unlimited" && c.createLimits != "cluster":
		return fmt.Errorf("--create-limits must be unlimited or cluster, got %q", c.createLimits)
	case c.json && c.csv:
		return errors.New("--json and --csv exclude each other")
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
	switch c.mode {
	case "fanout":
		return c.runFanout(ctx, cl, std)
	case "consume":
		return c.runConsume(ctx, cl, std)
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
	pace := "as fast as possible"
	if c.rate > 0 {
		pace = fmt.Sprintf("%d records/s scheduled", c.rate)
	}
	fmt.Fprintf(std.err, "riffle: %s bench on stream %s: %d producers x %d in flight, batch %d, %d-byte records, %s keys, %s, for %s\n",
		c.mode, c.stream, c.producers, c.inFlight, c.batch, c.recordSize, c.keyDescription(), pace, c.duration)

	var readers *readerSet
	if c.mode == "mixed" {
		if readers, err = c.startMixedReaders(ctx, cl); err != nil {
			return err
		}
	}
	report := c.measure(ctx, producers, readers, std.err)
	if err := c.writeReport(std.out, report); err != nil {
		return err
	}
	if report.Records == 0 && len(report.Errors) > 0 {
		return &exitError{code: exitFailure, msg: "no record was acknowledged"}
	}
	return nil
}

// keyDescription names the key distribution for the progress header.
func (c *benchVerb) keyDescription() string {
	switch {
	case c.keys == "zipf":
		return fmt.Sprintf("zipf(s=%g) over %d", c.zipfS, c.keyCount)
	case c.keyCount > 0:
		return fmt.Sprintf("uniform over %d", c.keyCount)
	case c.shardBatches:
		return "random, one shard per call"
	}
	return "random"
}

// newKeyPicker gives one worker its own picker over the run's keys.
func (c *benchVerb) newKeyPicker(keys []string) *keyPicker {
	return newKeyPicker(keys, c.keys == "zipf", c.zipfS)
}

// writeReport prints a produce, consume or mixed report in the format asked.
func (c *benchVerb) writeReport(w io.Writer, r benchReport) error {
	switch {
	case c.json:
		return writeJSON(w, r)
	case c.csv:
		return writeCSV(w, r.csvRow())
	}
	return writeBenchReport(w, r)
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

// measure runs the producers (and, in mixed mode, waits for the readers to
// read what they wrote) for the duration, or until ctx ends, printing
// progress once a second.
func (c *benchVerb) measure(ctx context.Context, producers []*client.Client, readers *readerSet, progress io.Writer) benchReport {
	// Calls run on their own context: when the duration is up, calls in
	// flight finish and count; on interrupt they are cancelled and do not.
	callsCtx, cancelCalls := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCalls()
	stop := make(chan struct{})
	var runID *[8]byte
	if readers != nil {
		runID = &readers.runID
	}
	var payload []byte
	if runID == nil {
		// Produce mode: every worker sends the same read-only data.
		payload = make([]byte, c.batch*c.recordSize)
		crand.Read(payload)
	}
	var keys []string
	if c.keyCount > 0 {
		keys = benchKeys(c.keyCount)
	}

	var workers []*benchWorker
	var wg sync.WaitGroup
	// With --rate, a scheduler hands out each call's intended send time;
	// the workers take them as they come free. The queue holds a second of
	// calls, then the scheduler waits: the backlog shows as latency.
	var jobs chan time.Time
	var scheduler *benchScheduler
	if c.rate > 0 {
		scheduler = newBenchScheduler(c.rate, c.batch)
		jobs = make(chan time.Time, scheduler.perSecond())
	}
	start := time.Now()
	for _, p := range producers {
		for range c.inFlight {
			w := newBenchWorker(p.Streams(), c.stream, payload, c.batch, c.recordSize, c.timeout, c.newKeyPicker(keys), runID)
			w.shardBatches = c.shardBatches
			workers = append(workers, w)
			if jobs != nil {
				wg.Go(func() { w.runScheduled(callsCtx, jobs) })
			} else {
				wg.Go(func() { w.run(callsCtx, stop) })
			}
		}
	}
	if scheduler != nil {
		wg.Go(func() { scheduler.run(start, stop, jobs) })
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
			line := fmt.Sprintf("%6s %10.0f records/s %12d total %8d errors", now.Sub(start).Round(time.Second), rate, records, errs)
			if readers != nil {
				line += fmt.Sprintf(" %12d read", readers.progress())
			}
			fmt.Fprintln(progress, line)
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
	elapsed := time.Since(start)
	r := c.report(workers, elapsed, interrupted)
	if scheduler != nil {
		r.ScheduledRecords = scheduler.scheduled() * uint64(c.batch)
	}
	if readers != nil {
		// The readers get until all acknowledged records were read, or
		// ten seconds, to catch up with the producers.
		if !interrupted {
			readers.drain(ctx, r.Records, 10*time.Second)
		}
		read := readers.stop(time.Since(start))
		r.Read = &read
	}
	return r
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

// benchScheduler produces the intended send times of an open-loop run:
// one call of batch records every batch/rate seconds from the start.
type benchScheduler struct {
	interval time.Duration
	rate     int
	batch    int
	sent     atomic.Uint64
}

func newBenchScheduler(rate, batch int) *benchScheduler {
	return &benchScheduler{interval: time.Duration(float64(time.Second) * float64(batch) / float64(rate)), rate: rate, batch: batch}
}

// perSecond is the number of calls scheduled per second, at least 1.
func (s *benchScheduler) perSecond() int { return max(1, s.rate/s.batch) }

// scheduled is how many calls the scheduler has handed out.
func (s *benchScheduler) scheduled() uint64 { return s.sent.Load() }

// run hands out send times until stop closes, then closes jobs. A call's
// time comes from its number, never from when the previous one went out,
// so a late scheduler catches up rather than drifting.
func (s *benchScheduler) run(start time.Time, stop <-chan struct{}, jobs chan<- time.Time) {
	defer close(jobs)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for n := time.Duration(0); ; n++ {
		when := start.Add(n * s.interval)
		if wait := time.Until(when); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-stop:
				return
			}
		}
		select {
		case jobs <- when:
			s.sent.Add(1)
		case <-stop:
			return
		}
	}
}

// benchWorker keeps one call in flight at a time.
type benchWorker struct {
	streams    rifflev1.StreamsClient
	stream     string
	batch      int
	recordSize int
	timeout    time.Duration
	keys       *keyPicker
	// shardBatches gives every record of a call one explicit hash key.
	shardBatches bool
	// runID, in mixed mode, is stamped with each call's scheduled time at
	// the head of every record (the worker then owns its payload).
	runID      *[8]byte
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
// read-only payload, gRPC only reads it while marshalling; with a run id
// (mixed mode) the worker has a payload of its own, rewritten per call.
func newBenchWorker(streams rifflev1.StreamsClient, stream string, payload []byte, batch, recordSize int, timeout time.Duration, keys *keyPicker, runID *[8]byte) *benchWorker {
	w := &benchWorker{
		streams: streams, stream: stream, batch: batch, recordSize: recordSize, timeout: timeout,
		keys: keys, runID: runID, errors: make(map[string]uint64),
	}
	if runID != nil {
		payload = make([]byte, batch*recordSize)
		crand.Read(payload)
		for i := range batch {
			copy(payload[i*recordSize:], runID[:])
		}
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

// run is the closed loop: each call goes out when the previous one is
// answered, until stop closes.
func (w *benchWorker) run(ctx context.Context, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		if !w.put(ctx, time.Now()) {
			return
		}
	}
}

// runScheduled is the open loop: one call per scheduled time, its latency
// counted from that time, until the scheduler closes jobs.
func (w *benchWorker) runScheduled(ctx context.Context, jobs <-chan time.Time) {
	for when := range jobs {
		if !w.put(ctx, when) {
			return
		}
	}
}

// put makes one call scheduled at when and counts it; it returns false
// when ctx has ended, and the call then does not count.
func (w *benchWorker) put(ctx context.Context, when time.Time) bool {
	callCtx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	var results []*rifflev1.PutRecordsResultEntry
	var err error
	if w.putRecord != nil {
		w.putRecord.PartitionKey = w.keys.next()
		w.stamp(w.putRecord.Data, when)
		_, err = w.streams.PutRecord(callCtx, w.putRecord)
	} else {
		var hashKey string
		if w.shardBatches {
			hashKey = w.keys.hashKey()
		}
		for _, r := range w.putRecords.Records {
			r.PartitionKey = w.keys.next()
			r.ExplicitHashKey = hashKey
			w.stamp(r.Data, when)
		}
		var resp *rifflev1.PutRecordsResponse
		resp, err = w.streams.PutRecords(callCtx, w.putRecords)
		results = resp.GetRecords()
	}
	elapsed := time.Since(when)
	if ctx.Err() != nil {
		return false
	}
	if err == nil {
		w.latency.Record(elapsed)
	}
	w.count(err, results)
	return true
}

// stamp writes the mixed mode's header into a record's data: the run id,
// then the put's scheduled time in unix nanoseconds.
func (w *benchWorker) stamp(data []byte, when time.Time) {
	if w.runID != nil {
		binary.BigEndian.PutUint64(data[8:mixedHeaderLen], uint64(when.UnixNano()))
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

// benchReport is the result of a produce, consume or mixed bench, and its
// --json shape. The produce figures are zero in consume mode.
type benchReport struct {
	Mode       string `json:"mode"`
	Stream     string `json:"stream"`
	Producers  int    `json:"producers"`
	InFlight   int    `json:"in_flight"`
	Batch      int    `json:"batch"`
	RecordSize int    `json:"record_size"`
	Keys       string `json:"keys"`
	KeyCount   int    `json:"key_count"`
	// ShardBatches: every call's records went to one shard.
	ShardBatches bool `json:"shard_batches"`
	// Rate is the records per second asked for, 0 for as fast as possible;
	// ScheduledRecords is how many records the schedule sent out.
	Rate             int               `json:"rate"`
	ScheduledRecords uint64            `json:"scheduled_records,omitempty"`
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
	// Read is what the readers of the consume and mixed modes read.
	Read *readReport `json:"read,omitempty"`
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
		Mode: c.mode, Keys: c.keys, KeyCount: c.keyCount, ShardBatches: c.shardBatches, Rate: c.rate,
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
	r.Latency = latencies(&latency)
	return r
}

func writeBenchReport(w io.Writer, r benchReport) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	if r.Interrupted {
		fmt.Fprintf(tw, "interrupted\tafter %.1fs\n", r.ElapsedSeconds)
	}
	if r.Mode != "consume" {
		fmt.Fprintf(tw, "records\t%d in %.1fs: %.0f records/s, %.2f MiB/s\n", r.Records, r.ElapsedSeconds, r.RecordsPerSecond, r.MiBPerSecond)
		if r.Rate > 0 {
			fmt.Fprintf(tw, "schedule\t%d records/s asked, %d records sent on schedule\n", r.Rate, r.ScheduledRecords)
		}
		fmt.Fprintf(tw, "calls\t%d, %d failed\n", r.Calls, r.FailedCalls)
		fmt.Fprintf(tw, "errors\t%s\n", errorSummary(r.FailedRecords, "records", r.Errors))
		fmt.Fprintf(tw, "ack latency\t%s\n", fmtLatencies(r.Latency))
	}
	if rd := r.Read; rd != nil {
		fmt.Fprintf(tw, "read\t%d records from %d shards in %.1fs: %.0f records/s, %.2f MiB/s\n", rd.Records, rd.Shards, rd.ElapsedSeconds, rd.RecordsPerSecond, rd.MiBPerSecond)
		if r.Mode == "consume" {
			tip := "every shard read to its end or tip"
			if !rd.CaughtUp {
				tip = "not every shard read to its end or tip"
			}
			fmt.Fprintf(tw, "replay\t%s\n", tip)
		}
		fmt.Fprintf(tw, "GetRecords\t%d calls, %d failed; errors %s\n", rd.Calls, rd.FailedCalls, errorSummary(rd.FailedCalls, "calls", rd.Errors))
		fmt.Fprintf(tw, "GetRecords latency\t%s\n", fmtLatencies(rd.GetLatency))
		if rd.PutToConsume != nil {
			fmt.Fprintf(tw, "put-to-consume latency\t%s\n", fmtLatencies(*rd.PutToConsume))
		}
	}
	return tw.Flush()
}

// errorSummary is "none", or the failures by exception name.
func errorSummary(failed uint64, unit string, errs map[string]uint64) string {
	if len(errs) == 0 {
		return "none"
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(errs)) {
		parts = append(parts, fmt.Sprintf("%s %d", name, errs[name]))
	}
	return fmt.Sprintf("%d %s: %s", failed, unit, strings.Join(parts, ", "))
}

// fmtLatencies prints the quantiles of a latency report.
func fmtLatencies(l latencyReport) string {
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s",
		fmtMillis(l.P50), fmtMillis(l.P90), fmtMillis(l.P99), fmtMillis(l.P999), fmtMillis(l.Max))
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
