package main

import (
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests run verbs end to end against fakeBroker: what a user sees on
// stdout and stderr, and the exit code, for the behaviour `riffle help`
// documents.

func TestStreamCreateWaitsUntilActive(t *testing.T) {
	f := newFakeBroker()
	f.describesUntilActive = 3
	addr, _ := f.start(t)
	code, stdout, stderr := runCLI(t, "", "stream", "create", "orders", "--shards", "2", "--addr", addr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"Stream:", "orders", "Status:", "ACTIVE", "Mode:", "PROVISIONED", "Open shards:", "2", "Retention:", "24 hours"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if n := f.callCount("DescribeStreamSummary"); n < 4 {
		t.Errorf("%d DescribeStreamSummary calls: create did not wait for ACTIVE", n)
	}
}

// A retention other than 24 hours is set after creation, and the summary
// printed shows it.
func TestStreamCreateSetsRetentionOnceActive(t *testing.T) {
	f := newFakeBroker()
	f.describesUntilActive = 1
	addr, _ := f.start(t)
	code, stdout, stderr := runCLI(t, "", "stream", "create", "orders", "--on-demand", "--retention-hours", "48", "--json", "--addr", addr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got streamJSON
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, stdout)
	}
	if got.StreamName != "orders" || got.StreamStatus != "ACTIVE" || got.StreamMode != "ON_DEMAND" || got.RetentionPeriodHours != 48 {
		t.Errorf("summary %+v", got)
	}
	if n := f.callCount("IncreaseStreamRetentionPeriod"); n != 1 {
		t.Errorf("%d IncreaseStreamRetentionPeriod calls, want 1", n)
	}
}

// --no-wait returns at once with the stream still CREATING.
func TestStreamCreateNoWait(t *testing.T) {
	f := newFakeBroker()
	f.describesUntilActive = 100
	addr, _ := f.start(t)
	code, stdout, stderr := runCLI(t, "", "stream", "create", "orders", "--shards", "1", "--no-wait", "--addr", addr)
	if code != exitOK || !strings.Contains(stdout, "CREATING") {
		t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// A stream that never turns ACTIVE ends the wait at --timeout with the
// retryable exit code and says what state it was left in.
func TestStreamCreateWaitTimesOut(t *testing.T) {
	f := newFakeBroker()
	f.describesUntilActive = 1 << 30
	addr, _ := f.start(t)
	start := time.Now()
	code, _, stderr := runCLI(t, "", "stream", "create", "orders", "--shards", "1", "--timeout", "1500ms", "--addr", addr)
	if code != exitRetryable || !strings.Contains(stderr, "still CREATING") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "waiting for stream orders to become ACTIVE") {
		t.Errorf("no progress after a second:\n%s", stderr)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("wait took %v with --timeout 1.5s", elapsed)
	}
}

// Broker errors print as "riffle: <ExceptionName>: message" and map to the
// documented exit codes.
func TestBrokerErrorsExitCodes(t *testing.T) {
	f := newFakeBroker()
	f.addStream("orders")
	addr, _ := f.start(t)
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{[]string{"stream", "create", "orders", "--shards", "1"}, exitFailure, "riffle: ResourceInUseException: stream orders exists\n"},
		{[]string{"stream", "describe", "nope"}, exitNotFound, "riffle: ResourceNotFoundException: stream nope not found\n"},
		{[]string{"stream", "delete", "nope"}, exitNotFound, "riffle: ResourceNotFoundException: stream nope not found\n"},
		{[]string{"shard", "list", "nope"}, exitNotFound, "riffle: ResourceNotFoundException: stream nope not found\n"},
		{[]string{"put", "--stream", "nope", "--key", "k", "--data", "x"}, exitNotFound, "riffle: ResourceNotFoundException: stream nope not found\n"},
		{[]string{"get", "--stream", "orders", "--shard", "shardId-000000000009"}, exitNotFound, "riffle: ResourceNotFoundException: shard shardId-000000000009 not found\n"},
	}
	for _, tt := range tests {
		code, _, stderr := runCLI(t, "", append(tt.args, "--addr", addr)...)
		if code != tt.wantCode || stderr != tt.wantErr {
			t.Errorf("%q: exit %d, stderr %q; want %d, %q", tt.args, code, stderr, tt.wantCode, tt.wantErr)
		}
	}
}

// Nothing listening: every client verb fails fast with exit code 4.
func TestUnreachableNodeExitsRetryable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	for _, args := range [][]string{
		{"stream", "list"}, {"health"}, {"put", "--stream", "s", "--key", "k", "--data", "d"},
	} {
		code, _, stderr := runCLI(t, "", append(args, "--addr", addr)...)
		if code != exitRetryable || !strings.HasPrefix(stderr, "riffle: Unavailable: no node reachable at "+addr) {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
		}
	}
}

// describe and shard list page through ListShards (one shard a page in the
// fake) and mark closed shards.
func TestStreamDescribeListsEveryShard(t *testing.T) {
	f := newFakeBroker()
	s := f.addStream("orders")
	s.shardCount = 3
	s.closed = true
	addr, _ := f.start(t)
	code, stdout, stderr := runCLI(t, "", "stream", "describe", "orders", "--addr", addr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"SHARD ID", "shardId-000000000000", "shardId-000000000001", "shardId-000000000002", "CLOSED", "OPEN", "2000"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("describe lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = runCLI(t, "", "stream", "describe", "orders", "--json", "--addr", addr)
	var got streamJSON
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || code != exitOK {
		t.Fatalf("exit %d, %v:\n%s", code, err, stdout)
	}
	if len(got.Shards) != 3 || got.Shards[0].State != "CLOSED" || got.Shards[2].State != "OPEN" || got.Shards[1].StartingHashKey != "100" {
		t.Errorf("shards %+v", got.Shards)
	}
	code, stdout, _ = runCLI(t, "", "shard", "list", "orders", "--json", "--addr", addr)
	var shards map[string][]shardJSON
	if err := json.Unmarshal([]byte(stdout), &shards); err != nil || code != exitOK || len(shards["shards"]) != 3 {
		t.Errorf("shard list --json: exit %d, %v:\n%s", code, err, stdout)
	}
}

// stream list follows next_token until has_more_streams is false.
func TestStreamListPages(t *testing.T) {
	f := newFakeBroker()
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		f.addStream(name)
	}
	addr, _ := f.start(t)
	code, stdout, stderr := runCLI(t, "", "stream", "list", "--json", "--addr", addr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got map[string][]streamListJSON
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got["streams"] {
		names = append(names, s.StreamName)
		if s.StreamStatus != "ACTIVE" {
			t.Errorf("%s status %q", s.StreamName, s.StreamStatus)
		}
	}
	if strings.Join(names, ",") != "a,b,c,d,e" {
		t.Errorf("listed %q", names)
	}
	if n := f.callCount("ListStreams"); n != 3 {
		t.Errorf("%d ListStreams calls for 5 streams 2 a page, want 3", n)
	}
	_, stdout, _ = runCLI(t, "", "stream", "list", "--addr", addr)
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); len(lines) != 6 || !strings.HasPrefix(lines[0], "NAME") {
		t.Errorf("table:\n%s", stdout)
	}
}

// retention calls Increase or Decrease depending on the current value, and
// nothing when it is already right.
func TestStreamRetentionPicksIncreaseOrDecrease(t *testing.T) {
	f := newFakeBroker()
	f.addStream("orders")
	addr, _ := f.start(t)
	steps := []struct {
		hours, wantIncrease, wantDecrease int
		wantOut                           string
	}{
		{48, 1, 0, "stream orders: retention 24 -> 48 hours\n"},
		{48, 1, 0, "stream orders: retention 48 -> 48 hours\n"},
		{24, 1, 1, "stream orders: retention 48 -> 24 hours\n"},
	}
	for _, s := range steps {
		code, stdout, stderr := runCLI(t, "", "stream", "retention", "orders", "--hours", strconv.Itoa(s.hours), "--addr", addr)
		if code != exitOK || stdout != s.wantOut {
			t.Errorf("--hours %d: exit %d, stdout %q, stderr %q", s.hours, code, stdout, stderr)
		}
		if inc, dec := f.callCount("IncreaseStreamRetentionPeriod"), f.callCount("DecreaseStreamRetentionPeriod"); inc != s.wantIncrease || dec != s.wantDecrease {
			t.Errorf("--hours %d: %d increases, %d decreases", s.hours, inc, dec)
		}
	}
}

// delete removes the stream; describing it afterwards exits 3.
func TestStreamDelete(t *testing.T) {
	f := newFakeBroker()
	f.addStream("orders")
	addr, _ := f.start(t)
	code, stdout, _ := runCLI(t, "", "stream", "delete", "orders", "--json", "--addr", addr)
	if code != exitOK || strings.TrimSpace(stdout) != `{"stream_name":"orders","stream_status":"DELETING"}` {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
	if code, _, _ := runCLI(t, "", "stream", "describe", "orders", "--addr", addr); code != exitNotFound {
		t.Errorf("describe after delete: exit %d", code)
	}
}

// TestStreamCreateLimits checks that stream create sends the per-stream
// limit overrides it is given (--unlimited for all, a per-limit flag winning
// over it), sends none without flags, and that the summary shows the limits
// the broker reports.
func TestStreamCreateLimits(t *testing.T) {
	f := newFakeBroker()
	addr, _ := f.start(t)
	code, stdout, stderr := runCLI(t, "", "stream", "create", "free", "--shards", "1", "--unlimited", "--read-calls-per-sec", "7", "--json", "--addr", addr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		ShardLimits map[string]int64 `json:"shard_limits"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	want := map[string]int64{"write_bytes_per_second": 0, "write_records_per_second": 0, "read_bytes_per_second": 0,
		"read_calls_per_second": 7, "fan_out_bytes_per_second": 0}
	if len(got.ShardLimits) != len(want) {
		t.Fatalf("shard_limits %v, want %v", got.ShardLimits, want)
	}
	for k, v := range want {
		if got.ShardLimits[k] != v {
			t.Errorf("shard_limits %v, want %v", got.ShardLimits, want)
		}
	}
	f.mu.Lock()
	l := f.streams["free"].limits
	f.mu.Unlock()
	if l.WriteBytesPerSecond == nil || l.GetReadCallsPerSecond() != 7 {
		t.Errorf("CreateStream sent shard_limits %v", l)
	}

	code, stdout, stderr = runCLI(t, "", "stream", "describe", "free", "--addr", addr)
	if code != exitOK {
		t.Fatalf("describe: exit %d: %s", code, stderr)
	}
	if line := "Shard limits: writes unlimited records/s and unlimited bytes/s; GetRecords 7 calls/s and unlimited bytes/s; fan-out unlimited bytes/s per consumer"; !strings.Contains(stdout, line) {
		t.Errorf("describe lacks %q:\n%s", line, stdout)
	}

	if code, _, stderr := runCLI(t, "", "stream", "create", "plain", "--shards", "1", "--addr", addr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if l := f.streams["plain"].limits; l != nil {
		t.Errorf("stream create without limit flags sent shard_limits %v", l)
	}
}
