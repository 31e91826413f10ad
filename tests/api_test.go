package tests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// TestStreamLifecycle checks create, describe, list, retention and delete
// against one node, with Kinesis's even hash ranges and shard ids.
func TestStreamLifecycle(t *testing.T) {
	tn := startNode(t, tempDataDir(t))
	c, ctx := tn.client, context.Background()
	createStream(t, c, "orders", 4)
	createStream(t, c, "clicks", 1)

	d, err := c.DescribeStream(ctx, &rifflev1.DescribeStreamRequest{StreamName: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	desc := d.StreamDescription
	if desc.StreamArn != cluster.StreamARN("orders") || desc.RetentionPeriodHours != 24 || len(desc.Shards) != 4 || desc.HasMoreShards {
		t.Fatalf("unexpected description: %v", desc)
	}
	ranges, _ := cluster.EvenRanges(4)
	for i, sh := range desc.Shards {
		if want := fmt.Sprintf("shardId-%012d", i); sh.ShardId != want {
			t.Errorf("shard %d id %s, want %s", i, sh.ShardId, want)
		}
		if sh.HashKeyRange.StartingHashKey != ranges[i].Start.String() || sh.HashKeyRange.EndingHashKey != ranges[i].End.String() {
			t.Errorf("shard %d range %v, want [%s, %s]", i, sh.HashKeyRange, ranges[i].Start, ranges[i].End)
		}
		if sh.SequenceNumberRange.StartingSequenceNumber == "" || sh.SequenceNumberRange.EndingSequenceNumber != "" {
			t.Errorf("shard %d sequence range %v", i, sh.SequenceNumberRange)
		}
	}
	// Paging through shards two at a time.
	page, err := c.DescribeStream(ctx, &rifflev1.DescribeStreamRequest{StreamName: "orders", Limit: 2, ExclusiveStartShardId: "shardId-000000000001"})
	if err != nil || len(page.StreamDescription.Shards) != 2 || page.StreamDescription.Shards[0].ShardId != "shardId-000000000002" || page.StreamDescription.HasMoreShards {
		t.Fatalf("paged describe: %v %v", page, err)
	}
	ls, err := c.ListShards(ctx, &rifflev1.ListShardsRequest{StreamName: "orders", MaxResults: 3})
	if err != nil || len(ls.Shards) != 3 || ls.NextToken == "" {
		t.Fatalf("ListShards page 1: %v %v", ls, err)
	}
	ls2, err := c.ListShards(ctx, &rifflev1.ListShardsRequest{NextToken: ls.NextToken})
	if err != nil || len(ls2.Shards) != 1 || ls2.Shards[0].ShardId != "shardId-000000000003" || ls2.NextToken != "" {
		t.Fatalf("ListShards page 2: %v %v", ls2, err)
	}

	l, err := c.ListStreams(ctx, &rifflev1.ListStreamsRequest{Limit: 1})
	if err != nil || len(l.StreamNames) != 1 || l.StreamNames[0] != "clicks" || !l.HasMoreStreams {
		t.Fatalf("ListStreams page 1: %v %v", l, err)
	}
	l2, err := c.ListStreams(ctx, &rifflev1.ListStreamsRequest{NextToken: l.NextToken})
	if err != nil || len(l2.StreamNames) != 1 || l2.StreamNames[0] != "orders" || l2.HasMoreStreams {
		t.Fatalf("ListStreams page 2: %v %v", l2, err)
	}

	if _, err := c.IncreaseStreamRetentionPeriod(ctx, &rifflev1.IncreaseStreamRetentionPeriodRequest{StreamName: "orders", RetentionPeriodHours: 168}); err != nil {
		t.Fatal(err)
	}
	expectException(t, "decrease via Increase", "InvalidArgumentException", codes.InvalidArgument, func() error {
		_, err := c.IncreaseStreamRetentionPeriod(ctx, &rifflev1.IncreaseStreamRetentionPeriodRequest{StreamName: "orders", RetentionPeriodHours: 48})
		return err
	})
	if _, err := c.DecreaseStreamRetentionPeriod(ctx, &rifflev1.DecreaseStreamRetentionPeriodRequest{StreamName: "orders", RetentionPeriodHours: 48}); err != nil {
		t.Fatal(err)
	}
	sum, err := c.DescribeStreamSummary(ctx, &rifflev1.DescribeStreamSummaryRequest{StreamArn: cluster.StreamARN("orders")})
	if err != nil || sum.StreamDescriptionSummary.RetentionPeriodHours != 48 || sum.StreamDescriptionSummary.OpenShardCount != 4 {
		t.Fatalf("summary after retention change: %v %v", sum, err)
	}

	expectException(t, "create existing", "ResourceInUseException", codes.FailedPrecondition, func() error {
		_, err := c.CreateStream(ctx, &rifflev1.CreateStreamRequest{StreamName: "orders", ShardCount: 1})
		return err
	})
	if _, err := c.DeleteStream(ctx, &rifflev1.DeleteStreamRequest{StreamName: "orders"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "orders gone", func() error {
		_, err := c.DescribeStream(ctx, &rifflev1.DescribeStreamRequest{StreamName: "orders"})
		if status.Code(err) != codes.NotFound {
			return fmt.Errorf("describe after delete: %v", err)
		}
		return nil
	})
	// The name can be reused, and the new stream starts empty.
	createStream(t, c, "orders", 1)
	recs := readShard(t, c, "orders", "shardId-000000000000")
	if len(recs) != 0 {
		t.Fatalf("recreated stream has %d records", len(recs))
	}
}

// TestPutAndReadEveryIteratorType checks routing by MD5 of the partition key,
// per-shard order, sequence numbers, and all five iterator types.
func TestPutAndReadEveryIteratorType(t *testing.T) {
	tn := startNode(t, tempDataDir(t))
	c, ctx := tn.client, context.Background()
	createStream(t, c, "s", 4)
	ranges, _ := cluster.EvenRanges(4)

	type put struct {
		key, data, shard, seq string
	}
	var puts []put
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("key-%d", i%37)
		data := fmt.Sprintf("value-%d", i)
		var shard, seq string
		if i%2 == 0 {
			out, err := c.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "s", PartitionKey: key, Data: []byte(data)})
			if err != nil {
				t.Fatal(err)
			}
			shard, seq = out.ShardId, out.SequenceNumber
		} else {
			out, err := c.PutRecords(ctx, &rifflev1.PutRecordsRequest{StreamName: "s", Records: []*rifflev1.PutRecordsRequestEntry{{PartitionKey: key, Data: []byte(data)}}})
			if err != nil || out.FailedRecordCount != 0 {
				t.Fatal(err, out)
			}
			shard, seq = out.Records[0].ShardId, out.Records[0].SequenceNumber
		}
		// The shard must be the one whose range holds MD5(key).
		h := cluster.PartitionHash(key)
		for j, r := range ranges {
			if r.Contains(h) && shard != fmt.Sprintf("shardId-%012d", j) {
				t.Fatalf("key %s (hash %s) went to %s, want shard %d", key, h, shard, j)
			}
		}
		puts = append(puts, put{key, data, shard, seq})
	}

	byShard := map[string][]put{}
	for _, p := range puts {
		byShard[p.shard] = append(byShard[p.shard], p)
	}
	for shard, want := range byShard {
		got := readShard(t, c, "s", shard)
		if len(got) != len(want) {
			t.Fatalf("%s: read %d records, wrote %d", shard, len(got), len(want))
		}
		for i := range want {
			if got[i].SequenceNumber != want[i].seq || string(got[i].Data) != want[i].data || got[i].PartitionKey != want[i].key {
				t.Fatalf("%s record %d: got %s/%s/%s, want %s/%s/%s", shard, i, got[i].SequenceNumber, got[i].PartitionKey, got[i].Data, want[i].seq, want[i].key, want[i].data)
			}
			if i > 0 && !seqLess(got[i-1].SequenceNumber, got[i].SequenceNumber) {
				t.Fatalf("%s: sequence numbers not increasing at %d", shard, i)
			}
			if i > 0 && got[i].ApproximateArrivalTimestamp.AsTime().Before(got[i-1].ApproximateArrivalTimestamp.AsTime()) {
				t.Fatalf("%s: arrival time decreased at %d", shard, i)
			}
		}

		// AT_SEQUENCE_NUMBER and AFTER_SEQUENCE_NUMBER from the middle.
		mid := len(want) / 2
		at := iterRecords(t, c, &rifflev1.GetShardIteratorRequest{StreamName: "s", ShardId: shard,
			ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_SEQUENCE_NUMBER, StartingSequenceNumber: want[mid].seq})
		if len(at) != len(want)-mid || at[0].SequenceNumber != want[mid].seq {
			t.Fatalf("%s AT_SEQUENCE_NUMBER: %d records starting %v", shard, len(at), at)
		}
		after := iterRecords(t, c, &rifflev1.GetShardIteratorRequest{StreamName: "s", ShardId: shard,
			ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER, StartingSequenceNumber: want[mid].seq})
		if len(after) != len(want)-mid-1 || (len(after) > 0 && after[0].SequenceNumber != want[mid+1].seq) {
			t.Fatalf("%s AFTER_SEQUENCE_NUMBER: %d records", shard, len(after))
		}
		// AT_TIMESTAMP at a record's arrival time starts at or before it,
		// never after it, and never skips a later record.
		ts := got[mid].ApproximateArrivalTimestamp
		atTS := iterRecords(t, c, &rifflev1.GetShardIteratorRequest{StreamName: "s", ShardId: shard,
			ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_TIMESTAMP, Timestamp: ts})
		if len(atTS) < len(want)-mid || atTS[0].ApproximateArrivalTimestamp.AsTime().Before(ts.AsTime()) {
			t.Fatalf("%s AT_TIMESTAMP: %d records", shard, len(atTS))
		}
		future := iterRecords(t, c, &rifflev1.GetShardIteratorRequest{StreamName: "s", ShardId: shard,
			ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_TIMESTAMP, Timestamp: timestamppb.New(time.Now().Add(time.Hour))})
		if len(future) != 0 {
			t.Fatalf("%s AT_TIMESTAMP in the future returned %d records", shard, len(future))
		}
	}

	// LATEST sees only what is written after the iterator.
	shard := puts[0].shard
	it, err := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: "s", ShardId: shard,
		ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_LATEST})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "s", PartitionKey: puts[0].key, Data: []byte("after-latest")})
	if err != nil {
		t.Fatal(err)
	}
	gr, err := c.GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: it.ShardIterator})
	if err != nil || len(gr.Records) != 1 || gr.Records[0].SequenceNumber != out.SequenceNumber || gr.MillisBehindLatest != 0 {
		t.Fatalf("LATEST: %v %v", gr, err)
	}
	// GetRecords' limit and millis_behind_latest while behind.
	it2, _ := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: "s", ShardId: shard,
		ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON})
	gr2, err := c.GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: it2.ShardIterator, Limit: 1})
	if err != nil || len(gr2.Records) != 1 || gr2.NextShardIterator == "" {
		t.Fatalf("limit 1: %v %v", gr2, err)
	}
	if gr2.MillisBehindLatest <= 0 {
		t.Errorf("millis_behind_latest = %d while records remain", gr2.MillisBehindLatest)
	}
}

// TestPutRecordsPerRecordResults checks that PutRecords answers every entry
// in request order across shards, and explicit hash keys route exactly.
func TestPutRecordsPerRecordResults(t *testing.T) {
	tn := startNode(t, tempDataDir(t))
	c, ctx := tn.client, context.Background()
	createStream(t, c, "p", 3)
	ranges, _ := cluster.EvenRanges(3)
	var entries []*rifflev1.PutRecordsRequestEntry
	for i := 0; i < 500; i++ {
		e := &rifflev1.PutRecordsRequestEntry{PartitionKey: fmt.Sprintf("k%d", i), Data: []byte(fmt.Sprint(i))}
		if i%5 == 0 { // explicit hash key: the start of shard i%3
			e.ExplicitHashKey = ranges[i%3].Start.String()
		}
		entries = append(entries, e)
	}
	out, err := c.PutRecords(ctx, &rifflev1.PutRecordsRequest{StreamName: "p", Records: entries})
	if err != nil || out.FailedRecordCount != 0 || len(out.Records) != 500 {
		t.Fatalf("PutRecords: %v %v", err, out.GetFailedRecordCount())
	}
	for i, r := range out.Records {
		if i%5 == 0 && r.ShardId != fmt.Sprintf("shardId-%012d", i%3) {
			t.Errorf("entry %d with explicit hash key went to %s", i, r.ShardId)
		}
	}
	read := map[string]string{}
	for j := 0; j < 3; j++ {
		for _, r := range readShard(t, c, "p", fmt.Sprintf("shardId-%012d", j)) {
			read[r.SequenceNumber] = string(r.Data)
		}
	}
	for i, r := range out.Records {
		if read[r.SequenceNumber] != fmt.Sprint(i) {
			t.Fatalf("entry %d: result %s holds %q", i, r.SequenceNumber, read[r.SequenceNumber])
		}
	}
}

// TestBadInputIsRefused checks every input rule of issue 2: a clear error
// with the right Kinesis exception and gRPC code, and nothing written.
func TestBadInputIsRefused(t *testing.T) {
	tn := startNode(t, tempDataDir(t))
	c, ctx := tn.client, context.Background()
	createStream(t, c, "s", 2)
	big1 := bytes.Repeat([]byte("x"), 1<<20)
	key257 := strings.Repeat("k", 257)
	it, err := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: "s", ShardId: "shardId-000000000000",
		ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON})
	if err != nil {
		t.Fatal(err)
	}
	manyRecords := make([]*rifflev1.PutRecordsRequestEntry, 501)
	for i := range manyRecords {
		manyRecords[i] = &rifflev1.PutRecordsRequestEntry{PartitionKey: "k", Data: []byte("d")}
	}
	tooBig := make([]*rifflev1.PutRecordsRequestEntry, 6)
	for i := range tooBig {
		tooBig[i] = &rifflev1.PutRecordsRequestEntry{PartitionKey: "k", Data: big1[:1<<20-1]}
	}
	oneBad := []*rifflev1.PutRecordsRequestEntry{{PartitionKey: "ok", Data: []byte("d")}, {PartitionKey: "", Data: []byte("d")}}

	cases := []struct {
		name      string
		exception string
		code      codes.Code
		call      func() error
	}{
		{"stream name with a slash", "ValidationException", codes.InvalidArgument, func() error {
			_, err := c.CreateStream(ctx, &rifflev1.CreateStreamRequest{StreamName: "a/b", ShardCount: 1})
			return err
		}},
		{"stream name too long", "ValidationException", codes.InvalidArgument, func() error {
			_, err := c.CreateStream(ctx, &rifflev1.CreateStreamRequest{StreamName: strings.Repeat("a", 129), ShardCount: 1})
			return err
		}},
		{"zero shards", "ValidationException", codes.InvalidArgument, func() error {
			_, err := c.CreateStream(ctx, &rifflev1.CreateStreamRequest{StreamName: "z", ShardCount: 0})
			return err
		}},
		{"too many shards", "LimitExceededException", codes.ResourceExhausted, func() error {
			_, err := c.CreateStream(ctx, &rifflev1.CreateStreamRequest{StreamName: "z", ShardCount: 100000})
			return err
		}},
		{"unknown stream", "ResourceNotFoundException", codes.NotFound, func() error {
			_, err := c.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "nope", PartitionKey: "k", Data: []byte("d")})
			return err
		}},
		{"empty partition key", "ValidationException", codes.InvalidArgument, func() error {
			_, err := c.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "s", PartitionKey: "", Data: []byte("d")})
			return err
		}},
		{"partition key of 257 characters", "ValidationException", codes.InvalidArgument, func() error {
			_, err := c.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "s", PartitionKey: key257, Data: []byte("d")})
			return err
		}},
		{"record over 1 MiB with its key", "ValidationException", codes.InvalidArgument, func() error {
			_, err := c.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "s", PartitionKey: "k", Data: big1})
			return err
		}},
		{"explicit hash key out of range", "InvalidArgumentException", codes.InvalidArgument, func() error {
			_, err := c.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "s", PartitionKey: "k", Data: []byte("d"),
				ExplicitHashKey: new(big.Int).Lsh(big.NewInt(1), 128).String()})
			return err
		}},
		{"bad sequence_number_for_ordering", "InvalidArgumentException", codes.InvalidArgument, func() error {
			_, err := c.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "s", PartitionKey: "k", Data: []byte("d"), SequenceNumberForOrdering: "12x"})
			return err
		}},
		{"501 records", "ValidationException", codes.InvalidArgument, func() error {
			_, err := c.PutRecords(ctx, &rifflev1.PutRecordsRequest{StreamName: "s", Records: manyRecords})
			return err
		}},
		{"no records", "ValidationException", codes.InvalidArgument, func() error {
			_, err := c.PutRecords(ctx, &rifflev1.PutRecordsRequest{StreamName: "s"})
			return err
		}},
		{"PutRecords over 5 MiB", "InvalidArgumentException", codes.InvalidArgument, func() error {
			_, err := c.PutRecords(ctx, &rifflev1.PutRecordsRequest{StreamName: "s", Records: tooBig})
			return err
		}},
		{"PutRecords with one bad entry", "ValidationException", codes.InvalidArgument, func() error {
			_, err := c.PutRecords(ctx, &rifflev1.PutRecordsRequest{StreamName: "s", Records: oneBad})
			return err
		}},
		{"retention below 24 hours", "InvalidArgumentException", codes.InvalidArgument, func() error {
			_, err := c.DecreaseStreamRetentionPeriod(ctx, &rifflev1.DecreaseStreamRetentionPeriodRequest{StreamName: "s", RetentionPeriodHours: 23})
			return err
		}},
		{"retention above 8760 hours", "InvalidArgumentException", codes.InvalidArgument, func() error {
			_, err := c.IncreaseStreamRetentionPeriod(ctx, &rifflev1.IncreaseStreamRetentionPeriodRequest{StreamName: "s", RetentionPeriodHours: 8761})
			return err
		}},
		{"GetRecords limit 10001", "ValidationException", codes.InvalidArgument, func() error {
			_, err := c.GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: it.ShardIterator, Limit: 10001})
			return err
		}},
		{"GetRecords negative limit", "ValidationException", codes.InvalidArgument, func() error {
			_, err := c.GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: it.ShardIterator, Limit: -1})
			return err
		}},
		{"forged iterator", "InvalidArgumentException", codes.InvalidArgument, func() error {
			tok := []byte(it.ShardIterator)
			tok[10] ^= 1
			_, err := c.GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: string(tok)})
			return err
		}},
		{"unparseable starting sequence number", "InvalidArgumentException", codes.InvalidArgument, func() error {
			_, err := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: "s", ShardId: "shardId-000000000000",
				ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_SEQUENCE_NUMBER, StartingSequenceNumber: "-5"})
			return err
		}},
		{"sequence number of another shard", "InvalidArgumentException", codes.InvalidArgument, func() error {
			_, err := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: "s", ShardId: "shardId-000000000000",
				ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_SEQUENCE_NUMBER, StartingSequenceNumber: "18446744073709551616"})
			return err
		}},
		{"AT_SEQUENCE_NUMBER without a number", "InvalidArgumentException", codes.InvalidArgument, func() error {
			_, err := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: "s", ShardId: "shardId-000000000000",
				ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_SEQUENCE_NUMBER})
			return err
		}},
		{"AT_TIMESTAMP without a timestamp", "InvalidArgumentException", codes.InvalidArgument, func() error {
			_, err := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: "s", ShardId: "shardId-000000000000",
				ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_TIMESTAMP})
			return err
		}},
		{"no iterator type", "ValidationException", codes.InvalidArgument, func() error {
			_, err := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: "s", ShardId: "shardId-000000000000"})
			return err
		}},
		{"malformed shard id", "ValidationException", codes.InvalidArgument, func() error {
			_, err := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: "s", ShardId: "shard-1",
				ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_LATEST})
			return err
		}},
		{"unknown shard", "ResourceNotFoundException", codes.NotFound, func() error {
			_, err := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: "s", ShardId: "shardId-000000000009",
				ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_LATEST})
			return err
		}},
		{"ARN and name disagree", "InvalidArgumentException", codes.InvalidArgument, func() error {
			_, err := c.DescribeStream(ctx, &rifflev1.DescribeStreamRequest{StreamName: "s", StreamArn: cluster.StreamARN("t")})
			return err
		}},
		{"describe limit 0 is default, 10001 is not", "ValidationException", codes.InvalidArgument, func() error {
			_, err := c.DescribeStream(ctx, &rifflev1.DescribeStreamRequest{StreamName: "s", Limit: 10001})
			return err
		}},
		{"ListShards token with a stream name", "InvalidArgumentException", codes.InvalidArgument, func() error {
			_, err := c.ListShards(ctx, &rifflev1.ListShardsRequest{StreamName: "s", NextToken: "abc"})
			return err
		}},
	}
	for _, tc := range cases {
		expectException(t, tc.name, tc.exception, tc.code, tc.call)
	}
	// Nothing was written by any refused call.
	for _, shard := range []string{"shardId-000000000000", "shardId-000000000001"} {
		if recs := readShard(t, c, "s", shard); len(recs) != 0 {
			t.Errorf("%s holds %d records after refused writes", shard, len(recs))
		}
	}
	if _, err := c.DescribeStream(ctx, &rifflev1.DescribeStreamRequest{StreamName: "z"}); status.Code(err) != codes.NotFound {
		t.Errorf("refused CreateStream left a stream behind: %v", err)
	}
}

// expectException checks the gRPC code, the exception name in the message
// and in ErrorInfo, and that ErrorInfo says whether a retry is safe.
func expectException(t testing.TB, name, exception string, code codes.Code, call func() error) {
	t.Helper()
	err := call()
	st, ok := status.FromError(err)
	if err == nil || !ok {
		t.Errorf("%s: got %v, want %s", name, err, exception)
		return
	}
	if st.Code() != code || !strings.HasPrefix(st.Message(), exception+": ") {
		t.Errorf("%s: got %v %q, want %v %s", name, st.Code(), st.Message(), code, exception)
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info == nil || info.Reason != exception || info.Metadata["retryable"] == "" || info.Metadata["outcome"] != "not_applied" {
		t.Errorf("%s: ErrorInfo %v", name, info)
	}
}

// readShard reads a whole shard from TRIM_HORIZON.
func readShard(t testing.TB, c rifflev1.StreamsClient, stream, shard string) []*rifflev1.Record {
	t.Helper()
	return iterRecords(t, c, &rifflev1.GetShardIteratorRequest{StreamName: stream, ShardId: shard,
		ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON})
}

// iterRecords follows an iterator chain until it reaches the tip.
func iterRecords(t testing.TB, c rifflev1.StreamsClient, req *rifflev1.GetShardIteratorRequest) []*rifflev1.Record {
	t.Helper()
	ctx := context.Background()
	it, err := c.GetShardIterator(ctx, req)
	if err != nil {
		t.Fatalf("GetShardIterator %v: %v", req, err)
	}
	var out []*rifflev1.Record
	iter := it.ShardIterator
	for iter != "" {
		gr, err := c.GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: iter, Limit: 97})
		if err != nil {
			t.Fatalf("GetRecords: %v", err)
		}
		out = append(out, gr.Records...)
		if len(gr.Records) == 0 && gr.MillisBehindLatest == 0 {
			break
		}
		iter = gr.NextShardIterator
	}
	return out
}

func seqLess(a, b string) bool {
	x, _ := new(big.Int).SetString(a, 10)
	y, _ := new(big.Int).SetString(b, 10)
	return x.Cmp(y) < 0
}

// TestAdminHTTP checks the admin endpoints of issue 2: liveness, readiness,
// Prometheus metrics that count what was written, read and refused, and
// pprof.
func TestAdminHTTP(t *testing.T) {
	tn := startNode(t, tempDataDir(t))
	c, ctx := tn.client, context.Background()
	createStream(t, c, "m", 1)
	if _, err := c.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "m", PartitionKey: "k", Data: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	readShard(t, c, "m", "shardId-000000000000")
	c.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "nope", PartitionKey: "k", Data: []byte("x")})

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + tn.AdminAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/healthz", "/readyz", "/debug/pprof/"} {
		if code, body := get(path); code != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, code, body)
		}
	}
	// A lone node leads the metadata group and the stream's one shard.
	if code, body := get("/debug/leadership"); code != http.StatusOK ||
		!strings.Contains(body, `"node":"n1"`) || !strings.Contains(body, `"meta":true`) || !strings.Contains(body, `"shards":["s`) {
		t.Errorf("GET /debug/leadership: %d %s", code, body)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{
		`riffle_shard_records_in_total{shard="shardId-000000000000",stream="m"} 1`,
		`riffle_shard_bytes_in_total{shard="shardId-000000000000",stream="m"} 6`,
		`riffle_shard_records_out_total{shard="shardId-000000000000",stream="m"} 1`,
		`riffle_errors_total{exception="ResourceNotFoundException",operation="PutRecord"} 1`,
		`riffle_request_duration_seconds_count{operation="PutRecord"}`,
		`riffle_raft_commit_duration_seconds_count 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
