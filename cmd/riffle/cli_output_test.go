package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// One record is one line: text that could break the line or the columns is
// printed as base64.
func TestDataText(t *testing.T) {
	tests := []struct {
		data []byte
		want string
	}{
		{[]byte("hello world"), "hello world"},
		{[]byte("héllo ✓"), "héllo ✓"},
		{[]byte(""), ""},
		{[]byte("two\nlines"), "base64:dHdvCmxpbmVz"},
		{[]byte("a\tb"), "base64:YQli"},
		{[]byte{0xff, 0xfe}, "base64://4="},
		{[]byte{0}, "base64:AA=="},
	}
	for _, tt := range tests {
		if got := dataText(tt.data); got != tt.want {
			t.Errorf("dataText(%q) = %q, want %q", tt.data, got, tt.want)
		}
	}
}

// A record line is tab-separated; the JSON line carries the API field names.
func TestRecordOutput(t *testing.T) {
	r := &rifflev1.Record{
		SequenceNumber:              "18446744073709551616",
		ApproximateArrivalTimestamp: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.UTC)),
		PartitionKey:                "user 42",
		Data:                        []byte("hi"),
	}
	if got, want := recordLine(r), "18446744073709551616\t2026-01-02T03:04:05.006Z\tuser 42\thi"; got != want {
		t.Errorf("recordLine = %q, want %q", got, want)
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, toRecordJSON(r)); err != nil {
		t.Fatal(err)
	}
	want := `{"sequence_number":"18446744073709551616","approximate_arrival_timestamp":"2026-01-02T03:04:05.006Z","partition_key":"user 42","data":"aGk="}` + "\n"
	if buf.String() != want {
		t.Errorf("JSON %s, want %s", buf.String(), want)
	}
	if got := recordLine(&rifflev1.Record{SequenceNumber: "1"}); got != "1\t-\t\t" {
		t.Errorf("record without time: %q", got)
	}
}

// The summary and the shard table line up, and --json is one object.
func TestStreamOutput(t *testing.T) {
	summary := &rifflev1.StreamDescriptionSummary{
		StreamName:              "orders",
		StreamStatus:            rifflev1.StreamStatus_STREAM_STATUS_UPDATING,
		StreamModeDetails:       &rifflev1.StreamModeDetails{StreamMode: rifflev1.StreamMode_STREAM_MODE_ON_DEMAND},
		RetentionPeriodHours:    48,
		OpenShardCount:          2,
		StreamCreationTimestamp: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
	}
	shards := []*rifflev1.Shard{
		{
			ShardId:             "shardId-000000000000",
			HashKeyRange:        &rifflev1.HashKeyRange{StartingHashKey: "0", EndingHashKey: "340282366920938463463374607431768211455"},
			SequenceNumberRange: &rifflev1.SequenceNumberRange{StartingSequenceNumber: "0", EndingSequenceNumber: "99"},
		},
		{
			ShardId: "shardId-000000000003", ParentShardId: "shardId-000000000001", AdjacentParentShardId: "shardId-000000000002",
			HashKeyRange:        &rifflev1.HashKeyRange{StartingHashKey: "0", EndingHashKey: "5"},
			SequenceNumberRange: &rifflev1.SequenceNumberRange{StartingSequenceNumber: "55340232221128654848"},
		},
	}
	var buf bytes.Buffer
	if err := printStream(&buf, false, toStreamJSON(summary, shards)); err != nil {
		t.Fatal(err)
	}
	want := `Stream:      orders
Status:      UPDATING
Mode:        ON_DEMAND
Open shards: 2
Retention:   48 hours
Consumers:   0
Created:     2026-01-02T03:04:05Z

SHARD ID              PARENT                                     HASH KEY START  HASH KEY END                             STARTING SEQ          ENDING SEQ  STATE
shardId-000000000000  -                                          0               340282366920938463463374607431768211455  0                     99          CLOSED
shardId-000000000003  shardId-000000000001+shardId-000000000002  0               5                                        55340232221128654848  -           OPEN
`
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}

	buf.Reset()
	if err := printStream(&buf, true, toStreamJSON(summary, shards)); err != nil {
		t.Fatal(err)
	}
	if strings.Count(buf.String(), "\n") != 1 {
		t.Errorf("--json is not one line:\n%s", buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"stream_name": "orders", "stream_status": "UPDATING", "stream_mode": "ON_DEMAND",
		"retention_period_hours": 48.0, "open_shard_count": 2.0, "stream_creation_timestamp": "2026-01-02T03:04:05Z",
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	shard := got["shards"].([]any)[1].(map[string]any)
	if shard["adjacent_parent_shard_id"] != "shardId-000000000002" || shard["state"] != "OPEN" || shard["ending_sequence_number"] != nil {
		t.Errorf("shard %v", shard)
	}
}

// Latencies print with three significant digits.
func TestFmtMillis(t *testing.T) {
	for ms, want := range map[float64]string{
		0:       "0s",
		0.00085: "850ns",
		0.123:   "123µs",
		3.2134:  "3.21ms",
		15:      "15ms",
		1234.5:  "1.23s",
		90000:   "1m30s",
	} {
		if got := fmtMillis(ms); got != want {
			t.Errorf("fmtMillis(%v) = %q, want %q", ms, got, want)
		}
	}
}
