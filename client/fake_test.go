package client

import (
	"context"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// fakeStreams is an in-memory Streams server for the SDK's unit tests: a
// stream of shards with hash ranges that routes and stores records like
// the broker, serves GetRecords and SubscribeToShard, and has hooks to
// inject throttling, failures and blocking.
type fakeStreams struct {
	rifflev1.UnimplementedStreamsServer

	mu     sync.Mutex
	shards []*fakeShard
	calls  map[string]int
	// putSizes is the number of entries of each PutRecords call.
	putSizes []int
	// putBytes is the data plus keys of each PutRecords call.
	putBytes []int

	// admit, when set, decides how many of a shard's n entries in
	// PutRecords call number call (from 1) are stored; the rest are
	// throttled, as a throughput limit does.
	admit func(call int, shard string, n int) int
	// putErr, when set, may fail PutRecords call number call whole.
	putErr func(call int) error
	// entryErr, when set, may fail entry i of call number call with an
	// error code.
	entryErr func(call, i int) string
	// putGate, when set, makes each PutRecords call wait for a value.
	putGate chan struct{}
	// getErr, when set, may fail GetRecords call number call.
	getErr func(call int) error
	// unconfirmedEnd, when set, makes GetRecords call number call that
	// reaches the end of the records say the reader is still behind, as a
	// replica does that cannot confirm its end is the shard's.
	unconfirmedEnd func(call int) bool
	// subscribe, when set, serves SubscribeToShard call number call.
	subscribe func(ctx context.Context, call int, req *rifflev1.SubscribeToShardRequest, send func(*rifflev1.SubscribeToShardEvent) error) error
	subReqs   []*rifflev1.SubscribeToShardRequest
}

type fakeShard struct {
	index      int
	start, end *big.Int
	records    []*rifflev1.Record
	closed     bool
	children   []*rifflev1.ChildShard
	parents    []string
}

func (s *fakeShard) id() string { return fmt.Sprintf("shardId-%012d", s.index) }

// fakeSeq is the broker's sequence number of offset off in shard index.
func fakeSeq(index int, off int) string {
	n := new(big.Int).Lsh(big.NewInt(int64(index)), 64)
	return n.Add(n, big.NewInt(int64(off))).String()
}

// newFakeStreams returns a fake whose stream has n open shards splitting
// the hash space evenly.
func newFakeStreams(n int) *fakeStreams {
	f := &fakeStreams{calls: map[string]int{}}
	space := new(big.Int).Lsh(big.NewInt(1), 128)
	step := new(big.Int).Div(space, big.NewInt(int64(n)))
	for i := range n {
		start := new(big.Int).Mul(step, big.NewInt(int64(i)))
		end := new(big.Int).Sub(new(big.Int).Add(start, step), big.NewInt(1))
		if i == n-1 {
			end = new(big.Int).Set(maxHashKey)
		}
		f.shards = append(f.shards, &fakeShard{index: i, start: start, end: end})
	}
	return f
}

// start serves f on loopback and returns a Client connected to it.
func (f *fakeStreams) start(t *testing.T) *Client {
	t.Helper()
	addr := startServer(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, []string{addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (f *fakeStreams) count(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[call]
}

// appendRecords stores records with the given data in shard i.
func (f *fakeStreams) appendRecords(i int, data ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sh := f.shards[i]
	for _, d := range data {
		sh.records = append(sh.records, &rifflev1.Record{
			SequenceNumber: fakeSeq(sh.index, len(sh.records)), Data: []byte(d), PartitionKey: "k",
			ApproximateArrivalTimestamp: timestamppb.Now(),
		})
	}
}

// addChild closes the parents and adds an open child shard covering the
// hash space from the first parent's start to the last parent's end.
func (f *fakeStreams) addChild(parents ...int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	child := &fakeShard{index: len(f.shards), start: f.shards[parents[0]].start, end: f.shards[parents[len(parents)-1]].end}
	for _, p := range parents {
		child.parents = append(child.parents, f.shards[p].id())
	}
	f.shards = append(f.shards, child)
	for _, p := range parents {
		f.shards[p].closed = true
		f.shards[p].children = append(f.shards[p].children, &rifflev1.ChildShard{ShardId: child.id(), ParentShards: child.parents})
	}
	return child.index
}

func (f *fakeStreams) shardByID(id string) *fakeShard {
	for _, s := range f.shards {
		if s.id() == id {
			return s
		}
	}
	return nil
}

func (f *fakeStreams) ListShards(_ context.Context, req *rifflev1.ListShardsRequest) (*rifflev1.ListShardsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ListShards"]++
	resp := &rifflev1.ListShardsResponse{}
	for _, s := range f.shards {
		sh := &rifflev1.Shard{
			ShardId:             s.id(),
			HashKeyRange:        &rifflev1.HashKeyRange{StartingHashKey: s.start.String(), EndingHashKey: s.end.String()},
			SequenceNumberRange: &rifflev1.SequenceNumberRange{StartingSequenceNumber: fakeSeq(s.index, 0)},
		}
		if s.closed {
			sh.SequenceNumberRange.EndingSequenceNumber = fakeSeq(s.index, len(s.records))
		}
		resp.Shards = append(resp.Shards, sh)
	}
	return resp, nil
}

// openShardFor routes a hash key as the broker does.
func (f *fakeStreams) openShardFor(h *big.Int) *fakeShard {
	for _, s := range f.shards {
		if !s.closed && s.start.Cmp(h) <= 0 && h.Cmp(s.end) <= 0 {
			return s
		}
	}
	return nil
}

func (f *fakeStreams) PutRecords(ctx context.Context, req *rifflev1.PutRecordsRequest) (*rifflev1.PutRecordsResponse, error) {
	f.mu.Lock()
	f.calls["PutRecordsArrived"]++
	f.mu.Unlock()
	if f.putGate != nil {
		select {
		case <-f.putGate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["PutRecords"]++
	call := f.calls["PutRecords"]
	bytes := 0
	for _, e := range req.Records {
		bytes += len(e.Data) + len(e.PartitionKey)
	}
	f.putSizes = append(f.putSizes, len(req.Records))
	f.putBytes = append(f.putBytes, bytes)
	if f.putErr != nil {
		if err := f.putErr(call); err != nil {
			return nil, err
		}
	}
	// Group entries by shard, then admit a prefix of each shard's part.
	parts := map[*fakeShard][]int{}
	var order []*fakeShard
	for i, e := range req.Records {
		h := PartitionHash(e.PartitionKey)
		if e.ExplicitHashKey != "" {
			h, _ = parseHashKey(e.ExplicitHashKey)
		}
		sh := f.openShardFor(h)
		if parts[sh] == nil {
			order = append(order, sh)
		}
		parts[sh] = append(parts[sh], i)
	}
	resp := &rifflev1.PutRecordsResponse{Records: make([]*rifflev1.PutRecordsResultEntry, len(req.Records))}
	for _, sh := range order {
		idx := parts[sh]
		admitted := len(idx)
		if f.admit != nil {
			admitted = f.admit(call, sh.id(), len(idx))
		}
		for j, i := range idx {
			code := ""
			if f.entryErr != nil {
				code = f.entryErr(call, i)
			}
			if code == "" && j >= admitted {
				code = ProvisionedThroughputExceededException
			}
			if code != "" {
				resp.Records[i] = &rifflev1.PutRecordsResultEntry{ErrorCode: code, ErrorMessage: "injected"}
				resp.FailedRecordCount++
				continue
			}
			e := req.Records[i]
			seq := fakeSeq(sh.index, len(sh.records))
			sh.records = append(sh.records, &rifflev1.Record{SequenceNumber: seq, Data: e.Data, PartitionKey: e.PartitionKey})
			resp.Records[i] = &rifflev1.PutRecordsResultEntry{ShardId: sh.id(), SequenceNumber: seq}
		}
	}
	return resp, nil
}

// Iterators of the fake are "shardIndex/offset".
func (f *fakeStreams) GetShardIterator(_ context.Context, req *rifflev1.GetShardIteratorRequest) (*rifflev1.GetShardIteratorResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["GetShardIterator"]++
	sh := f.shardByID(req.ShardId)
	if sh == nil {
		return nil, testBrokerError(codes.NotFound, ResourceNotFoundException, "false", "")
	}
	off := 0
	switch req.ShardIteratorType {
	case rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON:
	case rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_LATEST:
		off = len(sh.records)
	case rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_SEQUENCE_NUMBER, rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER:
		n, ok := new(big.Int).SetString(req.StartingSequenceNumber, 10)
		if !ok {
			return nil, testBrokerError(codes.InvalidArgument, InvalidArgumentException, "false", "")
		}
		off = int(new(big.Int).And(n, new(big.Int).SetUint64(^uint64(0))).Int64())
		if req.ShardIteratorType == rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER {
			off++
		}
	default:
		return nil, testBrokerError(codes.InvalidArgument, ValidationException, "false", "")
	}
	return &rifflev1.GetShardIteratorResponse{ShardIterator: fmt.Sprintf("%d/%d", sh.index, off)}, nil
}

func (f *fakeStreams) GetRecords(_ context.Context, req *rifflev1.GetRecordsRequest) (*rifflev1.GetRecordsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["GetRecords"]++
	if f.getErr != nil {
		if err := f.getErr(f.calls["GetRecords"]); err != nil {
			return nil, err
		}
	}
	idx, off, ok := strings.Cut(req.ShardIterator, "/")
	i, err1 := strconv.Atoi(idx)
	o, err2 := strconv.Atoi(off)
	if !ok || err1 != nil || err2 != nil || i >= len(f.shards) {
		return nil, testBrokerError(codes.InvalidArgument, InvalidArgumentException, "false", "")
	}
	sh := f.shards[i]
	limit := int(req.Limit)
	if limit == 0 {
		limit = 10000
	}
	end := min(o+limit, len(sh.records))
	resp := &rifflev1.GetRecordsResponse{Records: sh.records[o:end]}
	if sh.closed && end == len(sh.records) {
		resp.ChildShards = sh.children
		return resp, nil
	}
	resp.NextShardIterator = fmt.Sprintf("%d/%d", i, end)
	if end < len(sh.records) {
		resp.MillisBehindLatest = 1000
	} else if f.unconfirmedEnd != nil && f.unconfirmedEnd(f.calls["GetRecords"]) {
		resp.MillisBehindLatest = 1
	}
	return resp, nil
}

func (f *fakeStreams) SubscribeToShard(req *rifflev1.SubscribeToShardRequest, stream grpc.ServerStreamingServer[rifflev1.SubscribeToShardEvent]) error {
	f.mu.Lock()
	f.calls["SubscribeToShard"]++
	call := f.calls["SubscribeToShard"]
	f.subReqs = append(f.subReqs, req)
	sub := f.subscribe
	f.mu.Unlock()
	if sub == nil {
		return status.Error(codes.Unimplemented, "no subscriptions")
	}
	return sub(stream.Context(), call, req, stream.Send)
}

func (f *fakeStreams) subscribeRequests() []*rifflev1.SubscribeToShardRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*rifflev1.SubscribeToShardRequest(nil), f.subReqs...)
}

// testBrokerError builds an error as the broker does, with a RetryInfo
// when retryAfter is set ("" for none).
func testBrokerError(code codes.Code, exception, retryable, outcome string, extra ...protoadapt.MessageV1) error {
	if outcome == "" {
		outcome = "not_applied"
	}
	details := append([]protoadapt.MessageV1{&errdetails.ErrorInfo{
		Reason: exception, Domain: ErrorDomain,
		Metadata: map[string]string{"retryable": retryable, "outcome": outcome},
	}}, extra...)
	st, err := status.New(code, exception+": injected").WithDetails(details...)
	if err != nil {
		panic(err)
	}
	return st.Err()
}

// throttledError is the broker's ProvisionedThroughputExceededException
// asking for a wait of d.
func throttledError(d time.Duration) error {
	return testBrokerError(codes.ResourceExhausted, ProvisionedThroughputExceededException, "true", "",
		&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
}

// waitUntil polls cond until it holds or the test's patience runs out.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
