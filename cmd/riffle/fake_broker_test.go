package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// fakeBroker is an in-memory Streams server that answers the way the broker
// is specified to (errors with ErrorInfo, per-record PutRecords results),
// with knobs for the failures the CLI must handle. Records go to shard 0.
type fakeBroker struct {
	rifflev1.UnimplementedStreamsServer

	mu      sync.Mutex
	streams map[string]*fakeStream
	// describesUntilActive is how many DescribeStreamSummary calls see a new
	// stream CREATING.
	describesUntilActive int
	// expireIterators is how many GetRecords calls fail with
	// ExpiredIteratorException before they succeed again.
	expireIterators int
	// seenData counts how often each record's data was put, for records
	// whose data asks to be throttled once ("throttle-once...").
	seenData map[string]int
	calls    map[string]int
	// putCalls holds every PutRecords call's records, in arrival order.
	putCalls [][]*rifflev1.PutRecordsRequestEntry
}

type fakeStream struct {
	status     rifflev1.StreamStatus
	mode       rifflev1.StreamMode
	retention  int32
	describes  int
	shardCount int
	records    []*rifflev1.Record
	// closed marks shard 0 closed after its records, with two children.
	closed bool
	// limits are CreateStream's shard_limits, reported back as in force.
	limits *rifflev1.ShardLimits
}

func newFakeBroker() *fakeBroker {
	return &fakeBroker{streams: map[string]*fakeStream{}, seenData: map[string]int{}, calls: map[string]int{}}
}

// start serves the fake and the health service on a loopback port.
func (f *fakeBroker) start(t *testing.T) (addr string, hs *health.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	rifflev1.RegisterStreamsServer(s, f)
	hs = health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String(), hs
}

func (f *fakeBroker) callCount(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[call]
}

// addStream adds an ACTIVE stream with records data[i] under key "k".
func (f *fakeBroker) addStream(name string, data ...string) *fakeStream {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &fakeStream{status: rifflev1.StreamStatus_STREAM_STATUS_ACTIVE, mode: rifflev1.StreamMode_STREAM_MODE_PROVISIONED, retention: 24, shardCount: 1}
	for _, d := range data {
		s.append("k", []byte(d))
	}
	f.streams[name] = s
	return s
}

func (s *fakeStream) append(key string, data []byte) string {
	seq := strconv.Itoa(1000 + len(s.records))
	s.records = append(s.records, &rifflev1.Record{
		SequenceNumber:              seq,
		ApproximateArrivalTimestamp: timestamppb.New(time.UnixMilli(1767323045000 + int64(len(s.records)))),
		Data:                        data,
		PartitionKey:                key,
	})
	return seq
}

func brokerErr(code codes.Code, exception string, retryable bool, format string, args ...any) error {
	st := status.New(code, exception+": "+fmt.Sprintf(format, args...))
	st, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason: exception, Domain: client.ErrorDomain,
		Metadata: map[string]string{"retryable": strconv.FormatBool(retryable)},
	})
	if err != nil {
		panic(err)
	}
	if code == codes.ResourceExhausted {
		if st, err = st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(10 * time.Millisecond)}); err != nil {
			panic(err)
		}
	}
	return st.Err()
}

func notFound(name string) error {
	return brokerErr(codes.NotFound, client.ResourceNotFoundException, false, "stream %s not found", name)
}

func (f *fakeBroker) stream(name string) (*fakeStream, error) {
	s, ok := f.streams[name]
	if !ok {
		return nil, notFound(name)
	}
	return s, nil
}

func (f *fakeBroker) CreateStream(_ context.Context, req *rifflev1.CreateStreamRequest) (*rifflev1.CreateStreamResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["CreateStream"]++
	if _, ok := f.streams[req.GetStreamName()]; ok {
		return nil, brokerErr(codes.AlreadyExists, client.ResourceInUseException, false, "stream %s exists", req.GetStreamName())
	}
	f.streams[req.GetStreamName()] = &fakeStream{
		status: rifflev1.StreamStatus_STREAM_STATUS_CREATING, mode: req.GetStreamModeDetails().GetStreamMode(),
		retention: 24, shardCount: int(req.GetShardCount()), limits: req.GetShardLimits(),
	}
	return &rifflev1.CreateStreamResponse{}, nil
}

func (f *fakeBroker) DeleteStream(_ context.Context, req *rifflev1.DeleteStreamRequest) (*rifflev1.DeleteStreamResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.stream(req.GetStreamName()); err != nil {
		return nil, err
	}
	delete(f.streams, req.GetStreamName())
	return &rifflev1.DeleteStreamResponse{}, nil
}

func (f *fakeBroker) DescribeStreamSummary(_ context.Context, req *rifflev1.DescribeStreamSummaryRequest) (*rifflev1.DescribeStreamSummaryResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["DescribeStreamSummary"]++
	s, err := f.stream(req.GetStreamName())
	if err != nil {
		return nil, err
	}
	s.describes++
	if s.status != rifflev1.StreamStatus_STREAM_STATUS_ACTIVE && s.describes > f.describesUntilActive {
		s.status = rifflev1.StreamStatus_STREAM_STATUS_ACTIVE
	}
	return &rifflev1.DescribeStreamSummaryResponse{StreamDescriptionSummary: &rifflev1.StreamDescriptionSummary{
		StreamName:              req.GetStreamName(),
		StreamStatus:            s.status,
		StreamModeDetails:       &rifflev1.StreamModeDetails{StreamMode: s.mode},
		RetentionPeriodHours:    s.retention,
		StreamCreationTimestamp: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
		OpenShardCount:          int32(s.shardCount),
		ShardLimits:             s.limits,
	}}, nil
}

// ListStreams answers two names a page, so paging is exercised.
func (f *fakeBroker) ListStreams(_ context.Context, req *rifflev1.ListStreamsRequest) (*rifflev1.ListStreamsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ListStreams"]++
	var names []string
	for name := range f.streams {
		names = append(names, name)
	}
	slices.Sort(names)
	start := 0
	if req.GetNextToken() != "" {
		start, _ = strconv.Atoi(req.GetNextToken())
	}
	end := min(start+2, len(names))
	resp := &rifflev1.ListStreamsResponse{StreamNames: names[start:end], HasMoreStreams: end < len(names)}
	if resp.HasMoreStreams {
		resp.NextToken = strconv.Itoa(end)
	}
	for _, name := range names[start:end] {
		resp.StreamSummaries = append(resp.StreamSummaries, &rifflev1.StreamSummary{
			StreamName: name, StreamStatus: f.streams[name].status,
			StreamModeDetails: &rifflev1.StreamModeDetails{StreamMode: f.streams[name].mode},
		})
	}
	return resp, nil
}

// ListShards answers one shard a page.
func (f *fakeBroker) ListShards(_ context.Context, req *rifflev1.ListShardsRequest) (*rifflev1.ListShardsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ListShards"]++
	name, index := req.GetStreamName(), 0
	if req.GetNextToken() != "" {
		if req.GetStreamName() != "" {
			return nil, brokerErr(codes.InvalidArgument, client.InvalidArgumentException, false, "next_token with stream_name")
		}
		var idx string
		name, idx, _ = strings.Cut(req.GetNextToken(), "/")
		index, _ = strconv.Atoi(idx)
	}
	s, err := f.stream(name)
	if err != nil {
		return nil, err
	}
	resp := &rifflev1.ListShardsResponse{}
	if index < s.shardCount {
		sh := &rifflev1.Shard{
			ShardId:             fmt.Sprintf("shardId-%012d", index),
			HashKeyRange:        &rifflev1.HashKeyRange{StartingHashKey: strconv.Itoa(index * 100), EndingHashKey: strconv.Itoa(index*100 + 99)},
			SequenceNumberRange: &rifflev1.SequenceNumberRange{StartingSequenceNumber: "1000"},
		}
		if index == 0 && s.closed {
			sh.SequenceNumberRange.EndingSequenceNumber = "2000"
		}
		resp.Shards = append(resp.Shards, sh)
	}
	if index+1 < s.shardCount {
		resp.NextToken = fmt.Sprintf("%s/%d", name, index+1)
	}
	return resp, nil
}

func (f *fakeBroker) IncreaseStreamRetentionPeriod(_ context.Context, req *rifflev1.IncreaseStreamRetentionPeriodRequest) (*rifflev1.IncreaseStreamRetentionPeriodResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["IncreaseStreamRetentionPeriod"]++
	s, err := f.stream(req.GetStreamName())
	if err != nil {
		return nil, err
	}
	if req.GetRetentionPeriodHours() < s.retention {
		return nil, brokerErr(codes.InvalidArgument, client.InvalidArgumentException, false, "cannot increase to less")
	}
	s.retention = req.GetRetentionPeriodHours()
	return &rifflev1.IncreaseStreamRetentionPeriodResponse{}, nil
}

func (f *fakeBroker) DecreaseStreamRetentionPeriod(_ context.Context, req *rifflev1.DecreaseStreamRetentionPeriodRequest) (*rifflev1.DecreaseStreamRetentionPeriodResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["DecreaseStreamRetentionPeriod"]++
	s, err := f.stream(req.GetStreamName())
	if err != nil {
		return nil, err
	}
	if req.GetRetentionPeriodHours() > s.retention {
		return nil, brokerErr(codes.InvalidArgument, client.InvalidArgumentException, false, "cannot decrease to more")
	}
	s.retention = req.GetRetentionPeriodHours()
	return &rifflev1.DecreaseStreamRetentionPeriodResponse{}, nil
}

func (f *fakeBroker) PutRecord(_ context.Context, req *rifflev1.PutRecordRequest) (*rifflev1.PutRecordResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["PutRecord"]++
	s, err := f.stream(req.GetStreamName())
	if err != nil {
		return nil, err
	}
	if code := f.recordFailure(req.GetData()); code != "" {
		return nil, brokerErr(codes.ResourceExhausted, code, true, "rate exceeded for shard")
	}
	return &rifflev1.PutRecordResponse{ShardId: "shardId-000000000000", SequenceNumber: s.append(req.GetPartitionKey(), req.GetData())}, nil
}

// recordFailure is the error code a record's data asks for: "throttle-once"
// is throttled the first time it is seen, "throttle-always" every time, and
// "reject" is refused.
func (f *fakeBroker) recordFailure(data []byte) string {
	d := string(data)
	f.seenData[d]++
	switch {
	case strings.HasPrefix(d, "throttle-once") && f.seenData[d] == 1,
		strings.HasPrefix(d, "throttle-always"):
		return client.ProvisionedThroughputExceededException
	case strings.HasPrefix(d, "reject"):
		return client.InvalidArgumentException
	}
	return ""
}

func (f *fakeBroker) PutRecords(_ context.Context, req *rifflev1.PutRecordsRequest) (*rifflev1.PutRecordsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["PutRecords"]++
	f.putCalls = append(f.putCalls, req.GetRecords())
	s, err := f.stream(req.GetStreamName())
	if err != nil {
		return nil, err
	}
	if n := len(req.GetRecords()); n == 0 || n > maxPutRecordsCount {
		return nil, brokerErr(codes.InvalidArgument, client.ValidationException, false, "%d records", n)
	}
	size := 0
	for _, r := range req.GetRecords() {
		size += len(r.GetData()) + len(r.GetPartitionKey())
		if len(r.GetData())+len(r.GetPartitionKey()) > maxRecordBytes {
			return nil, brokerErr(codes.InvalidArgument, client.ValidationException, false, "record too large")
		}
	}
	if size > maxPutRecordsBytes {
		return nil, brokerErr(codes.InvalidArgument, client.ValidationException, false, "request of %d bytes", size)
	}
	resp := &rifflev1.PutRecordsResponse{}
	for _, r := range req.GetRecords() {
		if code := f.recordFailure(r.GetData()); code != "" {
			resp.FailedRecordCount++
			resp.Records = append(resp.Records, &rifflev1.PutRecordsResultEntry{ErrorCode: code, ErrorMessage: "no luck"})
			continue
		}
		resp.Records = append(resp.Records, &rifflev1.PutRecordsResultEntry{
			ShardId: "shardId-000000000000", SequenceNumber: s.append(r.GetPartitionKey(), r.GetData()),
		})
	}
	return resp, nil
}

// Iterators are "stream/position".
func (f *fakeBroker) GetShardIterator(_ context.Context, req *rifflev1.GetShardIteratorRequest) (*rifflev1.GetShardIteratorResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["GetShardIterator"]++
	s, err := f.stream(req.GetStreamName())
	if err != nil {
		return nil, err
	}
	if req.GetShardId() != "shardId-000000000000" {
		return nil, brokerErr(codes.NotFound, client.ResourceNotFoundException, false, "shard %s not found", req.GetShardId())
	}
	pos := 0
	switch req.GetShardIteratorType() {
	case rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_LATEST:
		pos = len(s.records)
	case rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_SEQUENCE_NUMBER,
		rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER:
		seq, err := strconv.Atoi(req.GetStartingSequenceNumber())
		if err != nil {
			return nil, brokerErr(codes.InvalidArgument, client.InvalidArgumentException, false, "bad sequence number")
		}
		pos = seq - 1000
		if req.GetShardIteratorType() == rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER {
			pos++
		}
	case rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_TIMESTAMP:
		for pos < len(s.records) && s.records[pos].GetApproximateArrivalTimestamp().AsTime().Before(req.GetTimestamp().AsTime()) {
			pos++
		}
	}
	return &rifflev1.GetShardIteratorResponse{ShardIterator: fmt.Sprintf("%s/%d", req.GetStreamName(), pos)}, nil
}

// GetRecords returns at most two records per call, so the chain is
// followed over several calls.
func (f *fakeBroker) GetRecords(_ context.Context, req *rifflev1.GetRecordsRequest) (*rifflev1.GetRecordsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["GetRecords"]++
	if f.expireIterators > 0 {
		f.expireIterators--
		return nil, brokerErr(codes.FailedPrecondition, client.ExpiredIteratorException, false, "iterator expired")
	}
	name, p, _ := strings.Cut(req.GetShardIterator(), "/")
	pos, _ := strconv.Atoi(p)
	s, err := f.stream(name)
	if err != nil {
		return nil, err
	}
	limit := 2
	if req.GetLimit() > 0 {
		limit = min(limit, int(req.GetLimit()))
	}
	end := min(pos+limit, len(s.records))
	resp := &rifflev1.GetRecordsResponse{
		Records:            s.records[pos:end],
		NextShardIterator:  fmt.Sprintf("%s/%d", name, end),
		MillisBehindLatest: int64(len(s.records)-end) * 1000,
	}
	if s.closed && end == len(s.records) {
		resp.NextShardIterator = ""
		resp.ChildShards = []*rifflev1.ChildShard{
			{ShardId: "shardId-000000000001", ParentShards: []string{"shardId-000000000000"}},
			{ShardId: "shardId-000000000002", ParentShards: []string{"shardId-000000000000"}},
		}
	}
	return resp, nil
}
