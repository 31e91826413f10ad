package main

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// The consume and mixed modes read with polling GetRecords readers, one per
// shard, each on its own connection as separate consumer processes would
// be. In consume mode they replay the stream from TRIM_HORIZON and stop at
// each shard's end or tip; in mixed mode they follow the tip from LATEST
// while the producers write, and measure put-to-consume latency from a
// header the producers stamp into every record.

// mixedHeaderLen is the mixed mode's record header: the run id (8 bytes)
// and the put's scheduled time in unix nanoseconds (8 bytes). Records of
// other runs are read but not counted.
const mixedHeaderLen = 16

// readReport is what the readers read, part of benchReport.
type readReport struct {
	Shards           int               `json:"shards"`
	ElapsedSeconds   float64           `json:"elapsed_seconds"`
	Records          uint64            `json:"records"`
	RecordsPerSecond float64           `json:"records_per_second"`
	MiBPerSecond     float64           `json:"mib_per_second"`
	Calls            uint64            `json:"calls"`
	FailedCalls      uint64            `json:"failed_calls"`
	Errors           map[string]uint64 `json:"errors"`
	// CaughtUp says every reader reached its shard's end or tip (consume
	// mode) before the run ended.
	CaughtUp     bool           `json:"caught_up"`
	GetLatency   latencyReport  `json:"get_records_latency_ms"`
	PutToConsume *latencyReport `json:"put_to_consume_latency_ms,omitempty"`
}

// shardReader polls one shard with GetRecords.
type shardReader struct {
	streams      rifflev1.StreamsClient
	stream       string
	shard        string
	limit        int
	timeout      time.Duration
	pollInterval time.Duration
	// runID, in mixed mode, selects the records to count: this run's.
	runID *[8]byte
	// follow keeps polling at the tip (mixed); otherwise the reader stops
	// there (consume).
	follow bool

	// The histograms belong to the reader's goroutine until it returns.
	getLatency   Histogram
	putToConsume Histogram

	mu          sync.Mutex // guards what follows, read by the progress line
	records     uint64
	bytes       uint64
	calls       uint64
	failedCalls uint64
	errors      map[string]uint64
	caughtUp    bool
}

// run reads from iterator (TRIM_HORIZON when empty) until stop closes, ctx
// ends, the shard ends, or, when not following, the reader is at the tip.
func (r *shardReader) run(ctx context.Context, iterator string, stop <-chan struct{}) {
	if iterator == "" {
		callCtx, cancel := context.WithTimeout(ctx, r.timeout)
		resp, err := r.streams.GetShardIterator(callCtx, &rifflev1.GetShardIteratorRequest{StreamName: r.stream, ShardId: r.shard,
			ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON})
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				r.fail(err)
			}
			return
		}
		iterator = resp.GetShardIterator()
	}
	for iterator != "" {
		select {
		case <-stop:
			return
		default:
		}
		sent := time.Now()
		callCtx, cancel := context.WithTimeout(ctx, r.timeout)
		resp, err := r.streams.GetRecords(callCtx, &rifflev1.GetRecordsRequest{ShardIterator: iterator, Limit: int32(r.limit)})
		cancel()
		now := time.Now()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.fail(err)
			switch client.ExceptionName(err) {
			case client.ExpiredIteratorException, client.ResourceNotFoundException:
				return // the iterator cannot go on
			}
			if !pause(r.pollInterval, stop) {
				return
			}
			continue
		}
		r.getLatency.Record(now.Sub(sent))
		r.count(resp.GetRecords(), now)
		iterator = resp.GetNextShardIterator()
		if iterator == "" || (!r.follow && resp.GetMillisBehindLatest() == 0) {
			r.mu.Lock()
			r.caughtUp = true
			r.mu.Unlock()
			return
		}
		if len(resp.GetRecords()) == 0 && !pause(r.pollInterval, stop) {
			return
		}
	}
}

// count adds one response's records; in mixed mode only this run's count,
// each with its put-to-consume latency.
func (r *shardReader) count(recs []*rifflev1.Record, now time.Time) {
	var n, bytes uint64
	for _, rec := range recs {
		d := rec.GetData()
		if r.runID != nil {
			if len(d) < mixedHeaderLen || string(d[:8]) != string(r.runID[:]) {
				continue
			}
			sent := time.Unix(0, int64(binary.BigEndian.Uint64(d[8:mixedHeaderLen])))
			r.putToConsume.Record(now.Sub(sent))
		}
		n++
		bytes += uint64(len(d))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.records += n
	r.bytes += bytes
}

func (r *shardReader) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.failedCalls++
	r.errors[errorName(err)]++
}

// pause waits d; it returns false when stop closed first.
func pause(d time.Duration, stop <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}

// readerSet owns the readers of a run, their connections and goroutines.
type readerSet struct {
	runID   [8]byte
	readers []*shardReader
	conns   []*client.Client
	ctx     context.Context
	cancel  context.CancelFunc
	stopCh  chan struct{}
	wg      sync.WaitGroup
	done    chan struct{}
}

// newReaderSet dials a connection per shard. Reads run on their own
// context, which stop cancels.
func (c *benchVerb) newReaderSet(ctx context.Context, shards []string, follow bool) (*readerSet, error) {
	s := &readerSet{stopCh: make(chan struct{}), done: make(chan struct{})}
	crand.Read(s.runID[:])
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, shard := range shards {
		conn, err := c.dial(ctx)
		if err != nil {
			s.close()
			return nil, err
		}
		s.conns = append(s.conns, conn)
		r := &shardReader{streams: conn.Streams(), stream: c.stream, shard: shard, limit: c.getLimit, timeout: c.timeout,
			pollInterval: c.pollInterval, follow: follow, errors: map[string]uint64{}}
		if follow {
			r.runID = &s.runID
		}
		s.readers = append(s.readers, r)
	}
	return s, nil
}

// start runs reader i from iterators[i] ("" for TRIM_HORIZON); done closes
// when all have returned.
func (s *readerSet) start(iterators []string) {
	for i, r := range s.readers {
		s.wg.Go(func() { r.run(s.ctx, iterators[i], s.stopCh) })
	}
	go func() {
		s.wg.Wait()
		close(s.done)
	}()
}

// progress is the number of records read so far.
func (s *readerSet) progress() uint64 {
	var n uint64
	for _, r := range s.readers {
		r.mu.Lock()
		n += r.records
		r.mu.Unlock()
	}
	return n
}

// drain waits until the readers have read at least want records, for at
// most limit.
func (s *readerSet) drain(ctx context.Context, want uint64, limit time.Duration) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for s.progress() < want {
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}

// stop ends the readers and sums what they read over elapsed.
func (s *readerSet) stop(elapsed time.Duration) readReport {
	close(s.stopCh)
	s.cancel()
	s.wg.Wait()
	s.close()
	rep := readReport{Shards: len(s.readers), ElapsedSeconds: elapsed.Seconds(), Errors: map[string]uint64{}, CaughtUp: true}
	var get, e2e Histogram
	var bytes uint64
	for _, r := range s.readers {
		get.Merge(&r.getLatency)
		e2e.Merge(&r.putToConsume)
		rep.Records += r.records
		bytes += r.bytes
		rep.Calls += r.calls
		rep.FailedCalls += r.failedCalls
		rep.CaughtUp = rep.CaughtUp && r.caughtUp
		for name, n := range r.errors {
			rep.Errors[name] += n
		}
	}
	if sec := elapsed.Seconds(); sec > 0 {
		rep.RecordsPerSecond = float64(rep.Records) / sec
		rep.MiBPerSecond = float64(bytes) / (1 << 20) / sec
	}
	rep.GetLatency = latencies(&get)
	if len(s.readers) > 0 && s.readers[0].follow {
		e := latencies(&e2e)
		rep.PutToConsume = &e
	}
	return rep
}

func (s *readerSet) close() {
	s.cancel()
	for _, c := range s.conns {
		c.Close()
	}
}

// startMixedReaders positions a reader at LATEST on every open shard before
// the producers start, so the readers see every record of the run.
func (c *benchVerb) startMixedReaders(ctx context.Context, cl *client.Client) (*readerSet, error) {
	shards, err := openShards(ctx, &c.connFlags, cl.Streams(), c.stream)
	if err != nil {
		return nil, err
	}
	set, err := c.newReaderSet(ctx, shards, true)
	if err != nil {
		return nil, err
	}
	iterators := make([]string, len(shards))
	for i, shard := range shards {
		callCtx, cancel := c.call(ctx)
		resp, err := cl.Streams().GetShardIterator(callCtx, &rifflev1.GetShardIteratorRequest{StreamName: c.stream, ShardId: shard,
			ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_LATEST})
		cancel()
		if err != nil {
			set.close()
			return nil, fmt.Errorf("iterator of %s: %w", shard, err)
		}
		iterators[i] = resp.GetShardIterator()
	}
	set.start(iterators)
	return set, nil
}

// runConsume replays every shard of the stream from TRIM_HORIZON.
func (c *benchVerb) runConsume(ctx context.Context, cl *client.Client, std stdio) error {
	shards, err := allShards(ctx, &c.connFlags, cl.Streams(), c.stream)
	if err != nil {
		return err
	}
	set, err := c.newReaderSet(ctx, shards, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(std.err, "riffle: consume bench on stream %s: %d shards from TRIM_HORIZON, GetRecords of up to %d records, for at most %s\n",
		c.stream, len(shards), c.getLimit, c.duration)
	start := time.Now()
	set.start(make([]string, len(shards)))
	interrupted := c.waitReaders(ctx, set, start, std.err)
	elapsed := time.Since(start)
	read := set.stop(elapsed)
	r := benchReport{Mode: c.mode, Stream: c.stream, Keys: c.keys, ElapsedSeconds: elapsed.Seconds(), Interrupted: interrupted,
		Errors: map[string]uint64{}, Read: &read}
	if err := c.writeReport(std.out, r); err != nil {
		return err
	}
	if read.Records == 0 {
		return &exitError{code: exitFailure, msg: "no record was read"}
	}
	return nil
}

// waitReaders prints progress each second until every reader has
// finished, the duration is up, or ctx ends (then it reports true).
func (c *benchVerb) waitReaders(ctx context.Context, set *readerSet, start time.Time, progress io.Writer) bool {
	timer := time.NewTimer(c.duration)
	defer timer.Stop()
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	var last uint64
	lastTick := start
	for {
		select {
		case now := <-ticker.C:
			n := set.progress()
			fmt.Fprintf(progress, "%6s %10.0f records/s %12d read\n", now.Sub(start).Round(time.Second), float64(n-last)/now.Sub(lastTick).Seconds(), n)
			last, lastTick = n, now
		case <-set.done:
			return false
		case <-timer.C:
			return false
		case <-ctx.Done():
			return true
		}
	}
}

// allShards lists the ids of every shard of the stream, open and closed.
func allShards(ctx context.Context, conn *connFlags, streams rifflev1.StreamsClient, stream string) ([]string, error) {
	shards, err := listAllShards(ctx, conn, streams, stream)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(shards))
	for i, sh := range shards {
		out[i] = sh.GetShardId()
	}
	return out, nil
}
