package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
)

// benchCSVColumns are the columns of `riffle bench --csv`, the same for
// every mode so that rows of different runs can be concatenated; a mode
// leaves the columns it has no figure for empty. Scripts depend on these
// names: add columns at the end, never rename or reorder them.
var benchCSVColumns = []string{
	"mode", "stream", "producers", "in_flight", "batch", "record_size", "keys", "key_count", "rate",
	"elapsed_seconds", "interrupted",
	"records", "records_per_second", "mib_per_second", "calls", "failed_calls", "failed_records",
	"ack_p50_ms", "ack_p90_ms", "ack_p99_ms", "ack_p99_9_ms", "ack_max_ms",
	"read_records", "read_records_per_second", "read_mib_per_second", "read_calls", "read_failed_calls",
	"get_p50_ms", "get_p90_ms", "get_p99_ms", "get_p99_9_ms", "get_max_ms",
	// End to end: put-to-consume (mixed) or put-to-push (fanout).
	"e2e_p50_ms", "e2e_p90_ms", "e2e_p99_ms", "e2e_p99_9_ms", "e2e_max_ms",
}

// csvRow holds one row by column name.
type csvRow map[string]string

func (row csvRow) setInt(col string, v uint64) { row[col] = strconv.FormatUint(v, 10) }

func (row csvRow) setFloat(col string, v float64) { row[col] = strconv.FormatFloat(v, 'f', 3, 64) }

func (row csvRow) setLatency(prefix string, l latencyReport) {
	row.setFloat(prefix+"_p50_ms", l.P50)
	row.setFloat(prefix+"_p90_ms", l.P90)
	row.setFloat(prefix+"_p99_ms", l.P99)
	row.setFloat(prefix+"_p99_9_ms", l.P999)
	row.setFloat(prefix+"_max_ms", l.Max)
}

// writeCSV prints the header line and the row, in benchCSVColumns' order.
func writeCSV(w io.Writer, row csvRow) error {
	for col := range row {
		if _, known := columnIndex(col); !known {
			return fmt.Errorf("bench: CSV column %q is not in benchCSVColumns", col)
		}
	}
	cw := csv.NewWriter(w)
	record := make([]string, len(benchCSVColumns))
	for i, col := range benchCSVColumns {
		record[i] = row[col]
	}
	if err := cw.Write(benchCSVColumns); err != nil {
		return err
	}
	if err := cw.Write(record); err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

func columnIndex(col string) (int, bool) {
	for i, c := range benchCSVColumns {
		if c == col {
			return i, true
		}
	}
	return 0, false
}

// csvRow is the CSV row of a produce, consume or mixed report.
func (r benchReport) csvRow() csvRow {
	row := csvRow{
		"mode": r.Mode, "stream": r.Stream, "keys": r.Keys,
		"interrupted": strconv.FormatBool(r.Interrupted),
	}
	row.setFloat("elapsed_seconds", r.ElapsedSeconds)
	if r.Mode != "consume" {
		row.setInt("producers", uint64(r.Producers))
		row.setInt("in_flight", uint64(r.InFlight))
		row.setInt("batch", uint64(r.Batch))
		row.setInt("record_size", uint64(r.RecordSize))
		row.setInt("key_count", uint64(r.KeyCount))
		row.setInt("rate", uint64(r.Rate))
		row.setInt("records", r.Records)
		row.setFloat("records_per_second", r.RecordsPerSecond)
		row.setFloat("mib_per_second", r.MiBPerSecond)
		row.setInt("calls", r.Calls)
		row.setInt("failed_calls", r.FailedCalls)
		row.setInt("failed_records", r.FailedRecords)
		row.setLatency("ack", r.Latency)
	}
	if rd := r.Read; rd != nil {
		row.setInt("read_records", rd.Records)
		row.setFloat("read_records_per_second", rd.RecordsPerSecond)
		row.setFloat("read_mib_per_second", rd.MiBPerSecond)
		row.setInt("read_calls", rd.Calls)
		row.setInt("read_failed_calls", rd.FailedCalls)
		row.setLatency("get", rd.GetLatency)
		if rd.PutToConsume != nil {
			row.setLatency("e2e", *rd.PutToConsume)
		}
	}
	return row
}

// csvRow is the CSV row of a fan-out report: records are the acknowledged
// puts, read records what all consumers received.
func (r fanoutReport) csvRow(c *benchVerb) csvRow {
	row := csvRow{
		"mode": "fanout", "stream": r.Stream, "keys": c.keys,
		"interrupted": strconv.FormatBool(r.Interrupted),
	}
	row.setInt("producers", uint64(c.producers))
	row.setInt("in_flight", uint64(c.inFlight))
	row.setInt("batch", 1)
	row.setInt("record_size", uint64(r.RecordSize))
	row.setInt("key_count", uint64(c.keyCount))
	row.setInt("rate", uint64(r.Rate))
	row.setFloat("elapsed_seconds", r.ElapsedSeconds)
	row.setInt("records", r.Acked)
	var failed, received uint64
	for _, n := range r.FailedPuts {
		failed += n
	}
	for _, n := range r.Received {
		received += n
	}
	if r.ElapsedSeconds > 0 {
		row.setFloat("records_per_second", float64(r.Acked)/r.ElapsedSeconds)
		row.setFloat("mib_per_second", float64(r.Acked)*float64(r.RecordSize)/(1<<20)/r.ElapsedSeconds)
	}
	row.setInt("calls", r.Attempted)
	row.setInt("failed_calls", failed)
	row.setInt("failed_records", failed)
	row.setLatency("ack", r.AckLatency)
	row.setInt("read_records", received)
	row.setLatency("e2e", r.PutToPush)
	return row
}
