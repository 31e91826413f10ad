package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

// Without --follow, get reads the chain to the tip and stops; each record
// is one tab-separated line.
func TestGetReadsToTheTip(t *testing.T) {
	f := newFakeBroker()
	f.addStream("orders", "r0", "r1", "r2", "r3", "r4")
	addr, _ := f.start(t)
	shard := []string{"get", "--stream", "orders", "--shard", "shardId-000000000000", "--addr", addr}
	tests := []struct {
		name    string
		args    []string
		wantSeq []string
	}{
		{"trim horizon", nil, []string{"1000", "1001", "1002", "1003", "1004"}},
		{"max", []string{"--max", "3"}, []string{"1000", "1001", "1002"}},
		{"limit 1", []string{"--limit", "1"}, []string{"1000", "1001", "1002", "1003", "1004"}},
		{"after sequence number", []string{"--type", "after-sequence-number", "--seq", "1002"}, []string{"1003", "1004"}},
		{"at sequence number", []string{"--type", "at-sequence-number", "--seq", "1002"}, []string{"1002", "1003", "1004"}},
		{"at timestamp", []string{"--type", "at-timestamp", "--timestamp", "1767323045003"}, []string{"1003", "1004"}},
		{"at RFC 3339 timestamp", []string{"--type", "at-timestamp", "--timestamp", "2026-01-02T03:04:05.004Z"}, []string{"1004"}},
		{"latest", []string{"--type", "latest"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", append(shard, tt.args...)...)
			if code != exitOK || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			var seqs []string
			for line := range strings.Lines(stdout) {
				fields := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
				if len(fields) != 4 {
					t.Fatalf("line %q has %d fields, want 4", line, len(fields))
				}
				seqs = append(seqs, fields[0])
			}
			if strings.Join(seqs, ",") != strings.Join(tt.wantSeq, ",") {
				t.Errorf("read %q, want %q", seqs, tt.wantSeq)
			}
		})
	}
	_, stdout, _ := runCLI(t, "", append(shard, "--max", "1")...)
	if want := "1000\t2026-01-02T03:04:05.000Z\tk\tr0\n"; stdout != want {
		t.Errorf("record line %q, want %q", stdout, want)
	}
}

// --json prints one object per record, data in base64 even when binary.
func TestGetJSONLines(t *testing.T) {
	f := newFakeBroker()
	f.addStream("orders", "hello", "\x00\xff")
	addr, _ := f.start(t)
	code, stdout, _ := runCLI(t, "", "get", "--stream", "orders", "--shard", "shardId-000000000000", "--json", "--addr", addr)
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	var got []recordJSON
	for line := range strings.Lines(stdout) {
		var r recordJSON
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, r)
	}
	if len(got) != 2 || string(got[0].Data) != "hello" || string(got[1].Data) != "\x00\xff" || got[1].PartitionKey != "k" {
		t.Errorf("records %+v", got)
	}
	if !strings.Contains(stdout, `"data":"aGVsbG8="`) {
		t.Errorf("data is not base64:\n%s", stdout)
	}
}

// At the end of a closed shard get stops, even with --follow, and names
// the child shards.
func TestGetEndOfClosedShard(t *testing.T) {
	f := newFakeBroker()
	s := f.addStream("orders", "r0")
	s.closed = true
	addr, _ := f.start(t)
	args := []string{"get", "--stream", "orders", "--shard", "shardId-000000000000", "--follow", "--addr", addr}
	code, stdout, stderr := runCLI(t, "", args...)
	if code != exitOK || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
	if want := "riffle: shard shardId-000000000000 is closed; child shards: shardId-000000000001, shardId-000000000002\n"; stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	_, stdout, _ = runCLI(t, "", append(args, "--json")...)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	var last map[string][]childShardJSON
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || len(last["child_shards"]) != 2 {
		t.Errorf("last line %q: %v", lines[len(lines)-1], err)
	}
}

// An expired iterator is replaced by one after the last record read: no
// record is lost or repeated.
func TestGetRenewsExpiredIterator(t *testing.T) {
	f := newFakeBroker()
	f.addStream("orders", "r0", "r1", "r2", "r3", "r4")
	f.expireIterators = 1
	addr, _ := f.start(t)
	code, stdout, stderr := runCLI(t, "", "get", "--stream", "orders", "--shard", "shardId-000000000000", "--addr", addr)
	if code != exitOK || strings.Count(stdout, "\n") != 5 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if n := f.callCount("GetShardIterator"); n != 2 {
		t.Errorf("%d GetShardIterator calls, want 2", n)
	}
	f.expireIterators = 1 << 30
	code, _, stderr = runCLI(t, "", "get", "--stream", "orders", "--shard", "shardId-000000000000", "--addr", addr)
	if code != exitFailure || !strings.HasPrefix(stderr, "riffle: ExpiredIteratorException:") {
		t.Errorf("iterators that always expire: exit %d, stderr %q", code, stderr)
	}
}

// syncBuffer is a bytes.Buffer that a test can read while a verb writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond until it holds or the test's patience runs out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// --follow keeps polling for records written later, and an interrupt ends
// it with exit code 0.
func TestGetFollow(t *testing.T) {
	f := newFakeBroker()
	s := f.addStream("orders", "r0")
	addr, _ := f.start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int)
	go func() {
		done <- runMain(ctx, []string{"get", "--stream", "orders", "--shard", "shardId-000000000000", "--follow", "--poll-interval", "20ms", "--addr", addr},
			stdio{in: strings.NewReader(""), out: &stdout, err: &stderr})
	}()
	waitFor(t, "the first record", func() bool { return strings.Contains(stdout.String(), "\tr0\n") })
	f.mu.Lock()
	s.append("k", []byte("late"))
	f.mu.Unlock()
	waitFor(t, "the late record", func() bool { return strings.Contains(stdout.String(), "\tlate\n") })
	polls := f.callCount("GetRecords")
	time.Sleep(200 * time.Millisecond)
	if n := f.callCount("GetRecords") - polls; n > 15 {
		t.Errorf("%d polls in 200ms with --poll-interval 20ms", n)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("interrupted get --follow exited %d, stderr %q", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("get --follow did not stop when interrupted")
	}
}
