package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// --keys zipf makes key i about (1+i)^-s as likely as the hottest: the
// hottest key's share is close to the law's, the shares fall with the rank,
// and every key comes from the set. Uniform picks spread evenly.
func TestKeyPickerDistributions(t *testing.T) {
	const n, draws = 100, 200_000
	keys := benchKeys(n)
	index := map[string]int{}
	for i, k := range keys {
		index[k] = i
	}
	count := func(p *keyPicker) []int {
		counts := make([]int, n)
		for range draws {
			i, ok := index[p.next()]
			if !ok {
				t.Fatal("picked a key outside the set")
			}
			counts[i]++
		}
		return counts
	}

	s := 1.3
	var norm float64
	for i := range n {
		norm += math.Pow(float64(i+1), -s)
	}
	zipf := count(newKeyPicker(keys, true, s))
	for _, rank := range []int{0, 1, 4, 9} {
		want := math.Pow(float64(rank+1), -s) / norm
		got := float64(zipf[rank]) / draws
		if math.Abs(got-want) > 0.1*want {
			t.Errorf("zipf: key %d has %.4f of the records, want %.4f", rank, got, want)
		}
	}
	if !(zipf[0] > zipf[1] && zipf[1] > zipf[4] && zipf[4] > zipf[9] && zipf[9] > zipf[n-1]) {
		t.Errorf("zipf: shares do not fall with rank: %v", zipf[:10])
	}

	uniform := count(newKeyPicker(keys, false, s))
	for i, c := range uniform {
		if want := draws / n; c < want*7/10 || c > want*13/10 {
			t.Errorf("uniform: key %d picked %d times, want about %d", i, c, want)
		}
	}
}

// Without --key-count every record gets a fresh random key, zipf or not.
func TestKeyPickerFreshKeys(t *testing.T) {
	for _, zipf := range []bool{false, true} {
		p := newKeyPicker(nil, zipf, defaultZipfS)
		a, b := p.next(), p.next()
		if len(a) != benchKeyLen || a == b {
			t.Errorf("zipf %v: keys %q and %q", zipf, a, b)
		}
	}
}

// The scheduler hands out send times from the call's number, batch/rate
// apart, however late the worker takes them.
func TestBenchSchedulerTimes(t *testing.T) {
	s := newBenchScheduler(1000, 10) // a call of 10 records every 10ms
	if s.interval != 10*time.Millisecond || s.perSecond() != 100 {
		t.Fatalf("interval %v, %d calls/s", s.interval, s.perSecond())
	}
	start := time.Now().Add(-time.Second) // a second behind: no waiting
	stop := make(chan struct{})
	jobs := make(chan time.Time)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(start, stop, jobs)
	}()
	for n := range 20 {
		if got, want := <-jobs, start.Add(time.Duration(n)*10*time.Millisecond); !got.Equal(want) {
			t.Fatalf("call %d scheduled at %v, want %v", n, got.Sub(start), want.Sub(start))
		}
	}
	close(stop)
	<-done
	if _, open := <-jobs; open {
		t.Error("jobs still open after stop")
	}
	if s.scheduled() != 20 {
		t.Errorf("scheduled %d calls, handed out 20", s.scheduled())
	}
}

// The CSV output is one header line of the stable columns and one row of as
// many fields, for every mode.
func TestBenchCSVShape(t *testing.T) {
	lat := latencyReport{P50: 1.5, P90: 2, P99: 3.25, P999: 4, Max: 5}
	produce := benchReport{Mode: "produce", Stream: "s", Producers: 4, InFlight: 8, Batch: 100, RecordSize: 1024, Keys: "zipf", KeyCount: 10,
		ElapsedSeconds: 2, Records: 1000, RecordsPerSecond: 500, MiBPerSecond: 0.49, Calls: 10, Latency: lat}
	mixed := produce
	mixed.Mode = "mixed"
	mixed.Read = &readReport{Records: 1000, RecordsPerSecond: 500, Calls: 30, GetLatency: lat, PutToConsume: &lat}
	consume := benchReport{Mode: "consume", Stream: "s", Keys: "uniform", ElapsedSeconds: 1,
		Read: &readReport{Records: 5000, RecordsPerSecond: 5000, MiBPerSecond: 4.88, Calls: 1, GetLatency: lat}}
	fanout := fanoutReport{Stream: "s", Rate: 1000, RecordSize: 100, ElapsedSeconds: 2, Attempted: 2000, Acked: 1999,
		FailedPuts: map[string]uint64{"X": 1}, Received: []uint64{1999, 1999}, AckLatency: lat, PutToPush: lat}

	for _, tt := range []struct {
		row   csvRow
		want  map[string]string
		empty []string
	}{
		{produce.csvRow(), map[string]string{"mode": "produce", "records": "1000", "ack_p99_ms": "3.250", "keys": "zipf", "key_count": "10", "rate": "0"},
			[]string{"read_records", "e2e_p99_ms"}},
		{mixed.csvRow(), map[string]string{"mode": "mixed", "read_records": "1000", "e2e_p50_ms": "1.500", "get_max_ms": "5.000"}, nil},
		{consume.csvRow(), map[string]string{"mode": "consume", "read_records_per_second": "5000.000", "read_calls": "1"},
			[]string{"records", "producers", "ack_p50_ms", "e2e_p50_ms"}},
		{fanout.csvRow(&benchVerb{producers: 2, inFlight: 3, keys: "uniform"}), map[string]string{"mode": "fanout", "records": "1999", "failed_calls": "1",
			"read_records": "3998", "e2e_p99_9_ms": "4.000", "records_per_second": "999.500"}, []string{"get_p50_ms"}},
	} {
		var buf bytes.Buffer
		if err := writeCSV(&buf, tt.row); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("%d lines, want a header and one row:\n%s", len(lines), buf.String())
		}
		if lines[0] != strings.Join(benchCSVColumns, ",") {
			t.Errorf("header %q", lines[0])
		}
		records, err := csv.NewReader(&buf).ReadAll()
		if err != nil || len(records) != 2 || len(records[1]) != len(benchCSVColumns) {
			t.Fatalf("not a header and a row of %d fields: %v, %v", len(benchCSVColumns), records, err)
		}
		got := map[string]string{}
		for i, col := range benchCSVColumns {
			got[col] = records[1][i]
		}
		for col, want := range tt.want {
			if got[col] != want {
				t.Errorf("%s: column %s = %q, want %q", tt.want["mode"], col, got[col], want)
			}
		}
		for _, col := range tt.empty {
			if got[col] != "" {
				t.Errorf("%s: column %s = %q, want empty", tt.want["mode"], col, got[col])
			}
		}
	}
	if err := writeCSV(&bytes.Buffer{}, csvRow{"no_such_column": "1"}); err == nil {
		t.Error("a column outside benchCSVColumns was written")
	}
}

// With --rate the bench sends calls on the schedule: every call handed out
// is made and counted, and the number matches the rate over the duration.
func TestBenchOpenLoop(t *testing.T) {
	f := newFakeBroker()
	f.addStream("b")
	addr, _ := f.start(t)
	code, stdout, stderr := runCLI(t, "", "bench", "--stream", "b", "--rate", "500", "--batch", "10", "--record-size", "50",
		"--producers", "2", "--in-flight", "2", "--key-count", "20", "--keys", "zipf", "--duration", "1200ms", "--json", "--addr", addr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r benchReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if r.Rate != 500 || r.Records != r.ScheduledRecords || r.FailedRecords != 0 {
		t.Errorf("rate %d: %d records acknowledged of %d scheduled, %d failed", r.Rate, r.Records, r.ScheduledRecords, r.FailedRecords)
	}
	if r.ScheduledRecords < 500 || r.ScheduledRecords > 700 {
		t.Errorf("%d records scheduled in 1.2s at 500/s", r.ScheduledRecords)
	}
	f.mu.Lock()
	keys := map[string]bool{}
	for _, rec := range f.streams["b"].records {
		keys[rec.GetPartitionKey()] = true
	}
	f.mu.Unlock()
	if len(keys) > 20 {
		t.Errorf("%d partition keys, --key-count 20", len(keys))
	}
}

// --mode consume replays the stream from TRIM_HORIZON to its tip and stops
// there, before --duration; --csv prints the same figures.
func TestBenchConsume(t *testing.T) {
	f := newFakeBroker()
	var data []string
	for i := range 25 {
		data = append(data, fmt.Sprintf("record-%02d", i))
	}
	f.addStream("b", data...)
	addr, _ := f.start(t)
	start := time.Now()
	code, stdout, stderr := runCLI(t, "", "bench", "--mode", "consume", "--stream", "b", "--duration", "1m", "--json", "--addr", addr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the replay of 25 records took %v: it did not stop at the tip", d)
	}
	var r benchReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if r.Mode != "consume" || r.Read == nil {
		t.Fatalf("report %+v", r)
	}
	// The fake answers two records a call.
	if rd := r.Read; rd.Records != 25 || rd.Shards != 1 || !rd.CaughtUp || rd.Calls != 13 || rd.FailedCalls != 0 || rd.MiBPerSecond <= 0 {
		t.Errorf("read %+v", *rd)
	}
	if r.Read.GetLatency.P50 <= 0 || r.Read.PutToConsume != nil {
		t.Errorf("latencies %+v", *r.Read)
	}

	code, stdout, stderr = runCLI(t, "", "bench", "--mode", "consume", "--stream", "b", "--csv", "--addr", addr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	records, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
	if err != nil || len(records) != 2 {
		t.Fatalf("%v: %q", err, stdout)
	}
	if i, _ := columnIndex("read_records"); records[1][i] != "25" {
		t.Errorf("read_records %q", records[1][i])
	}
}

// An empty stream replays nothing: exit 1.
func TestBenchConsumeEmpty(t *testing.T) {
	f := newFakeBroker()
	f.addStream("b")
	addr, _ := f.start(t)
	code, _, stderr := runCLI(t, "", "bench", "--mode", "consume", "--stream", "b", "--duration", "5s", "--addr", addr)
	if code != exitFailure || !strings.Contains(stderr, "no record was read") {
		t.Errorf("exit %d: %s", code, stderr)
	}
}

// --mode mixed reads back every record it acknowledged, from LATEST, and
// measures put-to-consume latency from the records' headers; records put
// before the run are not counted.
func TestBenchMixed(t *testing.T) {
	f := newFakeBroker()
	f.addStream("b", "old-1", "old-2")
	addr, _ := f.start(t)
	code, stdout, stderr := runCLI(t, "", "bench", "--mode", "mixed", "--stream", "b", "--rate", "200", "--batch", "5", "--record-size", "40",
		"--producers", "1", "--in-flight", "2", "--poll-interval", "20ms", "--duration", "1200ms", "--json", "--addr", addr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r benchReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if r.Records == 0 || r.Read == nil || r.Read.Records != r.Records {
		t.Fatalf("acknowledged %d, read %+v", r.Records, r.Read)
	}
	e2e := r.Read.PutToConsume
	if e2e == nil || e2e.P50 <= 0 || e2e.P50 > e2e.Max {
		t.Errorf("put-to-consume latency %+v", e2e)
	}
	if !strings.Contains(stderr, "read") {
		t.Errorf("no read progress:\n%s", stderr)
	}
}

// The text report of a consume run shows only what was read; a mixed run's
// shows both sides and the put-to-consume latency.
func TestBenchReportTextReads(t *testing.T) {
	lat := latencyReport{P50: 1, P90: 2, P99: 3, P999: 4, Max: 5}
	consume := benchReport{Mode: "consume", ElapsedSeconds: 2,
		Read: &readReport{Shards: 4, Records: 1000, ElapsedSeconds: 2, RecordsPerSecond: 500, Calls: 8, CaughtUp: true, GetLatency: lat}}
	var buf bytes.Buffer
	if err := writeBenchReport(&buf, consume); err != nil {
		t.Fatal(err)
	}
	want := `read                1000 records from 4 shards in 2.0s: 500 records/s, 0.00 MiB/s
replay              every shard read to its end or tip
GetRecords          8 calls, 0 failed; errors none
GetRecords latency  p50 1ms  p90 2ms  p99 3ms  p99.9 4ms  max 5ms
`
	if buf.String() != want {
		t.Errorf("consume report\n%s\nwant\n%s", buf.String(), want)
	}

	mixed := benchReport{Mode: "mixed", Rate: 100, ScheduledRecords: 200, Records: 200, ElapsedSeconds: 2, Errors: map[string]uint64{}, Latency: lat,
		Read: &readReport{Shards: 1, Records: 200, Calls: 3, FailedCalls: 1, Errors: map[string]uint64{"ExpiredIteratorException": 1}, GetLatency: lat, PutToConsume: &lat}}
	buf.Reset()
	if err := writeBenchReport(&buf, mixed); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"records                 200 in 2.0s", "schedule                100 records/s asked, 200 records sent on schedule",
		"GetRecords              3 calls, 1 failed; errors 1 calls: ExpiredIteratorException 1", "put-to-consume latency  p50 1ms"} {
		if !strings.Contains(buf.String(), line) {
			t.Errorf("mixed report lacks %q:\n%s", line, buf.String())
		}
	}
}
