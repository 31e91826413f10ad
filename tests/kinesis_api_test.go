package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/fxamacker/cbor/v2"

	kinesisapi "github.com/riffle-streams/riffle/gateway/kinesis"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// kinesisClient is an unmodified aws-sdk-go-v2 Kinesis client pointed at a
// node's Kinesis endpoint, as a user would configure it.
func kinesisClient(addr string, httpClient kinesis.HTTPClient) *kinesis.Client {
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDRIFFLETEST", "not-checked-without-credentials", ""),
	}
	return kinesis.NewFromConfig(cfg, func(o *kinesis.Options) {
		o.BaseEndpoint = aws.String("http://" + addr)
		if httpClient != nil {
			o.HTTPClient = httpClient
		}
	})
}

// apiCode is the exception name an SDK error carries.
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// protoRecorder is an HTTP client that notes the protocol of each response.
type protoRecorder struct {
	rt     http.RoundTripper
	mu     sync.Mutex
	protos []string
}

func (p *protoRecorder) Do(r *http.Request) (*http.Response, error) {
	resp, err := p.rt.RoundTrip(r)
	if err == nil {
		p.mu.Lock()
		p.protos = append(p.protos, resp.Proto)
		p.mu.Unlock()
	}
	return resp, err
}

// TestKinesisAPIWithTheGoSDK drives three nodes through their Kinesis
// endpoints with aws-sdk-go-v2 only: create, put, read with every iterator
// type, enhanced fan-out over HTTP/1.1 and h2c, split, merge, scale, a kill
// of a node, errors, delete (issue 15).
func TestKinesisAPIWithTheGoSDK(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k := []*kinesis.Client{kinesisClient(c.nodes[0].KinesisAddr(), nil), kinesisClient(c.nodes[1].KinesisAddr(), nil), kinesisClient(c.nodes[2].KinesisAddr(), nil)}
	name := aws.String("sdk-stream")

	if _, err := k[0].CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: name, ShardCount: aws.Int32(2)}); err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	if err := kinesis.NewStreamExistsWaiter(k[1]).Wait(ctx, &kinesis.DescribeStreamInput{StreamName: name}, time.Minute); err != nil {
		t.Fatalf("waiting for the stream: %v", err)
	}
	_, err := k[2].CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: name, ShardCount: aws.Int32(2)})
	var inUse *types.ResourceInUseException
	if !errors.As(err, &inUse) {
		t.Fatalf("second CreateStream: %v, want ResourceInUseException", err)
	}

	// Writes through every node, one record a call and 100 a call.
	want := map[string][]byte{} // sequence number -> data
	put := func(i int, key string, data []byte) (string, string) {
		t.Helper()
		out, err := k[i%3].PutRecord(ctx, &kinesis.PutRecordInput{StreamName: name, PartitionKey: aws.String(key), Data: data})
		if err != nil {
			t.Fatalf("PutRecord through n%d: %v", i%3+1, err)
		}
		want[*out.SequenceNumber] = data
		return *out.ShardId, *out.SequenceNumber
	}
	for i := range 30 {
		put(i, fmt.Sprintf("key-%d", i), []byte(fmt.Sprintf("single-%d", i)))
	}
	entries := make([]types.PutRecordsRequestEntry, 100)
	for i := range entries {
		entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("batch-%d", i)), Data: []byte(fmt.Sprintf("batch-%d\x00\xff", i))}
	}
	batch, err := k[1].PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: name, Records: entries})
	if err != nil || aws.ToInt32(batch.FailedRecordCount) != 0 {
		t.Fatalf("PutRecords: %v, failed %d", err, aws.ToInt32(batch.FailedRecordCount))
	}
	for i, r := range batch.Records {
		want[*r.SequenceNumber] = entries[i].Data
	}

	shards, err := k[2].ListShards(ctx, &kinesis.ListShardsInput{StreamName: name})
	if err != nil || len(shards.Shards) != 2 {
		t.Fatalf("ListShards: %v, %d shards", err, len(shards.Shards))
	}
	readAll := func(client *kinesis.Client, shardID string) []types.Record {
		t.Helper()
		it, err := client.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: name, ShardId: aws.String(shardID), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatalf("GetShardIterator: %v", err)
		}
		var out []types.Record
		iter := it.ShardIterator
		for iter != nil {
			resp, err := client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
			if err != nil {
				t.Fatalf("GetRecords of %s: %v", shardID, err)
			}
			out = append(out, resp.Records...)
			if len(resp.Records) == 0 && aws.ToInt64(resp.MillisBehindLatest) == 0 {
				break
			}
			iter = resp.NextShardIterator
		}
		return out
	}
	checkAll := func(client *kinesis.Client, shards []types.Shard) {
		t.Helper()
		got := map[string][]byte{}
		for _, sh := range shards {
			for _, r := range readAll(client, *sh.ShardId) {
				got[*r.SequenceNumber] = r.Data
				if r.ApproximateArrivalTimestamp == nil || time.Since(*r.ApproximateArrivalTimestamp) > 5*time.Minute {
					t.Fatalf("record %s arrived at %v", *r.SequenceNumber, r.ApproximateArrivalTimestamp)
				}
			}
		}
		for seq, data := range want {
			if g, ok := got[seq]; !ok || !bytes.Equal(g, data) {
				t.Fatalf("record %s: read %q (present %v), wrote %q", seq, g, ok, data)
			}
		}
	}
	for i := range k {
		checkAll(k[i], shards.Shards)
	}

	// Every iterator type on one shard.
	shardID, first := put(0, "iter", []byte("iter-0"))
	_, second := put(1, "iter", []byte("iter-1"))
	read1 := func(typ types.ShardIteratorType, seq *string, ts *time.Time) string {
		t.Helper()
		it, err := k[1].GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: name, ShardId: aws.String(shardID),
			ShardIteratorType: typ, StartingSequenceNumber: seq, Timestamp: ts})
		if err != nil {
			t.Fatalf("GetShardIterator %s: %v", typ, err)
		}
		resp, err := k[1].GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator, Limit: aws.Int32(1)})
		if err != nil {
			t.Fatalf("GetRecords after %s: %v", typ, err)
		}
		if len(resp.Records) == 0 {
			return ""
		}
		return *resp.Records[0].SequenceNumber
	}
	if got := read1(types.ShardIteratorTypeAtSequenceNumber, &first, nil); got != first {
		t.Fatalf("AT_SEQUENCE_NUMBER read %s, want %s", got, first)
	}
	if got := read1(types.ShardIteratorTypeAfterSequenceNumber, &first, nil); got != second {
		t.Fatalf("AFTER_SEQUENCE_NUMBER read %s, want %s", got, second)
	}
	future := time.Now().Add(time.Hour)
	if got := read1(types.ShardIteratorTypeAtTimestamp, nil, &future); got != "" {
		t.Fatalf("AT_TIMESTAMP an hour ahead read %s", got)
	}
	past := time.Now().Add(-time.Hour)
	if got := read1(types.ShardIteratorTypeAtTimestamp, nil, &past); got == "" {
		t.Fatal("AT_TIMESTAMP an hour ago read nothing")
	}
	latest, err := k[0].GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: name, ShardId: aws.String(shardID), ShardIteratorType: types.ShardIteratorTypeLatest})
	if err != nil {
		t.Fatal(err)
	}
	_, third := put(2, "iter", []byte("iter-2"))
	waitFor(t, 10*time.Second, "the record after LATEST", func() error {
		resp, err := k[0].GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: latest.ShardIterator})
		if err != nil {
			return err
		}
		if len(resp.Records) == 0 || *resp.Records[0].SequenceNumber != third {
			latest.ShardIterator = resp.NextShardIterator
			return fmt.Errorf("read %d records", len(resp.Records))
		}
		return nil
	})

	// Enhanced fan-out, over HTTP/1.1 (the SDK's default on http://) and
	// over cleartext HTTP/2 with prior knowledge.
	summary, err := k[0].DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: name})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := k[0].RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: summary.StreamDescriptionSummary.StreamARN, ConsumerName: aws.String("sdk-consumer")})
	if err != nil {
		t.Fatalf("RegisterStreamConsumer: %v", err)
	}
	waitFor(t, 10*time.Second, "consumer ACTIVE", func() error {
		d, err := k[1].DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{ConsumerARN: reg.Consumer.ConsumerARN})
		if err != nil {
			return err
		}
		if d.ConsumerDescription.ConsumerStatus != types.ConsumerStatusActive {
			return fmt.Errorf("consumer %s", d.ConsumerDescription.ConsumerStatus)
		}
		return nil
	})
	h2 := new(http.Protocols)
	h2.SetUnencryptedHTTP2(true)
	h2c := &protoRecorder{rt: &http.Transport{Protocols: h2}}
	for i, client := range []*kinesis.Client{k[2], kinesisClient(c.nodes[1].KinesisAddr(), h2c)} {
		subscribe := func() error {
			sub, err := client.SubscribeToShard(ctx, &kinesis.SubscribeToShardInput{ConsumerARN: reg.Consumer.ConsumerARN, ShardId: aws.String(shardID),
				StartingPosition: &types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}})
			if err != nil {
				return err
			}
			events := sub.GetStream()
			defer events.Close()
			seen := 0
			for ev := range events.Events() {
				e, ok := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent)
				if !ok {
					return fmt.Errorf("event %T", ev)
				}
				for _, r := range e.Value.Records {
					if wd, ok := want[*r.SequenceNumber]; ok && !bytes.Equal(wd, r.Data) {
						return fmt.Errorf("record %s pushed as %q, written %q", *r.SequenceNumber, r.Data, wd)
					}
					seen++
					if *r.SequenceNumber == third {
						return nil
					}
				}
			}
			return fmt.Errorf("the subscription ended after %d records: %v", seen, events.Err())
		}
		// A second subscription within 5 s of the first is refused
		// (ResourceInUse); wait it out.
		waitFor(t, 20*time.Second, fmt.Sprintf("subscription %d to deliver the shard", i+1), func() error {
			err := subscribe()
			if apiCode(err) == "ResourceInUseException" {
				return err
			}
			if err != nil {
				t.Fatalf("subscription %d: %v", i+1, err)
			}
			return nil
		})
	}
	h2c.mu.Lock()
	if len(h2c.protos) == 0 || slices.ContainsFunc(h2c.protos, func(p string) bool { return p != "HTTP/2.0" }) {
		t.Fatalf("the h2c client's responses came over %v", h2c.protos)
	}
	h2c.mu.Unlock()

	// Resharding: split, merge, scale.
	all, _ := k[0].ListShards(ctx, &kinesis.ListShardsInput{StreamName: name})
	s0 := all.Shards[0]
	if _, err := k[1].SplitShard(ctx, &kinesis.SplitShardInput{StreamName: name, ShardToSplit: s0.ShardId,
		NewStartingHashKey: aws.String(midHashKey(*s0.HashKeyRange.StartingHashKey, *s0.HashKeyRange.EndingHashKey))}); err != nil {
		t.Fatalf("SplitShard: %v", err)
	}
	waitActive := func(open int32) {
		t.Helper()
		waitFor(t, 30*time.Second, fmt.Sprintf("ACTIVE with %d open shards", open), func() error {
			d, err := k[2].DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: name})
			if err != nil {
				return err
			}
			if s := d.StreamDescriptionSummary; s.StreamStatus != types.StreamStatusActive || aws.ToInt32(s.OpenShardCount) != open {
				return fmt.Errorf("%s with %d open", s.StreamStatus, aws.ToInt32(s.OpenShardCount))
			}
			return nil
		})
	}
	waitActive(3)
	open := sdkOpenShards(t, ctx, k[0], name)
	if _, err := k[0].MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: name, ShardToMerge: open[0].ShardId, AdjacentShardToMerge: open[1].ShardId}); err != nil {
		t.Fatalf("MergeShards: %v", err)
	}
	waitActive(2)
	if _, err := k[2].UpdateShardCount(ctx, &kinesis.UpdateShardCountInput{StreamName: name, TargetShardCount: aws.Int32(4), ScalingType: types.ScalingTypeUniformScaling}); err != nil {
		t.Fatalf("UpdateShardCount: %v", err)
	}
	waitActive(4)

	// A node killed: writes and reads go on through the other two.
	c.kill(2)
	for i := range 20 {
		put(i%2, fmt.Sprintf("after-kill-%d", i), []byte(fmt.Sprintf("after-kill-%d", i)))
	}
	all, err = k[1].ListShards(ctx, &kinesis.ListShardsInput{StreamName: name})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		checkAll(k[i], all.Shards)
	}
	c.restart(2)
	k[2] = kinesisClient(c.nodes[2].KinesisAddr(), nil) // a new address, as a rescheduled node
	checkAll(k[2], all.Shards)

	// Errors come back as the SDK's typed exceptions.
	var notFound *types.ResourceNotFoundException
	if _, err := k[0].DescribeStream(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String("no-such-stream")}); !errors.As(err, &notFound) {
		t.Fatalf("DescribeStream of a missing stream: %v", err)
	}
	if _, err := k[1].PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("no-such-stream"), PartitionKey: aws.String("k"), Data: []byte("x")}); !errors.As(err, &notFound) {
		t.Fatalf("PutRecord to a missing stream: %v", err)
	}
	if _, err := k[0].GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: name, ShardId: aws.String(shardID), ShardIteratorType: "BOGUS"}); apiCode(err) != "ValidationException" {
		t.Fatalf("an unknown iterator type: %v", err)
	}
	var invalid *types.InvalidArgumentException
	if _, err := k[0].StartStreamEncryption(ctx, &kinesis.StartStreamEncryptionInput{StreamName: name, EncryptionType: types.EncryptionTypeKms, KeyId: aws.String("alias/aws/kinesis")}); !errors.As(err, &invalid) {
		t.Fatalf("StartStreamEncryption: %v", err)
	}

	if _, err := k[0].DeregisterStreamConsumer(ctx, &kinesis.DeregisterStreamConsumerInput{ConsumerARN: reg.Consumer.ConsumerARN}); err != nil {
		t.Fatalf("DeregisterStreamConsumer: %v", err)
	}
	if _, err := k[1].DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: name, EnforceConsumerDeletion: aws.Bool(true)}); err != nil {
		t.Fatalf("DeleteStream: %v", err)
	}
	if err := kinesis.NewStreamNotExistsWaiter(k[0]).Wait(ctx, &kinesis.DescribeStreamInput{StreamName: name}, time.Minute); err != nil {
		t.Fatalf("waiting for the deletion: %v", err)
	}
}

// sdkOpenShards lists a stream's open shards in hash order.
func sdkOpenShards(t *testing.T, ctx context.Context, k *kinesis.Client, name *string) []types.Shard {
	t.Helper()
	out, err := k.ListShards(ctx, &kinesis.ListShardsInput{StreamName: name, ShardFilter: &types.ShardFilter{Type: types.ShardFilterTypeAtLatest}})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out.Shards, func(a, b types.Shard) int {
		return compareDecimal(*a.HashKeyRange.StartingHashKey, *b.HashKeyRange.StartingHashKey)
	})
	return out.Shards
}

// TestKinesisAPIRefusesBadRequests sends what no SDK would, by hand, and
// checks each gets its exception and writes nothing (issue 15).
func TestKinesisAPIRefusesBadRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("a node")
	}
	c := startCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := c.nodes[0].KinesisAddr()
	k := kinesisClient(addr, nil)
	name := aws.String("raw")
	if _, err := k.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: name, ShardCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	if err := kinesis.NewStreamExistsWaiter(k).Wait(ctx, &kinesis.DescribeStreamInput{StreamName: name}, time.Minute); err != nil {
		t.Fatal(err)
	}
	post := func(target, contentType string, body []byte) (int, string, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/", bytes.NewReader(body))
		if target != "" {
			req.Header.Set("X-Amz-Target", target)
		}
		req.Header.Set("Content-Type", contentType)
		sign(t, req, body, "AKIDRIFFLETEST", "any")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), b
	}
	const js = "application/x-amz-json-1.1"
	huge := append([]byte(`{"StreamName":"raw","PartitionKey":"k","Data":"`), bytes.Repeat([]byte("QUJD"), 3<<20)...)
	huge = append(huge, `"}`...)
	for _, tc := range []struct {
		what, target, contentType, body, exception string
		status                                     int
	}{
		{"an unknown target", "Kinesis_20131202.PutRecordz", js, `{}`, "UnknownOperationException", 400},
		{"no target (a signature must cover it)", "", js, `{}`, "IncompleteSignatureException", 400},
		{"another service's target", "DynamoDB_20120810.PutItem", js, `{}`, "UnknownOperationException", 400},
		{"a wrong content type", "Kinesis_20131202.PutRecord", "text/plain", `{"StreamName":"raw","PartitionKey":"k","Data":"eA=="}`, "SerializationException", 400},
		{"malformed JSON", "Kinesis_20131202.PutRecord", js, `{"StreamName":"raw","PartitionKey":"k","Data":"eA=="`, "SerializationException", 400},
		{"data that is not base64", "Kinesis_20131202.PutRecord", js, `{"StreamName":"raw","PartitionKey":"k","Data":"not base64!"}`, "SerializationException", 400},
		{"a number for a string", "Kinesis_20131202.PutRecord", js, `{"StreamName":7,"PartitionKey":"k","Data":"eA=="}`, "SerializationException", 400},
		{"a member Riffle does not support", "Kinesis_20131202.PutRecord", js, `{"StreamName":"raw","PartitionKey":"k","Data":"eA==","Bogus":1}`, "ValidationException", 400},
		{"a CBOR body that is not CBOR", "Kinesis_20131202.PutRecord", "application/x-amz-cbor-1.1", "\xbf\x6aStreamName", "SerializationException", 400},
		{"an oversized body", "Kinesis_20131202.PutRecord", js, string(huge), "InvalidArgumentException", 400},
		{"a record over 1 MiB", "Kinesis_20131202.PutRecord", js, `{"StreamName":"raw","PartitionKey":"k","Data":"` + strings.Repeat("QUJD", 350_000) + `"}`, "ValidationException", 400},
		{"a missing stream", "Kinesis_20131202.PutRecord", js, `{"StreamName":"nope","PartitionKey":"k","Data":"eA=="}`, "ResourceNotFoundException", 400},
	} {
		status, exception, body := post(tc.target, tc.contentType, []byte(tc.body))
		if status != tc.status || exception != tc.exception || !bytes.Contains(body, []byte(tc.exception)) ||
			(tc.contentType == js && !bytes.Contains(body, []byte(`"__type":"`+tc.exception+`"`))) {
			t.Errorf("%s: HTTP %d %s %s, want %d %s", tc.what, status, exception, body, tc.status, tc.exception)
		}
	}
	unsigned, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/", strings.NewReader(`{"StreamName":"raw","PartitionKey":"k","Data":"eA=="}`))
	unsigned.Header.Set("X-Amz-Target", "Kinesis_20131202.PutRecord")
	unsigned.Header.Set("Content-Type", js)
	if resp, err := http.DefaultClient.Do(unsigned); err != nil || resp.StatusCode != 403 || resp.Header.Get("X-Amzn-ErrorType") != "MissingAuthenticationTokenException" {
		t.Errorf("an unsigned PutRecord: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Nothing of the above was written.
	it, err := k.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: name, ShardId: aws.String("shardId-000000000000"), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	if err != nil || len(got.Records) != 0 {
		t.Fatalf("after the refused calls the shard holds %d records (%v)", len(got.Records), err)
	}

	// CBOR, as the AWS Java SDKs send it: an indefinite-length map, the
	// blob a byte string; the response's timestamp a tag 1 of milliseconds.
	body := []byte{0xbf}
	for _, kv := range [][2]any{{"StreamName", "raw"}, {"PartitionKey", "cbor"}, {"Data", []byte{0, 1, 2, 0xff}}} {
		b, _ := cbor.Marshal(kv[0])
		body = append(body, b...)
		b, _ = cbor.Marshal(kv[1])
		body = append(body, b...)
	}
	body = append(body, 0xff)
	status, _, resp := post("Kinesis_20131202.PutRecord", "application/x-amz-cbor-1.1", body)
	var putOut struct {
		SequenceNumber string
		ShardId        string
	}
	if err := cbor.Unmarshal(resp, &putOut); status != 200 || err != nil || putOut.SequenceNumber == "" {
		t.Fatalf("CBOR PutRecord: HTTP %d %x (%v)", status, resp, err)
	}
	iterBody, _ := cbor.Marshal(map[string]any{"StreamName": "raw", "ShardId": putOut.ShardId, "ShardIteratorType": "TRIM_HORIZON"})
	status, _, resp = post("Kinesis_20131202.GetShardIterator", "application/x-amz-cbor-1.1", iterBody)
	var iterOut struct{ ShardIterator string }
	if err := cbor.Unmarshal(resp, &iterOut); status != 200 || err != nil {
		t.Fatalf("CBOR GetShardIterator: HTTP %d %x (%v)", status, resp, err)
	}
	getBody, _ := cbor.Marshal(map[string]any{"ShardIterator": iterOut.ShardIterator})
	status, _, resp = post("Kinesis_20131202.GetRecords", "application/x-amz-cbor-1.1", getBody)
	var getOut struct {
		Records []struct {
			Data                        []byte
			SequenceNumber              string
			ApproximateArrivalTimestamp cbor.Tag
		}
		MillisBehindLatest int64
	}
	if err := cbor.Unmarshal(resp, &getOut); status != 200 || err != nil || len(getOut.Records) != 1 {
		t.Fatalf("CBOR GetRecords: HTTP %d %x (%v)", status, resp, err)
	}
	r := getOut.Records[0]
	ms, ok := r.ApproximateArrivalTimestamp.Content.(uint64)
	if !bytes.Equal(r.Data, []byte{0, 1, 2, 0xff}) || r.SequenceNumber != putOut.SequenceNumber || r.ApproximateArrivalTimestamp.Number != 1 ||
		!ok || time.Since(time.UnixMilli(int64(ms))).Abs() > time.Minute {
		t.Fatalf("CBOR record %+v", r)
	}
}

// sign signs req as every SDK does, with aws-sdk-go-v2's signer.
func sign(t *testing.T, req *http.Request, body []byte, id, secret string) {
	t.Helper()
	h := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(req.Context(), aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}, req,
		hex.EncodeToString(h[:]), "kinesis", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
}

// TestKinesisAPIChecksSignatures: with credentials configured, a client
// with a wrong secret or an unknown key is refused and writes nothing; the
// right key works (issue 15).
func TestKinesisAPIChecksSignatures(t *testing.T) {
	if testing.Short() {
		t.Skip("a node")
	}
	c := startClusterOpts(t, &testCluster{t: t, expect: 1, raft: fastRaft,
		kinesisCreds: kinesisapi.Credentials{"AKIDGOOD": "the-secret"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := func(id, secret string) *kinesis.Client {
		cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(id, secret, "")}
		return kinesis.NewFromConfig(cfg, func(o *kinesis.Options) { o.BaseEndpoint = aws.String("http://" + c.nodes[0].KinesisAddr()) })
	}
	good, wrong, unknown := client("AKIDGOOD", "the-secret"), client("AKIDGOOD", "not-the-secret"), client("AKIDOTHER", "the-secret")
	name := aws.String("signed")
	if _, err := good.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: name, ShardCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	if err := kinesis.NewStreamExistsWaiter(good).Wait(ctx, &kinesis.DescribeStreamInput{StreamName: name}, time.Minute); err != nil {
		t.Fatal(err)
	}
	put := &kinesis.PutRecordInput{StreamName: name, PartitionKey: aws.String("k"), Data: []byte("refused")}
	if _, err := wrong.PutRecord(ctx, put); apiCode(err) != "InvalidSignatureException" {
		t.Fatalf("a wrong secret: %v", err)
	}
	if _, err := unknown.PutRecord(ctx, put); apiCode(err) != "UnrecognizedClientException" {
		t.Fatalf("an unknown key: %v", err)
	}
	if _, err := wrong.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: name}); apiCode(err) != "InvalidSignatureException" {
		t.Fatalf("a wrong secret deleting: %v", err)
	}
	it, err := good.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: name, ShardId: aws.String("shardId-000000000000"), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	got, err := good.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	if err != nil || len(got.Records) != 0 {
		t.Fatalf("after refused writes the shard holds %d records (%v)", len(got.Records), err)
	}
	if _, err := good.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: name, PartitionKey: aws.String("k"), Data: []byte("taken")}); err != nil {
		t.Fatalf("the right key: %v", err)
	}
}

// midHashKey is the first hash key of a split's upper child: halfway.
func midHashKey(lo, hi string) string {
	x, _ := new(big.Int).SetString(lo, 10)
	y, _ := new(big.Int).SetString(hi, 10)
	return new(big.Int).Rsh(new(big.Int).Add(new(big.Int).Add(x, y), big.NewInt(1)), 1).String()
}

func compareDecimal(a, b string) int {
	x, _ := new(big.Int).SetString(a, 10)
	y, _ := new(big.Int).SetString(b, 10)
	return x.Cmp(y)
}

// TestTagsThroughBothAPIs: tags on streams and consumers through the
// Kinesis API (aws-sdk-go-v2) and riffle.v1, their limits refused with
// nothing changed (issue 15).
func TestTagsThroughBothAPIs(t *testing.T) {
	if testing.Short() {
		t.Skip("a node")
	}
	c := startCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k := kinesisClient(c.nodes[0].KinesisAddr(), nil)
	g := c.nodes[0].client
	name := aws.String("tagged")
	if _, err := k.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: name, ShardCount: aws.Int32(1), Tags: map[string]string{"team": "data"}}); err != nil {
		t.Fatal(err)
	}
	if err := kinesis.NewStreamExistsWaiter(k).Wait(ctx, &kinesis.DescribeStreamInput{StreamName: name}, time.Minute); err != nil {
		t.Fatal(err)
	}
	list := func() map[string]string {
		t.Helper()
		out, err := k.ListTagsForStream(ctx, &kinesis.ListTagsForStreamInput{StreamName: name})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, tag := range out.Tags {
			got[*tag.Key] = aws.ToString(tag.Value)
		}
		return got
	}
	if got := list(); !maps.Equal(got, map[string]string{"team": "data"}) {
		t.Fatalf("tags from CreateStream: %v", got)
	}
	if _, err := k.AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: name, Tags: map[string]string{"env": "prod", "team": "streams"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.RemoveTagsFromStream(ctx, &rifflev1.RemoveTagsFromStreamRequest{StreamName: *name, TagKeys: []string{"env", "absent"}}); err != nil {
		t.Fatal(err)
	}
	if got := list(); !maps.Equal(got, map[string]string{"team": "streams"}) {
		t.Fatalf("after add and remove: %v", got)
	}

	// Pages, in key order.
	more := map[string]string{}
	for i := range 10 {
		more[fmt.Sprintf("k%02d", i)] = fmt.Sprint(i)
	}
	if _, err := k.AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: name, Tags: more}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var start *string
	for {
		out, err := k.ListTagsForStream(ctx, &kinesis.ListTagsForStreamInput{StreamName: name, Limit: aws.Int32(4), ExclusiveStartTagKey: start})
		if err != nil {
			t.Fatal(err)
		}
		for _, tag := range out.Tags {
			keys = append(keys, *tag.Key)
		}
		if !aws.ToBool(out.HasMoreTags) {
			break
		}
		start = out.Tags[len(out.Tags)-1].Key
	}
	if want := []string{"k00", "k01", "k02", "k03", "k04", "k05", "k06", "k07", "k08", "k09", "team"}; !slices.Equal(keys, want) {
		t.Fatalf("paged keys %v, want %v", keys, want)
	}

	// Limits: each refused, nothing changed.
	eleven := maps.Clone(more)
	eleven["k10"] = "x"
	forty := map[string]string{}
	for i := range 40 {
		forty[fmt.Sprintf("m%02d", i)] = "x"
	}
	summary, _ := k.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: name})
	arn := summary.StreamDescriptionSummary.StreamARN
	for what, call := range map[string]func() error{
		"11 tags in AddTagsToStream": func() error {
			_, err := k.AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: name, Tags: eleven})
			return err
		},
		"a reserved key": func() error {
			_, err := k.AddTagsToStream(ctx, &kinesis.AddTagsToStreamInput{StreamName: name, Tags: map[string]string{"aws:x": "y"}})
			return err
		},
		"a key of 129 characters": func() error {
			_, err := k.TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: arn, Tags: map[string]string{strings.Repeat("k", 129): "y"}})
			return err
		},
		"a character tags do not take": func() error {
			_, err := k.TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: arn, Tags: map[string]string{"a*b": "y"}})
			return err
		},
		"51 tags on the stream": func() error {
			_, err := k.TagResource(ctx, &kinesis.TagResourceInput{ResourceARN: arn, Tags: forty})
			return err
		},
	} {
		err := call()
		want := "InvalidArgumentException"
		if what == "51 tags on the stream" {
			want = "LimitExceededException"
		}
		if apiCode(err) != want {
			t.Errorf("%s: %v, want %s", what, err, want)
		}
	}
	if got := list(); len(got) != 11 {
		t.Fatalf("refused calls changed the tags: %d now", len(got))
	}

	// A consumer's tags, by its ARN, through both APIs.
	reg, err := k.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{StreamARN: arn, ConsumerName: aws.String("c"), Tags: map[string]string{"owner": "me"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.TagResource(ctx, &rifflev1.TagResourceRequest{ResourceArn: *reg.Consumer.ConsumerARN, Tags: map[string]string{"tier": "gold"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.UntagResource(ctx, &kinesis.UntagResourceInput{ResourceARN: reg.Consumer.ConsumerARN, TagKeys: []string{"owner"}}); err != nil {
		t.Fatal(err)
	}
	ct, err := k.ListTagsForResource(ctx, &kinesis.ListTagsForResourceInput{ResourceARN: reg.Consumer.ConsumerARN})
	if err != nil || len(ct.Tags) != 1 || *ct.Tags[0].Key != "tier" || *ct.Tags[0].Value != "gold" {
		t.Fatalf("consumer tags %v (%v)", ct, err)
	}
	st, err := g.ListTagsForResource(ctx, &rifflev1.ListTagsForResourceRequest{ResourceArn: *arn})
	if err != nil || len(st.Tags) != 11 {
		t.Fatalf("stream tags by ARN over gRPC: %d (%v)", len(st.Tags), err)
	}
}
