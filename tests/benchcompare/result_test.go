package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{7}, 7},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 1, 1000}, 10}, // an outlier run does not move it
	} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// The table has a row per system and size with the median of each figure
// over the runs, and a ratio row Riffle/NATS per size.
func TestSummarizeAndTable(t *testing.T) {
	kib := workload{size: 1024, producers: 4, inFlight: 500, duration: time.Second}
	small := workload{size: 128, producers: 4, inFlight: 500, duration: time.Second}
	res := func(system string, w workload, recPerS, p99 float64) result {
		return result{system: system, workload: w, recPerS: recPerS, mibPerS: recPerS * float64(w.size) / (1 << 20), p50: p99 / 2, p99: p99}
	}
	results := []result{
		// NATS ran first in one run: the table still lists riffle first.
		res("nats", kib, 40000, 20), res("riffle", kib, 50000, 30),
		res("riffle", kib, 70000, 10), res("nats", kib, 45000, 12),
		res("riffle", kib, 60000, 50), res("nats", kib, 50000, 16),
		res("riffle", small, 90000, 8), res("nats", small, 60000, 4),
	}
	rows := summarize(results)
	if len(rows) != 4 {
		t.Fatalf("%d rows: %+v", len(rows), rows)
	}
	if r := rows[0]; r.system != "riffle" || r.size != 1024 || r.runs != 3 || r.recPerS != 60000 || r.p99 != 30 {
		t.Errorf("riffle 1 KiB row %+v, want medians 60000 records/s, p99 30", r)
	}
	if r := rows[1]; r.system != "nats" || r.size != 1024 || r.recPerS != 45000 || r.p99 != 16 {
		t.Errorf("nats 1 KiB row %+v", r)
	}
	if rows[2].size != 128 || rows[2].system != "riffle" || rows[3].system != "nats" {
		t.Errorf("rows out of order: %+v", rows)
	}
	var buf bytes.Buffer
	if err := writeTable(&buf, rows); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 7 { // header, 2 x (riffle, nats, ratio)
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	for _, want := range []string{"records/s", "1 KiB", "128 B", "Riffle/NATS", "1.33x", "1.50x", "1.88x"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// A size run on one system only has no ratio row.
func TestTableOneSystem(t *testing.T) {
	rows := summarize([]result{{system: "nats", workload: workload{size: 128}, recPerS: 1000}})
	var buf bytes.Buffer
	if err := writeTable(&buf, rows); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "Riffle/NATS") {
		t.Errorf("ratio without Riffle:\n%s", buf.String())
	}
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.producers != 4 || o.inFlight != 500 || o.batch != 100 || len(o.sizes) != 2 || o.sizes[0] != 1024 || o.sizes[1] != 128 ||
		o.duration != 30*time.Second || o.runs != 1 || len(o.systems) != 2 || o.warmup != 2*time.Second {
		t.Errorf("defaults %+v, want issue 7's workloads", o)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-in-flight", "250"}, "multiple of -riffle-batch"},
		{[]string{"-sizes", "1024,x"}, `"x" is not a record size`},
		{[]string{"-sizes", "0"}, "is not a record size"},
		{[]string{"-systems", "kafka"}, "is not riffle, nats or kinesis"},
		{[]string{"-runs", "0"}, "-runs must be at least 1"},
		{[]string{"-duration", "0s"}, "-duration must be positive"},
		{[]string{"-riffle-batch", "500", "-in-flight", "500", "-sizes", "20000"}, "over the 5 MiB"},
		{[]string{"-port-base", "65510"}, "-port-base"},
		{[]string{"-warmup", "-1s"}, "-warmup must not be negative"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		if _, err := parseOptions(tt.args); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want %q", tt.args, err, tt.want)
		}
	}
}

// Each NATS server fsyncs before acknowledging and routes to all three.
func TestNATSConfig(t *testing.T) {
	cfg := natsConfig("n2", "127.0.0.1:19421", "127.0.0.1:19431", "/tmp/x", []string{"127.0.0.1:19430", "127.0.0.1:19431", "127.0.0.1:19432"})
	for _, want := range []string{`server_name: "n2"`, `listen: "127.0.0.1:19421"`, "sync_interval: always", `store_dir: "/tmp/x"`,
		`"nats-route://127.0.0.1:19430", "nats-route://127.0.0.1:19431", "nats-route://127.0.0.1:19432"`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %s:\n%s", want, cfg)
		}
	}
}

func TestQuantileMillis(t *testing.T) {
	var l []time.Duration
	for i := 1; i <= 100; i++ {
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	if p50, p99 := quantileMillis(l, 0.5), quantileMillis(l, 0.99); p50 != 50 || p99 != 99 {
		t.Errorf("p50 %v p99 %v", p50, p99)
	}
	if quantileMillis(nil, 0.5) != 0 {
		t.Error("empty")
	}
}
