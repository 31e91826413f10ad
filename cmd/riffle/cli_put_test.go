package main

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// --data writes one record and prints where it went; a throttled
// PutRecord is retried after the broker's RetryInfo delay, a bounded number
// of times.
func TestPutOneRecord(t *testing.T) {
	f := newFakeBroker()
	f.addStream("orders")
	addr, _ := f.start(t)
	code, stdout, stderr := runCLI(t, "", "put", "--stream", "orders", "--key", "k", "--data", "hello", "--addr", addr)
	if code != exitOK || stdout != "shardId-000000000000 1000\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// A throttled PutRecord is retried after the broker's RetryInfo delay.
	code, stdout, _ = runCLI(t, "", "put", "--stream", "orders", "--random-keys", "--data", "throttle-once", "--json", "--addr", addr)
	if code != exitOK || strings.TrimSpace(stdout) != `{"shard_id":"shardId-000000000000","sequence_number":"1001"}` {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
	code, _, stderr = runCLI(t, "", "put", "--stream", "orders", "--key", "k", "--data", "throttle-always", "--addr", addr)
	if code != exitRetryable || !strings.HasPrefix(stderr, "riffle: ProvisionedThroughputExceededException: rate exceeded") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if n := f.callCount("PutRecord"); n != 1+2+putRetry.attempts {
		t.Errorf("%d PutRecord calls, want %d", n, 1+2+putRetry.attempts)
	}
}

// Lines from stdin become records, one output line per input line in input
// order; retryable per-record failures are retried, the rest reported.
// "ok" stands for any success line: which sequence number a line gets
// depends on how the lines were batched.
func TestPutLinesFromStdin(t *testing.T) {
	tests := []struct {
		name      string
		stdin     string
		args      []string
		wantLines []string
		wantCode  int
		wantData  []string
	}{
		{
			name:      "plain lines, CRLF and no final newline",
			stdin:     "a\r\n\nc",
			wantLines: []string{"shardId-000000000000 1000", "shardId-000000000000 1001", "shardId-000000000000 1002"},
			wantData:  []string{"", "a", "c"},
		},
		{
			name:      "throttled once is retried",
			stdin:     "a\nthrottle-once-1\nb\nthrottle-once-2\nc\n",
			args:      []string{"--batch", "2"},
			wantLines: []string{"ok", "ok", "ok", "ok", "ok"},
			wantData:  []string{"a", "b", "c", "throttle-once-1", "throttle-once-2"},
		},
		{
			name:      "rejected record is reported, not retried",
			stdin:     "a\nreject-1\nb\n",
			wantLines: []string{"ok", "FAILED InvalidArgumentException: no luck", "ok"},
			wantCode:  exitFailure,
			wantData:  []string{"a", "b"},
		},
		{
			name:      "throttled for good exits retryable",
			stdin:     "a\nthrottle-always\n",
			wantLines: []string{"ok", "FAILED ProvisionedThroughputExceededException: no luck"},
			wantCode:  exitRetryable,
			wantData:  []string{"a"},
		},
		{
			name:  "json lines",
			stdin: "a\nreject\n",
			args:  []string{"--json"},
			wantLines: []string{
				`{"line":1,"shard_id":"shardId-000000000000","sequence_number":"1000"}`,
				`{"line":2,"error_code":"InvalidArgumentException","error_message":"no luck"}`,
			},
			wantCode: exitFailure,
			wantData: []string{"a"},
		},
		{
			name:  "over-long line fails alone",
			stdin: "a\n" + strings.Repeat("x", maxRecordBytes) + "\nb\n",
			wantLines: []string{
				"ok",
				"FAILED ValidationException: record of 1048577 bytes with its partition key is over the limit of 1048576",
				"ok",
			},
			wantCode: exitFailure,
			wantData: []string{"a", "b"},
		},
		{name: "empty stdin", stdin: ""},
	}
	success := regexp.MustCompile(`^shardId-000000000000 1\d\d\d$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeBroker()
			s := f.addStream("orders")
			addr, _ := f.start(t)
			args := append([]string{"put", "--stream", "orders", "--key", "k", "--addr", addr}, tt.args...)
			code, stdout, stderr := runCLI(t, tt.stdin, args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.wantCode, stderr)
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if stdout == "" {
				lines = nil
			}
			if len(lines) != len(tt.wantLines) {
				t.Fatalf("stdout has %d lines, want %d:\n%s", len(lines), len(tt.wantLines), stdout)
			}
			for i, want := range tt.wantLines {
				if want == "ok" && !success.MatchString(lines[i]) || want != "ok" && lines[i] != want {
					t.Errorf("line %d: %q, want %q", i+1, lines[i], want)
				}
			}
			var stored []string
			for _, r := range s.records {
				stored = append(stored, string(r.GetData()))
			}
			slices.Sort(stored)
			if !slices.Equal(stored, tt.wantData) {
				t.Errorf("stored %q, want %q", stored, tt.wantData)
			}
		})
	}
}

// --random-keys gives every record its own partition key.
func TestPutRandomKeysDiffer(t *testing.T) {
	f := newFakeBroker()
	s := f.addStream("orders")
	addr, _ := f.start(t)
	if code, _, stderr := runCLI(t, "1\n2\n3\n", "put", "--stream", "orders", "--random-keys", "--addr", addr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	keys := map[string]bool{}
	for _, r := range s.records {
		keys[r.GetPartitionKey()] = true
	}
	if len(keys) != 3 {
		t.Errorf("3 records got %d distinct keys", len(keys))
	}
}

// Batches never exceed --batch records or the 5 MiB of one call, and keep
// the input order.
func TestBatcherRespectsCountAndBytes(t *testing.T) {
	tests := []struct {
		name     string
		sizes    []int
		maxCount int
		want     []int
	}{
		{"count", []int{1, 1, 1, 1, 1, 1, 1}, 3, []int{3, 3, 1}},
		{"bytes", []int{900 << 10, 900 << 10, 900 << 10, 900 << 10, 900 << 10, 900 << 10, 900 << 10}, 500, []int{5, 2}},
		{"oversized alone", []int{1, 6 << 20, 1}, 500, []int{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := make(chan inputLine, len(tt.sizes))
			for i, size := range tt.sizes {
				lines <- inputLine{n: i + 1, data: make([]byte, size-1), key: "k"}
			}
			close(lines)
			b := &batcher{lines: lines, maxCount: tt.maxCount}
			var got []int
			next := 1
			for {
				batch, err := b.next(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if len(batch) == 0 {
					break
				}
				for _, l := range batch {
					if l.n != next {
						t.Fatalf("line %d came when %d was due", l.n, next)
					}
					next++
				}
				got = append(got, len(batch))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("batches %v, want %v", got, tt.want)
			}
		})
	}
}
