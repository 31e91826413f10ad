package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// The JSON shapes of --json output. Field names are the API's snake_case
// names; enum values drop their prefix ("ACTIVE", not
// "STREAM_STATUS_ACTIVE"), as in Kinesis.

// streamJSON is a stream summary, with its shards for `stream describe`.
type streamJSON struct {
	StreamName           string      `json:"stream_name"`
	StreamARN            string      `json:"stream_arn,omitempty"`
	StreamStatus         string      `json:"stream_status"`
	StreamMode           string      `json:"stream_mode"`
	RetentionPeriodHours int32       `json:"retention_period_hours"`
	OpenShardCount       int32       `json:"open_shard_count"`
	ConsumerCount        int32       `json:"consumer_count"`
	CreationTimestamp    time.Time   `json:"stream_creation_timestamp,omitzero"`
	Shards               []shardJSON `json:"shards,omitempty"`
	// ShardLimits are the per-shard limits in force, when the broker says.
	ShardLimits *limitsJSON `json:"shard_limits,omitempty"`
}

// shardJSON flattens a shard's ranges and adds whether it is still open.
type shardJSON struct {
	ShardID                string `json:"shard_id"`
	ParentShardID          string `json:"parent_shard_id,omitempty"`
	AdjacentParentShardID  string `json:"adjacent_parent_shard_id,omitempty"`
	StartingHashKey        string `json:"starting_hash_key"`
	EndingHashKey          string `json:"ending_hash_key"`
	StartingSequenceNumber string `json:"starting_sequence_number"`
	EndingSequenceNumber   string `json:"ending_sequence_number,omitempty"`
	State                  string `json:"state"`
}

// recordJSON is one record read by `riffle get`; Data is base64.
type recordJSON struct {
	SequenceNumber string    `json:"sequence_number"`
	ArrivalTime    time.Time `json:"approximate_arrival_timestamp,omitzero"`
	PartitionKey   string    `json:"partition_key"`
	Data           []byte    `json:"data"`
}

func statusName(s rifflev1.StreamStatus) string {
	return strings.TrimPrefix(s.String(), "STREAM_STATUS_")
}

func modeName(m rifflev1.StreamMode) string {
	return strings.TrimPrefix(m.String(), "STREAM_MODE_")
}

func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime().UTC()
}

func toStreamJSON(s *rifflev1.StreamDescriptionSummary, shards []*rifflev1.Shard) streamJSON {
	out := streamJSON{
		StreamName:           s.GetStreamName(),
		StreamARN:            s.GetStreamArn(),
		StreamStatus:         statusName(s.GetStreamStatus()),
		StreamMode:           modeName(s.GetStreamModeDetails().GetStreamMode()),
		RetentionPeriodHours: s.GetRetentionPeriodHours(),
		OpenShardCount:       s.GetOpenShardCount(),
		ConsumerCount:        s.GetConsumerCount(),
		CreationTimestamp:    timeOf(s.GetStreamCreationTimestamp()),
	}
	for _, sh := range shards {
		out.Shards = append(out.Shards, toShardJSON(sh))
	}
	out.ShardLimits = toLimitsJSON(s.GetShardLimits())
	return out
}

func toShardJSON(sh *rifflev1.Shard) shardJSON {
	state := "OPEN"
	if sh.GetSequenceNumberRange().GetEndingSequenceNumber() != "" {
		state = "CLOSED"
	}
	return shardJSON{
		ShardID:                sh.GetShardId(),
		ParentShardID:          sh.GetParentShardId(),
		AdjacentParentShardID:  sh.GetAdjacentParentShardId(),
		StartingHashKey:        sh.GetHashKeyRange().GetStartingHashKey(),
		EndingHashKey:          sh.GetHashKeyRange().GetEndingHashKey(),
		StartingSequenceNumber: sh.GetSequenceNumberRange().GetStartingSequenceNumber(),
		EndingSequenceNumber:   sh.GetSequenceNumberRange().GetEndingSequenceNumber(),
		State:                  state,
	}
}

// writeJSON prints v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// writeStreamSummary prints a stream summary as aligned "key: value" lines.
func writeStreamSummary(w io.Writer, s streamJSON) error {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	fmt.Fprintf(tw, "Stream:\t%s\n", s.StreamName)
	if s.StreamARN != "" {
		fmt.Fprintf(tw, "ARN:\t%s\n", s.StreamARN)
	}
	fmt.Fprintf(tw, "Status:\t%s\n", s.StreamStatus)
	fmt.Fprintf(tw, "Mode:\t%s\n", s.StreamMode)
	fmt.Fprintf(tw, "Open shards:\t%d\n", s.OpenShardCount)
	fmt.Fprintf(tw, "Retention:\t%d hours\n", s.RetentionPeriodHours)
	fmt.Fprintf(tw, "Consumers:\t%d\n", s.ConsumerCount)
	if !s.CreationTimestamp.IsZero() {
		fmt.Fprintf(tw, "Created:\t%s\n", s.CreationTimestamp.Format(time.RFC3339))
	}
	if l := s.ShardLimits; l != nil {
		fmt.Fprintf(tw, "Shard limits:\t%s\n", l)
	}
	return tw.Flush()
}

// writeShardTable prints one row per shard; "-" marks an empty cell.
func writeShardTable(w io.Writer, shards []shardJSON) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD ID\tPARENT\tHASH KEY START\tHASH KEY END\tSTARTING SEQ\tENDING SEQ\tSTATE")
	for _, sh := range shards {
		parent := sh.ParentShardID
		if sh.AdjacentParentShardID != "" {
			parent += "+" + sh.AdjacentParentShardID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sh.ShardID, dash(parent),
			sh.StartingHashKey, sh.EndingHashKey, dash(sh.StartingSequenceNumber), dash(sh.EndingSequenceNumber), sh.State)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// recordLine renders a record for people: sequence number, arrival time,
// partition key and data, separated by tabs. Data is printed as text when
// it is printable UTF-8 and as "base64:..." otherwise, so that one record
// always takes one line.
func recordLine(r *rifflev1.Record) string {
	arrival := "-"
	if t := timeOf(r.GetApproximateArrivalTimestamp()); !t.IsZero() {
		arrival = t.Format("2006-01-02T15:04:05.000Z07:00")
	}
	return fmt.Sprintf("%s\t%s\t%s\t%s", r.GetSequenceNumber(), arrival, r.GetPartitionKey(), dataText(r.GetData()))
}

func dataText(data []byte) string {
	if utf8.Valid(data) && strings.IndexFunc(string(data), unicode.IsControl) < 0 {
		return string(data)
	}
	return "base64:" + base64.StdEncoding.EncodeToString(data)
}

func toRecordJSON(r *rifflev1.Record) recordJSON {
	return recordJSON{
		SequenceNumber: r.GetSequenceNumber(),
		ArrivalTime:    timeOf(r.GetApproximateArrivalTimestamp()),
		PartitionKey:   r.GetPartitionKey(),
		Data:           r.GetData(),
	}
}

// limitsJSON are a stream's per-shard limits in force; 0 is unlimited.
type limitsJSON struct {
	WriteBytes   int64 `json:"write_bytes_per_second"`
	WriteRecords int64 `json:"write_records_per_second"`
	ReadBytes    int64 `json:"read_bytes_per_second"`
	ReadCalls    int64 `json:"read_calls_per_second"`
	FanOutBytes  int64 `json:"fan_out_bytes_per_second"`
}

func toLimitsJSON(l *rifflev1.ShardLimits) *limitsJSON {
	if l == nil {
		return nil
	}
	return &limitsJSON{
		WriteBytes: l.GetWriteBytesPerSecond(), WriteRecords: l.GetWriteRecordsPerSecond(),
		ReadBytes: l.GetReadBytesPerSecond(), ReadCalls: l.GetReadCallsPerSecond(),
		FanOutBytes: l.GetFanOutBytesPerSecond(),
	}
}

// String is the limits on one line, for people.
func (l *limitsJSON) String() string {
	return fmt.Sprintf("writes %s and %s; GetRecords %s and %s; fan-out %s per consumer",
		perSecond(l.WriteRecords, "records"), perSecond(l.WriteBytes, ""),
		perSecond(l.ReadCalls, "calls"), perSecond(l.ReadBytes, ""), perSecond(l.FanOutBytes, ""))
}

// perSecond renders a rate; bytes (unit "") in KiB or MiB when whole.
func perSecond(v int64, unit string) string {
	switch {
	case v == 0 && unit == "":
		return "unlimited bytes/s"
	case v == 0:
		return "unlimited " + unit + "/s"
	case unit != "":
		return fmt.Sprintf("%d %s/s", v, unit)
	case v%(1<<20) == 0:
		return fmt.Sprintf("%d MiB/s", v>>20)
	case v%(1<<10) == 0:
		return fmt.Sprintf("%d KiB/s", v>>10)
	}
	return fmt.Sprintf("%d B/s", v)
}
