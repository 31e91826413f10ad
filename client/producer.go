package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Limits of the API that the producer checks before sending (DESIGN.md).
const (
	MaxRecordBytes       = 1 << 20 // data plus partition key
	MaxPartitionKeyChars = 256
	MaxPutRecordsEntries = 500
	MaxPutRecordsBytes   = 5 << 20
)

// Defaults of ProducerConfig.
const (
	DefaultLinger             = 20 * time.Millisecond
	DefaultMaxBufferedBytes   = 32 << 20
	DefaultMaxBufferedRecords = 50_000
)

// mapRefreshInterval is the least time between two shard map refreshes, so
// that a burst of stale-map signals costs one ListShards.
const mapRefreshInterval = time.Second

// ErrProducerClosed is the error of a Put on a closed producer, and of
// records still unsent when Close gave up.
var ErrProducerClosed = errors.New("client: producer closed")

// ProducerConfig tunes a Producer. The zero value takes every default.
type ProducerConfig struct {
	// MaxBatchRecords bounds the records of one PutRecords call; 500 (the
	// API's limit) when 0.
	MaxBatchRecords int
	// MaxBatchBytes bounds the data plus partition keys of one call; 5 MiB
	// (the API's limit) when 0.
	MaxBatchBytes int
	// Linger is how long a record may wait for more records of its shard
	// before its batch is sent anyway; DefaultLinger when 0, negative to
	// send at once. Longer lingering makes fewer, larger calls.
	Linger time.Duration
	// MaxBufferedBytes and MaxBufferedRecords bound the records put and not
	// yet answered; Put blocks while they are reached. DefaultMaxBufferedBytes
	// and DefaultMaxBufferedRecords when 0.
	MaxBufferedBytes   int
	MaxBufferedRecords int
	// Retry says how often a throttled or failed batch is sent again and how
	// long to wait. Its AttemptTimeout bounds each PutRecords call.
	Retry RetryPolicy
	// Logger receives the producer's logs; slog.Default() when nil.
	Logger *slog.Logger
}

func (c ProducerConfig) withDefaults() ProducerConfig {
	if c.MaxBatchRecords <= 0 || c.MaxBatchRecords > MaxPutRecordsEntries {
		c.MaxBatchRecords = MaxPutRecordsEntries
	}
	if c.MaxBatchBytes <= 0 || c.MaxBatchBytes > MaxPutRecordsBytes {
		c.MaxBatchBytes = MaxPutRecordsBytes
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	c.Linger = max(c.Linger, 0)
	if c.MaxBufferedBytes <= 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if c.MaxBufferedRecords <= 0 {
		c.MaxBufferedRecords = DefaultMaxBufferedRecords
	}
	c.Retry = c.Retry.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// ProducerStats count what a producer has done since it started.
type ProducerStats struct {
	// Calls is the number of PutRecords calls made.
	Calls int64
	// Acked is the number of records the broker stored.
	Acked int64
	// Failed is the number of records put that failed, OutcomeUnknown
	// included (not those refused by Put's own checks).
	Failed int64
	// OutcomeUnknown is the number of records whose outcome is unknown.
	OutcomeUnknown int64
	// Throttled is the number of record entries the broker refused with
	// ProvisionedThroughputExceededException (each retry counted again).
	Throttled int64
	// Retried is the number of records sent again.
	Retried int64
}

// Producer writes records to one stream asynchronously. Put hands a record
// over and returns a future; the producer groups records by shard into
// PutRecords calls of up to MaxBatchRecords records and MaxBatchBytes bytes,
// sent when full, when their oldest record has lingered for Linger, or on
// Flush and Close.
//
// Order: records of one partition key are stored in the order of their Put
// calls. The producer keeps at most one PutRecords call in flight per shard
// and sends throttled records again before anything put after them to that
// shard. This holds while the broker refuses, of one shard's part of a call,
// a suffix (as a throughput limit does); a record that finally fails leaves
// a gap, not a reordering.
//
// A Producer is safe for concurrent use. One goroutine owns its queues;
// Close stops it.
type Producer struct {
	c      *Client
	stream string
	cfg    ProducerConfig
	log    *slog.Logger
	buf    *bufferLimit

	incoming chan *pendingRecord
	flushReq chan *flushWaiter
	results  chan batchResult
	refresh  chan refreshResult

	closeOnce sync.Once
	closing   chan struct{} // closed by Close: no more Puts
	abortOnce sync.Once
	abort     chan struct{} // closed when Close's ctx ends: give up
	done      chan struct{} // closed when the owner has exited

	// runCtx bounds the producer's calls; cancelled on abort.
	runCtx    context.Context
	cancelRun context.CancelFunc

	stats struct {
		calls, acked, failed, unknown, throttled, retried atomic.Int64
	}
}

// pendingRecord is a record handed to the owner and not yet answered.
type pendingRecord struct {
	seq      uint64 // order of arrival at the owner
	key      string
	data     []byte
	ehk      string
	hash     *big.Int
	size     int
	shard    string // predicted by the shard map; "" when it covers nothing
	enqueued time.Time
	attempts int
	future   *PutFuture
}

// shardQueue is the owner's queue of one shard's unsent records, in seq
// order.
type shardQueue struct {
	id        string
	records   []*pendingRecord
	bytes     int
	inflight  bool
	failures  int       // consecutive calls that stored nothing
	notBefore time.Time // back-off after a failure
	// window bounds the records of the next call while the shard is
	// throttled (0: MaxBatchRecords). It shrinks to what the broker last
	// admitted and doubles after each call that is not throttled, so that
	// a throttled producer does not send 500 records to get 20 stored.
	window int
}

// batchLimit is how many records q's next call may carry.
func (q *shardQueue) batchLimit(maxRecords int) int {
	if q.window > 0 {
		return min(q.window, maxRecords)
	}
	return maxRecords
}

// throttled shrinks q's window after a call of which admitted records were
// stored and the rest throttled.
func (q *shardQueue) throttled(sent, admitted int) {
	if admitted == 0 {
		admitted = sent / 2
	}
	q.window = max(1, admitted)
}

// unthrottled grows q's window after a call that was not throttled.
func (q *shardQueue) unthrottled(maxRecords int) {
	if q.window > 0 {
		q.window *= 2
		if q.window >= maxRecords {
			q.window = 0
		}
	}
}

type batchResult struct {
	queue string
	gen   uint64
	recs  []*pendingRecord
	resp  *rifflev1.PutRecordsResponse
	err   error
	sent  bool
}

type refreshResult struct {
	m   *shardMap
	err error
}

type flushWaiter struct {
	upTo      uint64
	remaining int
	done      chan struct{}
}

// PutOption sets an option of one Put.
type PutOption func(*pendingRecord)

// WithExplicitHashKey routes the record by hashKey (a decimal in
// [0, 2^128-1]) instead of the hash of its partition key.
func WithExplicitHashKey(hashKey string) PutOption {
	return func(r *pendingRecord) { r.ehk = hashKey }
}

// NewProducer returns a producer for stream, after reading its shards.
func NewProducer(ctx context.Context, c *Client, stream string, cfg ProducerConfig) (*Producer, error) {
	cfg = cfg.withDefaults()
	m, err := loadShardMap(ctx, c, stream, cfg.Retry)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p := &Producer{
		c: c, stream: stream, cfg: cfg,
		log:       cfg.Logger.With("stream", stream),
		buf:       newBufferLimit(cfg.MaxBufferedBytes, cfg.MaxBufferedRecords),
		incoming:  make(chan *pendingRecord),
		flushReq:  make(chan *flushWaiter),
		results:   make(chan batchResult),
		refresh:   make(chan refreshResult),
		closing:   make(chan struct{}),
		abort:     make(chan struct{}),
		done:      make(chan struct{}),
		runCtx:    runCtx,
		cancelRun: cancel,
	}
	o := &producerOwner{p: p, m: m, queues: map[string]*shardQueue{}, lastRefresh: time.Now()}
	go o.run()
	return p, nil
}

// Put hands a record over and returns its future at once, blocking only
// while the producer's buffer is full (until there is room, ctx ends or
// the producer closes; ctx bounds nothing else). data is copied. A record
// the broker would refuse (empty or over-long key, over 1 MiB, a malformed
// explicit hash key) fails at once with a *RecordError.
func (p *Producer) Put(ctx context.Context, partitionKey string, data []byte, opts ...PutOption) *PutFuture {
	r := &pendingRecord{key: partitionKey}
	for _, opt := range opts {
		opt(r)
	}
	if err := r.validate(len(data)); err != nil {
		return failedFuture(err)
	}
	select {
	case <-p.closing:
		return failedFuture(ErrProducerClosed)
	default:
	}
	r.data = slices.Clone(data)
	r.size = len(partitionKey) + len(data)
	r.future = newPutFuture()
	if err := p.buf.acquire(ctx, r.size, p.closing); err != nil {
		return failedFuture(err)
	}
	select {
	case p.incoming <- r:
		return r.future
	case <-p.closing:
		p.buf.release(r.size, 1)
		return failedFuture(ErrProducerClosed)
	}
}

// validate checks what the broker would refuse, and hashes the record.
func (r *pendingRecord) validate(dataLen int) error {
	switch n := utf8.RuneCountInString(r.key); {
	case r.key == "":
		return &RecordError{Code: ValidationException, Message: "partition key must not be empty"}
	case !utf8.ValidString(r.key):
		return &RecordError{Code: ValidationException, Message: "partition key must be valid UTF-8"}
	case n > MaxPartitionKeyChars:
		return &RecordError{Code: ValidationException, Message: fmt.Sprintf("partition key has %d characters, at most %d are allowed", n, MaxPartitionKeyChars)}
	}
	if size := len(r.key) + dataLen; size > MaxRecordBytes {
		return &RecordError{Code: ValidationException, Message: fmt.Sprintf("record of %d bytes (data plus partition key) exceeds the limit of %d", size, MaxRecordBytes)}
	}
	if r.ehk != "" {
		h, ok := parseHashKey(r.ehk)
		if !ok {
			return &RecordError{Code: InvalidArgumentException, Message: fmt.Sprintf("explicit hash key %q must be a decimal integer in [0, 2^128-1]", r.ehk)}
		}
		r.hash = h
	} else {
		r.hash = PartitionHash(r.key)
	}
	return nil
}

// Flush waits until every record put before it was called has a result
// (sending lingering batches at once), or ctx ends. The results are in the
// records' futures.
func (p *Producer) Flush(ctx context.Context) error {
	w := &flushWaiter{done: make(chan struct{})}
	select {
	case p.flushReq <- w:
	case <-p.done:
		return nil // closed: every record has its result
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-w.done:
		return nil
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops taking records, sends what is buffered and waits for every
// result. If ctx ends first, Close gives up: calls in flight are cancelled
// (their records fail with an error matching ErrOutcomeUnknown) and unsent
// records fail with ErrProducerClosed; Close then returns ctx's error.
// Close does not close the Client.
func (p *Producer) Close(ctx context.Context) error {
	p.closeOnce.Do(func() { close(p.closing) })
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		p.abortOnce.Do(func() { close(p.abort) })
		<-p.done
		return ctx.Err()
	}
}

// Stats returns the producer's counters.
func (p *Producer) Stats() ProducerStats {
	return ProducerStats{
		Calls:          p.stats.calls.Load(),
		Acked:          p.stats.acked.Load(),
		Failed:         p.stats.failed.Load(),
		OutcomeUnknown: p.stats.unknown.Load(),
		Throttled:      p.stats.throttled.Load(),
		Retried:        p.stats.retried.Load(),
	}
}

// producerOwner is the state of the goroutine that owns a producer's
// queues; nothing else touches it.
type producerOwner struct {
	p      *Producer
	m      *shardMap
	gen    uint64 // bumped by each new shard map
	queues map[string]*shardQueue

	nextSeq    uint64
	unresolved int // records received and not answered
	waiters    []*flushWaiter
	flushUpTo  uint64 // records up to this seq are sent without lingering
	closing    bool
	aborted    bool

	oldGenInflight int // calls in flight that were routed by an older map
	needRefresh    bool
	refreshing     bool
	lastRefresh    time.Time
}

func (o *producerOwner) run() {
	p := o.p
	defer close(p.done)
	defer p.cancelRun()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	incoming, closing, abort := p.incoming, p.closing, p.abort
	for {
		now := time.Now()
		o.maybeRefresh(now)
		wake := o.dispatch(now)
		if o.closing && o.unresolved == 0 && !o.refreshing {
			return
		}
		timer.Reset(max(time.Until(wake), 0))
		select {
		case r := <-incoming:
			o.accept(r)
		case w := <-p.flushReq:
			o.addWaiter(w)
		case res := <-p.results:
			o.handleResult(res)
		case res := <-p.refresh:
			o.applyRefresh(res)
		case <-closing:
			o.closing, closing, incoming = true, nil, nil
			o.flushUpTo = o.nextSeq
		case <-abort:
			abort = nil
			o.giveUp()
		case <-timer.C:
		}
	}
}

func (o *producerOwner) accept(r *pendingRecord) {
	o.nextSeq++
	r.seq = o.nextSeq
	r.enqueued = time.Now()
	o.unresolved++
	o.route([]*pendingRecord{r})
}

// route puts records into their shards' queues, keeping each queue in seq
// order: a record sent again goes before the records put after it.
func (o *producerOwner) route(recs []*pendingRecord) {
	byShard := map[string][]*pendingRecord{}
	for _, r := range recs {
		id, ok := o.m.shardFor(r.hash)
		if !ok {
			o.needRefresh = true // the broker routes it; the map has a hole
		}
		r.shard = id
		byShard[id] = append(byShard[id], r)
	}
	for id, rs := range byShard {
		q := o.queues[id]
		if q == nil {
			q = &shardQueue{id: id}
			o.queues[id] = q
		}
		slices.SortFunc(rs, func(a, b *pendingRecord) int { return cmpSeq(a.seq, b.seq) })
		q.records = mergeBySeq(q.records, rs)
		for _, r := range rs {
			q.bytes += r.size
		}
	}
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// mergeBySeq merges two slices sorted by seq.
func mergeBySeq(a, b []*pendingRecord) []*pendingRecord {
	if len(a) == 0 {
		return b
	}
	if a[len(a)-1].seq < b[0].seq {
		return append(a, b...)
	}
	out := make([]*pendingRecord, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if a[i].seq < b[j].seq {
			out = append(out, a[i])
			i++
		} else {
			out = append(out, b[j])
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

func (o *producerOwner) addWaiter(w *flushWaiter) {
	if o.unresolved == 0 {
		close(w.done)
		return
	}
	// Every unresolved record arrived before this request.
	w.upTo, w.remaining = o.nextSeq, o.unresolved
	o.waiters = append(o.waiters, w)
	o.flushUpTo = max(o.flushUpTo, w.upTo)
}

// dispatch starts a call for every queue that is ready, and returns when
// the next one may become ready.
func (o *producerOwner) dispatch(now time.Time) time.Time {
	wake := now.Add(time.Hour)
	if o.needRefresh && !o.refreshing {
		wake = minTime(wake, o.lastRefresh.Add(mapRefreshInterval))
	}
	if o.aborted {
		return wake
	}
	for _, q := range o.queues {
		if q.inflight || len(q.records) == 0 {
			continue
		}
		if o.oldGenInflight > 0 {
			// Records routed by the old map may come back for another
			// try; send nothing routed by the new one before they have.
			continue
		}
		if now.Before(q.notBefore) {
			wake = minTime(wake, q.notBefore)
			continue
		}
		head := q.records[0]
		lingerEnd := head.enqueued.Add(o.p.cfg.Linger)
		ready := o.closing || head.seq <= o.flushUpTo || head.attempts > 0 ||
			len(q.records) >= q.batchLimit(o.p.cfg.MaxBatchRecords) || q.bytes >= o.p.cfg.MaxBatchBytes ||
			!now.Before(lingerEnd)
		if !ready {
			wake = minTime(wake, lingerEnd)
			continue
		}
		o.send(q)
	}
	return wake
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// send takes the head of q as one batch and calls PutRecords with it.
func (o *producerOwner) send(q *shardQueue) {
	cfg := o.p.cfg
	n, bytes := 0, 0
	limit := q.batchLimit(cfg.MaxBatchRecords)
	for n < len(q.records) && n < limit {
		if n > 0 && bytes+q.records[n].size > cfg.MaxBatchBytes {
			break
		}
		bytes += q.records[n].size
		n++
	}
	batch := slices.Clone(q.records[:n])
	q.records = slices.Delete(q.records, 0, n)
	q.bytes -= bytes
	q.inflight = true
	req := &rifflev1.PutRecordsRequest{StreamName: o.p.stream, Records: make([]*rifflev1.PutRecordsRequestEntry, n)}
	for i, r := range batch {
		if r.attempts > 0 {
			o.p.stats.retried.Add(1)
		}
		r.attempts++
		req.Records[i] = &rifflev1.PutRecordsRequestEntry{PartitionKey: r.key, Data: r.data, ExplicitHashKey: r.ehk}
	}
	o.p.stats.calls.Add(1)
	gen := o.gen
	go func() {
		ctx, cancel := cfg.Retry.attemptContext(o.p.runCtx)
		defer cancel()
		var pr peer.Peer
		resp, err := o.p.c.Streams().PutRecords(ctx, req, grpc.Peer(&pr))
		// The owner receives every result before it exits.
		o.p.results <- batchResult{queue: q.id, gen: gen, recs: batch, resp: resp, err: err, sent: pr.Addr != nil}
	}()
}

func (o *producerOwner) handleResult(res batchResult) {
	q := o.queues[res.queue]
	q.inflight = false
	if res.gen != o.gen {
		o.oldGenInflight--
	}
	if res.err == nil && len(res.resp.GetRecords()) != len(res.recs) {
		res.err = &OutcomeUnknownError{Cause: fmt.Errorf("PutRecords answered %d entries for %d records", len(res.resp.GetRecords()), len(res.recs))}
	}
	if res.err != nil {
		o.handleCallError(q, res)
		return
	}
	var again []*pendingRecord
	var lastErr error
	progress := false
	admitted, throttled := 0, 0
	for i, e := range res.resp.GetRecords() {
		r := res.recs[i]
		if e.GetErrorCode() == "" {
			if r.shard != "" && e.GetShardId() != r.shard {
				o.needRefresh = true // the broker routed it elsewhere: the map is stale
			}
			progress = true
			admitted++
			o.resolve(r, PutResult{ShardID: e.GetShardId(), SequenceNumber: e.GetSequenceNumber(), Attempts: r.attempts}, nil)
			continue
		}
		recErr := &RecordError{Code: e.GetErrorCode(), Message: e.GetErrorMessage()}
		switch entryVerdict(e.GetErrorCode()) {
		case retry:
			if e.GetErrorCode() == ProvisionedThroughputExceededException {
				o.p.stats.throttled.Add(1)
				throttled++
			} else {
				o.needRefresh = true
			}
			again, lastErr = append(again, r), recErr
		case outcomeUnknown:
			if o.p.cfg.Retry.RetryUnknownOutcome && !o.aborted {
				again, lastErr = append(again, r), recErr
				continue
			}
			o.resolve(r, PutResult{}, &OutcomeUnknownError{Cause: recErr})
		default:
			o.resolve(r, PutResult{}, recErr)
		}
	}
	if progress {
		q.failures = 0
	} else if len(again) > 0 {
		q.failures++
	}
	if throttled > 0 {
		q.throttled(len(res.recs), admitted)
	} else {
		q.unthrottled(o.p.cfg.MaxBatchRecords)
	}
	if len(again) > 0 {
		o.retryLater(q, again, lastErr)
	}
}

// entryVerdict classifies the error code of a PutRecords result entry. The
// broker reports a write whose outcome it could not know as InternalFailure,
// so that one is not safe to repeat.
func entryVerdict(code string) verdict {
	switch code {
	case ProvisionedThroughputExceededException, ServiceUnavailable:
		return retry
	case InternalFailure:
		return outcomeUnknown
	}
	return fail
}

func (o *producerOwner) handleCallError(q *shardQueue, res batchResult) {
	v := classify(o.p.runCtx, res.err, true, res.sent)
	if v == outcomeUnknown && o.p.cfg.Retry.RetryUnknownOutcome && !o.aborted {
		v = retry
	}
	switch {
	case v == retry && !o.aborted:
		if ExceptionName(res.err) == ProvisionedThroughputExceededException {
			o.p.stats.throttled.Add(int64(len(res.recs)))
			q.throttled(len(res.recs), 0)
		} else {
			o.needRefresh = true
		}
		q.failures++
		o.retryLater(q, res.recs, res.err)
	case v == outcomeUnknown:
		for _, r := range res.recs {
			o.resolve(r, PutResult{}, &OutcomeUnknownError{Cause: res.err})
		}
	default:
		for _, r := range res.recs {
			o.resolve(r, PutResult{}, res.err)
		}
	}
}

// retryLater queues recs again, ahead of what was put after them, and
// backs q off; or fails them once q has failed MaxAttempts calls in a row.
func (o *producerOwner) retryLater(q *shardQueue, recs []*pendingRecord, err error) {
	policy := o.p.cfg.Retry
	if o.aborted {
		// Not applied, and Close has given up: nothing will send them.
		for _, r := range recs {
			o.resolve(r, PutResult{}, fmt.Errorf("%w before a retry could be sent (last error: %w)", ErrProducerClosed, err))
		}
		return
	}
	if q.failures >= policy.MaxAttempts {
		gaveUp := fmt.Errorf("client: gave up after %d calls without progress: %w", q.failures, err)
		if errors.Is(err, ErrOutcomeUnknown) {
			gaveUp = &OutcomeUnknownError{Cause: gaveUp}
		}
		for _, r := range recs {
			o.resolve(r, PutResult{}, gaveUp)
		}
		q.failures = 0
		return
	}
	// After a partial success wait only a short draw, to let the limit
	// refill without idling.
	q.notBefore = time.Now().Add(policy.Delay(max(q.failures-1, 0), err))
	o.p.log.Debug("resending records", "shard", q.id, "records", len(recs), "failures", q.failures, "error", err)
	o.route(recs)
	// A record routed elsewhere by a newer map must still wait for this
	// queue's back-off, or it would overtake nothing but hammer the limit.
	for _, r := range recs {
		if r.shard != q.id {
			if other := o.queues[r.shard]; other.notBefore.Before(q.notBefore) {
				other.notBefore = q.notBefore
			}
		}
	}
}

// resolve answers one record and gives its room back.
func (o *producerOwner) resolve(r *pendingRecord, res PutResult, err error) {
	switch {
	case err == nil:
		o.p.stats.acked.Add(1)
	case errors.Is(err, ErrOutcomeUnknown):
		o.p.stats.unknown.Add(1)
		o.p.stats.failed.Add(1)
	default:
		o.p.stats.failed.Add(1)
	}
	r.future.resolve(res, err)
	r.data = nil
	o.p.buf.release(r.size, 1)
	o.unresolved--
	kept := o.waiters[:0]
	for _, w := range o.waiters {
		if r.seq <= w.upTo {
			w.remaining--
		}
		if w.remaining == 0 {
			close(w.done)
			continue
		}
		kept = append(kept, w)
	}
	o.waiters = kept
}

// giveUp ends a Close whose context ended: calls in flight are cancelled
// and everything unsent fails.
func (o *producerOwner) giveUp() {
	o.aborted = true
	o.p.cancelRun()
	for _, q := range o.queues {
		for _, r := range q.records {
			o.resolve(r, PutResult{}, ErrProducerClosed)
		}
		q.records, q.bytes = nil, 0
	}
}

// maybeRefresh starts reading the shard map again when it looks stale, at
// most once per mapRefreshInterval.
func (o *producerOwner) maybeRefresh(now time.Time) {
	if !o.needRefresh || o.refreshing || o.aborted || (o.closing && o.unresolved == 0) ||
		now.Sub(o.lastRefresh) < mapRefreshInterval {
		return
	}
	o.needRefresh, o.refreshing = false, true
	p := o.p
	go func() {
		m, err := loadShardMap(p.runCtx, p.c, p.stream, p.cfg.Retry)
		p.refresh <- refreshResult{m: m, err: err}
	}()
}

// applyRefresh switches to a new shard map and routes every unsent record
// by it.
func (o *producerOwner) applyRefresh(res refreshResult) {
	o.refreshing = false
	o.lastRefresh = time.Now()
	if res.err != nil {
		if !o.aborted {
			o.p.log.Warn("shard map refresh failed", "error", res.err)
		}
		return
	}
	o.m = res.m
	o.gen++
	o.oldGenInflight = 0
	var unsent []*pendingRecord
	now := time.Now()
	for id, q := range o.queues {
		if q.inflight {
			o.oldGenInflight++
		}
		unsent = append(unsent, q.records...)
		q.records, q.bytes = nil, 0
		if !q.inflight && !now.Before(q.notBefore) {
			delete(o.queues, id) // a closed shard's queue would linger forever
		}
	}
	o.p.log.Debug("shard map refreshed", "shards", len(res.m.ranges), "rerouted", len(unsent))
	o.route(unsent)
}
