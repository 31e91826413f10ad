//go:build fault

package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Workload shape: every node gets writersPerNode writers and a GetRecords
// reader per shard; one more writer and a reader of each shard speak
// Kinesis's HTTP API; each shard has one subscriber that moves to the next
// node whenever its subscription breaks.
const (
	streamShards   = 4
	writersPerNode = 2
	writeInterval  = 30 * time.Millisecond // per writer: about 200 puts/s in all
	readPoll       = 100 * time.Millisecond
	callTimeout    = 3 * time.Second
	putTimeout     = 2 * time.Second
	subSilence     = 10 * time.Second // a subscription with no event for this long is given up
	consumerName   = "fault-fanout"
	// keyPool is how many partition keys writers choose from: few enough
	// that every key has records on both sides of a reshard (contract 5).
	keyPool = 256
	// Every lullEvery, all clients go silent for lullLength (subscribers
	// end their subscriptions), so that the cluster's shards hibernate
	// (the fault runs' nodes have RIFFLE_HIBERNATE_AFTER=1s) and wake
	// again under whatever fault is in force (docs/hibernation.md).
	lullEvery  = 40 * time.Second
	lullLength = 5 * time.Second
)

// workload runs the clients of a fault run and records every operation.
type workload struct {
	rec         *Recorder
	stream      string
	shards      []string // the stream's first shards
	consumerARN string
	clients     map[string]*client.Client // one per node, calls go only there
	seed        uint64
	wg          sync.WaitGroup

	// Readers and subscribers follow resharding: a reader (one per node
	// and shard) or subscriber (one per shard) that reaches the end of a
	// closed shard starts its children's once every parent of the child
	// has ended for it, so that each sees a key's parent records first.
	mu      sync.Mutex
	ended   map[string]bool // "n1/shardId" for readers, "sub/shardId" for subscribers
	started map[string]bool
	// lullUntil is when the current lull ends (zero: none yet), and
	// lullStarted is closed when it began; under mu.
	lullUntil   time.Time
	lullStarted chan struct{}
	lulls       int
	// asleep is the most replicas seen hibernating (over every node)
	// near the end of a lull; under mu.
	asleep int
}

// setUp connects to every node, creates the stream (unlimited, so the
// history shows faults rather than throttling) and registers the fan-out
// consumer, waiting until every node sees both.
func setUp(ctx context.Context, rec *Recorder, seed uint64) (*workload, error) {
	w := &workload{rec: rec, seed: seed, clients: map[string]*client.Client{}, stream: fmt.Sprintf("fault-%d", time.Now().UnixNano()),
		ended: map[string]bool{}, started: map[string]bool{}}
	for _, n := range clusterNodes {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cl, err := dialNode(dctx, n)
		cancel()
		if err != nil {
			w.close()
			return nil, fmt.Errorf("dial %s: %w", n.service, err)
		}
		w.clients[n.service] = cl
	}
	zero := func() *int64 { return new(int64) }
	limits := &rifflev1.ShardLimits{WriteBytesPerSecond: zero(), WriteRecordsPerSecond: zero(),
		ReadBytesPerSecond: zero(), ReadCallsPerSecond: zero(), FanOutBytesPerSecond: zero()}
	n1 := w.clients["n1"].Streams()
	if err := retryRead(ctx, 30*time.Second, func(ctx context.Context, opts ...grpc.CallOption) error {
		_, err := n1.CreateStream(ctx, &rifflev1.CreateStreamRequest{StreamName: w.stream, ShardCount: streamShards, ShardLimits: limits}, opts...)
		if client.ExceptionName(err) == client.ResourceInUseException {
			return nil // an earlier attempt went through
		}
		return err
	}); err != nil {
		w.close()
		return nil, fmt.Errorf("CreateStream: %w", err)
	}
	for name, cl := range w.clients {
		err := waitFor(ctx, 60*time.Second, func() error {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			defer cancel()
			out, err := cl.Streams().DescribeStreamSummary(cctx, &rifflev1.DescribeStreamSummaryRequest{StreamName: w.stream})
			if err != nil {
				return err
			}
			if s := out.GetStreamDescriptionSummary().GetStreamStatus(); s != rifflev1.StreamStatus_STREAM_STATUS_ACTIVE {
				return fmt.Errorf("stream %v", s)
			}
			return nil
		})
		if err != nil {
			w.close()
			return nil, fmt.Errorf("stream ACTIVE on %s: %w", name, err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	shards, err := n1.ListShards(cctx, &rifflev1.ListShardsRequest{StreamName: w.stream})
	cancel()
	if err != nil {
		w.close()
		return nil, fmt.Errorf("ListShards: %w", err)
	}
	for _, s := range shards.GetShards() {
		w.shards = append(w.shards, s.GetShardId())
		rec.Record(Op{Type: OK, F: FShard, Process: "lineage", Shard: s.GetShardId()})
	}
	err = retryRead(ctx, 30*time.Second, func(ctx context.Context, opts ...grpc.CallOption) error {
		out, err := n1.RegisterStreamConsumer(ctx, &rifflev1.RegisterStreamConsumerRequest{StreamName: w.stream, ConsumerName: consumerName}, opts...)
		if err == nil {
			w.consumerARN = out.GetConsumer().GetConsumerArn()
		}
		return err
	})
	if err != nil {
		w.close()
		return nil, fmt.Errorf("RegisterStreamConsumer: %w", err)
	}
	err = waitFor(ctx, 60*time.Second, func() error {
		for name, cl := range w.clients {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			out, err := cl.Streams().DescribeStreamConsumer(cctx, &rifflev1.DescribeStreamConsumerRequest{ConsumerArn: w.consumerARN})
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if s := out.GetConsumerDescription().GetConsumerStatus(); s != rifflev1.ConsumerStatus_CONSUMER_STATUS_ACTIVE {
				return fmt.Errorf("%s: consumer %v", name, s)
			}
		}
		return nil
	})
	if err != nil {
		w.close()
		return nil, fmt.Errorf("consumer ACTIVE: %w", err)
	}
	return w, nil
}

// retryRead runs a call under the SDK's retry policy, again and again
// until it succeeds or timeout passes: for setting up, not for the history.
func retryRead(ctx context.Context, timeout time.Duration, call client.Call) error {
	return waitFor(ctx, timeout, func() error { return client.RetryPolicy{}.Read(ctx, call) })
}

func (w *workload) close() {
	for _, cl := range w.clients {
		cl.Close()
	}
}

// runLulls silences the clients for lullLength every lullEvery.
func (w *workload) runLulls(ctx context.Context) {
	for {
		pause(ctx, lullEvery)
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		w.lullUntil = time.Now().Add(lullLength)
		close(w.lullStarted)
		w.lullStarted = make(chan struct{})
		w.lulls++
		w.mu.Unlock()
		pause(ctx, lullLength-time.Second)
		n := hibernating()
		w.mu.Lock()
		w.asleep = max(w.asleep, n)
		w.mu.Unlock()
	}
}

// hibernating sums riffle_shards_hibernating over the nodes that answer.
func hibernating() int {
	hc := http.Client{Timeout: 2 * time.Second}
	n := 0
	for _, node := range clusterNodes {
		resp, err := hc.Get("http://" + node.admin + "/metrics")
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, "riffle_shards_hibernating "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				n += int(f)
			}
		}
	}
	return n
}

// awaitLoud waits until no lull is in force, and returns a channel closed
// when the next one starts.
func (w *workload) awaitLoud(ctx context.Context) <-chan struct{} {
	for {
		w.mu.Lock()
		left, next := time.Until(w.lullUntil), w.lullStarted
		w.mu.Unlock()
		if left <= 0 || ctx.Err() != nil {
			return next
		}
		pause(ctx, left)
	}
}

// Lulls is how many lulls the workload has had, and the most replicas
// seen hibernating in one.
func (w *workload) Lulls() (lulls, asleep int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lulls, w.asleep
}

// start launches every client; they stop when ctx ends, and wait returns
// once they have.
func (w *workload) start(ctx context.Context) {
	w.mu.Lock()
	w.lullStarted = make(chan struct{})
	w.mu.Unlock()
	w.wg.Go(func() { w.runLulls(ctx) })
	for ni, n := range clusterNodes {
		for i := range writersPerNode {
			proc := fmt.Sprintf("w%d", ni*writersPerNode+i)
			rng := rand.New(rand.NewPCG(w.seed, uint64(ni*writersPerNode+i)))
			w.wg.Go(func() { w.writer(ctx, proc, n.service, rng) })
		}
		for _, shard := range w.shards {
			w.startReader(ctx, n.service, shard)
		}
	}
	// And through Kinesis's HTTP API (kinesis_workload_test.go): one writer
	// going round the nodes, and a reader of each shard through one node,
	// so that the load stays near what the lulls were tuned for.
	krng := rand.New(rand.NewPCG(w.seed, 1000))
	w.wg.Go(func() { w.kinesisWriter(ctx, "kw", krng) })
	for i, shard := range w.shards {
		w.startKinesisReader(ctx, clusterNodes[i%len(clusterNodes)].service, shard)
	}
	for _, shard := range w.shards {
		w.startSubscriber(ctx, shard)
	}
}

// startReader starts node's reader of shard, once.
func (w *workload) startReader(ctx context.Context, node, shard string) {
	if w.claim(node + "/" + shard) {
		w.wg.Go(func() { w.reader(ctx, fmt.Sprintf("r-%s-%s", node, shard), node, shard) })
	}
}

// startSubscriber starts shard's subscriber, once.
func (w *workload) startSubscriber(ctx context.Context, shard string) {
	if w.claim("sub/" + shard) {
		w.wg.Go(func() { w.subscriber(ctx, "s-"+shard, shard) })
	}
}

func (w *workload) claim(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started[id] {
		return false
	}
	w.started[id] = true
	return true
}

// endShard records that who ("n1" for that node's readers, "sub" for the
// subscribers) finished shard, and returns the children whose parents it
// has all finished.
func (w *workload) endShard(who, shard string, children []*rifflev1.ChildShard) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended[who+"/"+shard] = true
	var ready []string
	for _, c := range children {
		all := true
		for _, p := range c.GetParentShards() {
			all = all && w.ended[who+"/"+p]
		}
		if all {
			ready = append(ready, c.GetShardId())
		}
	}
	return ready
}

func (w *workload) wait() { w.wg.Wait() }

// writer puts unique values ("w3-17") with random partition keys through
// one node, one call at a time, never retrying: an error the SDK proves
// was not applied is a fail, any other (ErrOutcomeUnknown) is info.
func (w *workload) writer(ctx context.Context, proc, node string, rng *rand.Rand) {
	streams := w.clients[node].Streams()
	policy := client.RetryPolicy{MaxAttempts: 1, AttemptTimeout: putTimeout}
	tick := time.NewTicker(writeInterval)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		w.awaitLoud(ctx)
		value := fmt.Sprintf("%s-%d", proc, i)
		key := fmt.Sprintf("k%03d", rng.IntN(keyPool))
		w.rec.Record(Op{Type: Invoke, F: FPut, Process: proc, Node: node, Value: value, Key: key})
		var out *rifflev1.PutRecordResponse
		// Not ctx: stopping the run must not turn a write in flight into
		// an unknown outcome. The attempt timeout bounds it.
		err := policy.Write(context.Background(), func(ctx context.Context, opts ...grpc.CallOption) error {
			var err error
			out, err = streams.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: w.stream, PartitionKey: key, Data: []byte(value)}, opts...)
			return err
		})
		done := Op{F: FPut, Process: proc, Node: node, Value: value, Key: key}
		switch {
		case err == nil:
			done.Type, done.Shard, done.Seq = OK, out.GetShardId(), out.GetSequenceNumber()
		case errors.Is(err, client.ErrOutcomeUnknown):
			done.Type, done.Error = Info, err.Error()
		default:
			done.Type, done.Error = Fail, err.Error()
		}
		w.rec.Record(done)
	}
}

// reader follows one shard through one node with a GetRecords chain from
// the shard's start. After an error it asks for a new iterator after the
// last record it saw, so the chain goes on where it stopped.
func (w *workload) reader(ctx context.Context, proc, node, shard string) {
	streams := w.clients[node].Streams()
	var it, last string
	for ctx.Err() == nil {
		if it == "" {
			req := &rifflev1.GetShardIteratorRequest{StreamName: w.stream, ShardId: shard,
				ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON}
			if last != "" {
				req.ShardIteratorType, req.StartingSequenceNumber = rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER, last
			}
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			out, err := streams.GetShardIterator(cctx, req)
			cancel()
			if err != nil {
				pause(ctx, readPoll)
				continue
			}
			it = out.GetShardIterator()
		}
		w.awaitLoud(ctx)
		w.rec.Record(Op{Type: Invoke, F: FRead, Process: proc, Node: node, Shard: shard})
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		out, err := streams.GetRecords(cctx, &rifflev1.GetRecordsRequest{ShardIterator: it, Limit: 1000})
		cancel()
		if err != nil {
			// A read changes nothing: every failed one is a fail.
			w.rec.Record(Op{Type: Fail, F: FRead, Process: proc, Node: node, Shard: shard, Error: err.Error()})
			it = ""
			pause(ctx, readPoll)
			continue
		}
		recs := records(out.GetRecords())
		closed := out.GetNextShardIterator() == ""
		w.rec.Record(Op{Type: OK, F: FRead, Process: proc, Node: node, Shard: shard, Records: recs, Closed: closed})
		if closed {
			for _, child := range w.endShard(node, shard, out.GetChildShards()) {
				w.startReader(ctx, node, child)
			}
			return
		}
		if len(recs) > 0 {
			last = recs[len(recs)-1].Seq
		} else {
			pause(ctx, readPoll)
		}
		it = out.GetNextShardIterator()
	}
}

// subscriber follows one shard with SubscribeToShard, each event an
// operation. When a subscription breaks or goes silent it subscribes again
// through the next node, after the continuation number of the last event.
func (w *workload) subscriber(ctx context.Context, proc, shard string) {
	nodes := nodeNames()
	var cont string
	for attempt := 0; ctx.Err() == nil; attempt++ {
		node := nodes[attempt%len(nodes)]
		pos := &rifflev1.StartingPosition{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON}
		if cont != "" {
			pos = &rifflev1.StartingPosition{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER, SequenceNumber: cont}
		}
		lull := w.awaitLoud(ctx)
		w.rec.Record(Op{Type: Invoke, F: FSub, Process: proc, Node: node, Shard: shard})
		sctx, cancel := context.WithCancel(ctx)
		silence := time.AfterFunc(subSilence, cancel)
		// A lull ends the subscription: a subscriber keeps its shard awake.
		// The goroutine ends with the attempt (cancel below).
		go func() {
			select {
			case <-lull:
				cancel()
			case <-sctx.Done():
			}
		}()
		stream, err := w.clients[node].Streams().SubscribeToShard(sctx, &rifflev1.SubscribeToShardRequest{
			ConsumerArn: w.consumerARN, ShardId: shard, StartingPosition: pos})
		for err == nil {
			var ev *rifflev1.SubscribeToShardEvent
			ev, err = stream.Recv()
			if err != nil {
				break
			}
			silence.Reset(subSilence)
			closed := len(ev.GetChildShards()) > 0 && ev.GetContinuationSequenceNumber() == ""
			w.rec.Record(Op{Type: OK, F: FSub, Process: proc, Node: node, Shard: shard, Records: records(ev.GetRecords()), Closed: closed})
			if closed {
				silence.Stop()
				cancel()
				for _, child := range w.endShard("sub", shard, ev.GetChildShards()) {
					w.startSubscriber(ctx, child)
				}
				return
			}
			if c := ev.GetContinuationSequenceNumber(); c != "" {
				cont = c
			}
			w.rec.Record(Op{Type: Invoke, F: FSub, Process: proc, Node: node, Shard: shard})
		}
		silence.Stop()
		cancel()
		w.rec.Record(Op{Type: Fail, F: FSub, Process: proc, Node: node, Shard: shard, Error: err.Error()})
		pause(ctx, 500*time.Millisecond)
	}
}

func records(rs []*rifflev1.Record) []Rec {
	out := make([]Rec, 0, len(rs))
	for _, r := range rs {
		out = append(out, Rec{Seq: r.GetSequenceNumber(), Value: string(r.GetData()),
			Arrival: r.GetApproximateArrivalTimestamp().AsTime().UnixMilli()})
	}
	return out
}

// pause waits d or until ctx ends: the pacing of a polling client.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// readWholeShard reads a shard through one node from its start to its
// tip. Any error fails the read: the caller polls.
func readWholeShard(ctx context.Context, cl *client.Client, stream, shard string) ([]Rec, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	out, err := cl.Streams().GetShardIterator(cctx, &rifflev1.GetShardIteratorRequest{StreamName: stream, ShardId: shard,
		ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON})
	cancel()
	if err != nil {
		return nil, err
	}
	it := out.GetShardIterator()
	var recs []Rec
	for it != "" {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		page, err := cl.Streams().GetRecords(cctx, &rifflev1.GetRecordsRequest{ShardIterator: it, Limit: 10000})
		cancel()
		if err != nil {
			return nil, err
		}
		recs = append(recs, records(page.GetRecords())...)
		if len(page.GetRecords()) == 0 && page.GetMillisBehindLatest() == 0 {
			break
		}
		it = page.GetNextShardIterator()
	}
	return recs, nil
}

// allShards lists every shard of the stream, closed ones included, and
// records each with its parents in the history (the checkers' lineage).
// Without an answer within a minute it keeps the first shards.
func (w *workload) allShards(ctx context.Context) []string {
	var list []*rifflev1.Shard
	err := retryRead(ctx, time.Minute, func(ctx context.Context, opts ...grpc.CallOption) error {
		out, err := w.clients["n1"].Streams().ListShards(ctx, &rifflev1.ListShardsRequest{StreamName: w.stream}, opts...)
		list = out.GetShards()
		return err
	})
	if err != nil {
		return w.shards
	}
	var ids []string
	for _, s := range list {
		var parents []string
		for _, p := range []string{s.GetParentShardId(), s.GetAdjacentParentShardId()} {
			if p != "" {
				parents = append(parents, p)
			}
		}
		ids = append(ids, s.GetShardId())
		w.rec.Record(Op{Type: OK, F: FShard, Process: "lineage", Shard: s.GetShardId(), Parents: parents})
	}
	return ids
}

// finalReads reads every shard from every node it has a client for (the
// workload's three, and the spare when addSpare gave it one), again and again until
// every node serves every acknowledged record and all agree, or timeout
// passes: the checkers then judge the last reads. It also returns the
// nodes no whole read ever succeeded from, with the last error: their
// empty reads show nothing the checkers could trust (a cluster that went
// away, not records that did).
func (w *workload) finalReads(ctx context.Context, h History, timeout time.Duration) (FinalReads, map[string]error) {
	acked := map[string]bool{}
	for _, op := range h {
		if op.F == FPut && op.Type == OK {
			acked[op.Value] = true
		}
	}
	final := FinalReads{}
	names := sortedKeys(w.clients) // the three, and the spare if it is in
	for _, n := range names {
		final[n] = map[string][]Rec{} // a node never read serves nothing
	}
	shards := w.allShards(ctx)
	unread := map[string]error{}
	for _, n := range names {
		unread[n] = errors.New("never read")
	}
	waitFor(ctx, timeout, func() error {
		for name, cl := range w.clients {
			reads := map[string][]Rec{}
			for _, shard := range shards {
				recs, err := readWholeShard(ctx, cl, w.stream, shard)
				if err != nil {
					err = fmt.Errorf("%s %s: %w", name, shard, err)
					if unread[name] != nil {
						unread[name] = err
					}
					return err
				}
				reads[shard] = recs
			}
			final[name] = reads
			delete(unread, name)
		}
		for name, reads := range final {
			have := finalValues(reads)
			for v := range acked {
				if _, ok := have[v]; !ok {
					return fmt.Errorf("%s lacks acknowledged %s", name, v)
				}
			}
		}
		for _, shard := range shards {
			for _, n := range names[1:] {
				if !slices.Equal(final[n][shard], final["n1"][shard]) {
					return fmt.Errorf("%s differs on %s and n1", shard, n)
				}
			}
		}
		return nil
	})
	return final, unread
}
