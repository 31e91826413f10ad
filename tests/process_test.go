package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/riffle-streams/riffle/node"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// riffleBinary is built once per test binary by TestMain.
var riffleBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "riffle-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	riffleBinary = filepath.Join(dir, "riffle")
	build := exec.Command("go", "build", "-o", riffleBinary, "github.com/riffle-streams/riffle/cmd/riffle")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building riffle: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a `riffle serve` child process.
type process struct {
	cmd    *exec.Cmd
	addr   string
	logs   *bytes.Buffer
	conn   *grpc.ClientConn
	client rifflev1.StreamsClient
}

// freePort returns a 127.0.0.1 address whose port is free for TCP and UDP
// right now and was never returned before in this process. Tests keep such
// addresses to bind later (a node's gossip port, kept across restarts, and
// named in every node's join list), so the port comes from below the
// kernel's ephemeral range (32768 and up on Linux): no listener on port 0,
// which every node's gRPC and admin servers use, can take it in the
// meantime. With ports the kernel picked for port 0, CI once got one that
// was taken again by the time the node bound it ("bind: address already in
// use").
func freePort(t testing.TB) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range portSpan {
		port := portLow + portNext%portSpan
		portNext += portStride
		if portsGiven[port] {
			continue
		}
		portsGiven[port] = true
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if portFree(addr) {
			return addr
		}
	}
	t.Fatalf("no free port left in [%d, %d)", portLow, portLow+portSpan)
	return ""
}

// The ports freePort hands out: [portLow, portLow+portSpan), visited in a
// stride that is coprime with the span, from a start that differs between
// test processes running at once.
const (
	portLow    = 20000
	portSpan   = 12000
	portStride = 7919 // prime, not a factor of portSpan
)

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
	portNext   = os.Getpid() * 131
)

// portFree reports whether addr can be bound for TCP and for UDP, as
// memberlist binds its port for both.
func portFree(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	pc.Close()
	return true
}

// startProcess runs `riffle serve` on dir with the given gRPC address and
// waits until its health check reports SERVING. The node has no per-shard
// limits: these tests write and read as fast as they can to check
// durability, not throttling (tests/limits_test.go does that).
func startProcess(t testing.TB, dir, addr string) *process {
	t.Helper()
	p := spawnServe(t, dir, addr, "--gossip-addr", freePort(t))
	p.waitServing(t)
	return p
}

// spawnServe starts `riffle serve` on dir and addr with extra flags (a
// gossip address among them) and connects to it, without waiting.
func spawnServe(t testing.TB, dir, addr string, extra ...string) *process {
	t.Helper()
	p := &process{addr: addr, logs: &bytes.Buffer{}}
	args := append([]string{"serve", "--data-dir", dir, "--grpc-addr", addr,
		"--admin-addr", freePort(t), "--kinesis-addr", freePort(t), "--log-level", "info", "--shard-limits", "unlimited"}, extra...)
	p.cmd = exec.Command(riffleBinary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("riffle serve %s output:\n%s", addr, p.logs.String())
		}
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(node.MaxMessageBytes)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p.conn, p.client = conn, rifflev1.NewStreamsClient(conn)
	return p
}

// waitServing waits until the node's health check reports SERVING.
func (p *process) waitServing(t testing.TB) {
	t.Helper()
	health := healthpb.NewHealthClient(p.conn)
	waitFor(t, 20*time.Second, "riffle serve healthy", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		if r.Status != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("status %v", r.Status)
		}
		return nil
	})
}

// kill sends SIGKILL and reaps the process.
func (p *process) kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
	p.conn.Close()
}

// TestKill9KeepsAcknowledgedRecords checks contract 2 on a real process:
// writers run while the node is killed with SIGKILL; after a restart every
// acknowledged record is readable with the sequence number it was
// acknowledged with, in the same order, and new sequence numbers continue
// above the old ones.
func TestKill9KeepsAcknowledgedRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := filepath.Join(t.TempDir(), "data")
	addr := freePort(t)
	p := startProcess(t, dir, addr)
	createStream(t, p.client, "durable", 4)

	type ack struct{ shard, seq, data string }
	var mu sync.Mutex
	var acks []ack
	record := func(shard, seq, data string) {
		mu.Lock()
		acks = append(acks, ack{shard, seq, data})
		mu.Unlock()
	}
	ctx, stopWriters := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				if w%2 == 0 {
					data := fmt.Sprintf("w%d-%d", w, i)
					out, err := p.client.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "durable", PartitionKey: data, Data: []byte(data)})
					if err == nil {
						record(out.ShardId, out.SequenceNumber, data)
					}
					continue
				}
				var entries []*rifflev1.PutRecordsRequestEntry
				for j := 0; j < 50; j++ {
					data := fmt.Sprintf("w%d-%d-%d", w, i, j)
					entries = append(entries, &rifflev1.PutRecordsRequestEntry{PartitionKey: data, Data: []byte(data)})
				}
				out, err := p.client.PutRecords(ctx, &rifflev1.PutRecordsRequest{StreamName: "durable", Records: entries})
				if err != nil {
					continue
				}
				for j, r := range out.Records {
					if r.ErrorCode == "" {
						record(r.ShardId, r.SequenceNumber, string(entries[j].Data))
					}
				}
			}
		}()
	}
	// Kill once a good number of writes are acknowledged, while writers run.
	waitFor(t, 30*time.Second, "2000 acknowledged records", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acks) < 2000 {
			return fmt.Errorf("%d acknowledged", len(acks))
		}
		return nil
	})
	p.kill(t)
	stopWriters()
	wg.Wait()
	mu.Lock()
	acked := append([]ack(nil), acks...)
	mu.Unlock()
	t.Logf("%d records acknowledged before SIGKILL", len(acked))

	p = startProcess(t, dir, addr)
	waitActive(t, p.client, "durable")
	stored := map[string]map[string]string{} // shard -> seq -> data
	lastSeq := map[string]string{}
	for i := 0; i < 4; i++ {
		shard := fmt.Sprintf("shardId-%012d", i)
		stored[shard] = map[string]string{}
		seen := map[string]bool{}
		for _, r := range readShard(t, p.client, "durable", shard) {
			if seen[string(r.Data)] {
				t.Fatalf("%s: value %s stored twice", shard, r.Data)
			}
			seen[string(r.Data)] = true
			if prev := lastSeq[shard]; prev != "" && !seqLess(prev, r.SequenceNumber) {
				t.Fatalf("%s: sequence numbers out of order after restart", shard)
			}
			stored[shard][r.SequenceNumber] = string(r.Data)
			lastSeq[shard] = r.SequenceNumber
		}
	}
	for _, a := range acked {
		if got, ok := stored[a.shard][a.seq]; !ok || got != a.data {
			t.Fatalf("acknowledged record %s at %s/%s lost after kill -9 (found %q)", a.data, a.shard, a.seq, got)
		}
	}
	// New writes continue above every old sequence number of their shard.
	for i := 0; i < 50; i++ {
		key := "after-" + strconv.Itoa(i)
		out, err := p.client.PutRecord(context.Background(), &rifflev1.PutRecordRequest{StreamName: "durable", PartitionKey: key, Data: []byte(key)})
		if err != nil {
			t.Fatal(err)
		}
		if last := lastSeq[out.ShardId]; last != "" && !seqLess(last, out.SequenceNumber) {
			t.Fatalf("new sequence number %s in %s not above the old %s", out.SequenceNumber, out.ShardId, last)
		}
	}
}

// TestSIGTERMShutsDownCleanly checks that SIGTERM stops a node with exit
// status 0 within seconds and that a restart finds every record.
func TestSIGTERMShutsDownCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := filepath.Join(t.TempDir(), "data")
	addr := freePort(t)
	p := startProcess(t, dir, addr)
	createStream(t, p.client, "graceful", 2)
	var entries []*rifflev1.PutRecordsRequestEntry
	for i := 0; i < 300; i++ {
		entries = append(entries, &rifflev1.PutRecordsRequestEntry{PartitionKey: strconv.Itoa(i), Data: []byte(strconv.Itoa(i))})
	}
	out, err := p.client.PutRecords(context.Background(), &rifflev1.PutRecordsRequest{StreamName: "graceful", Records: entries})
	if err != nil || out.FailedRecordCount != 0 {
		t.Fatalf("PutRecords: %v %v", err, out.GetFailedRecordCount())
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("riffle serve exited with %v after SIGTERM", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("riffle serve still running 15s after SIGTERM")
	}
	if !bytes.Contains(p.logs.Bytes(), []byte("node stopped")) {
		t.Error("no 'node stopped' log line after SIGTERM")
	}
	p = startProcess(t, dir, addr)
	n := len(readShard(t, p.client, "graceful", "shardId-000000000000")) + len(readShard(t, p.client, "graceful", "shardId-000000000001"))
	if n != 300 {
		t.Fatalf("%d records after a clean restart, want 300", n)
	}
}

// cli runs the riffle binary against addr and returns stdout and the exit
// code.
func cli(t *testing.T, addr, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(riffleBinary, append(args, "--addr", addr)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("riffle %v: %v", args, err)
	}
	if code != 0 && testing.Verbose() {
		t.Logf("riffle %v exited %d: %s", args, code, errOut.String())
	}
	return out.String(), code
}

// jsonLines decodes one JSON object per line.
func jsonLines[T any](t *testing.T, s string) []T {
	t.Helper()
	var out []T
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		out = append(out, v)
	}
	return out
}

// TestCLIWalkthrough is issue 2's "done when", through the CLI alone: create
// a 4-shard stream, put 2,000 records from stdin, read each shard back in
// order with every iterator type, kill -9 the node, restart it, and find
// every record, with new sequence numbers above the old.
func TestCLIWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := filepath.Join(t.TempDir(), "data")
	addr := freePort(t)
	p := startProcess(t, dir, addr)
	if _, code := cli(t, addr, "", "stream", "create", "orders", "--shards", "4"); code != 0 {
		t.Fatalf("stream create exited %d", code)
	}
	var lines []string
	for i := 1; i <= 2000; i++ {
		lines = append(lines, fmt.Sprintf("order-%d", i))
	}
	out, code := cli(t, addr, strings.Join(lines, "\n")+"\n", "put", "--stream", "orders", "--random-keys", "--json")
	if code != 0 {
		t.Fatalf("put exited %d", code)
	}
	type putResult struct {
		Line           int    `json:"line"`
		ShardID        string `json:"shard_id"`
		SequenceNumber string `json:"sequence_number"`
		ErrorCode      string `json:"error_code"`
	}
	puts := jsonLines[putResult](t, out)
	if len(puts) != 2000 {
		t.Fatalf("put printed %d results for 2000 lines", len(puts))
	}
	type record struct {
		SequenceNumber string `json:"sequence_number"`
		Data           []byte `json:"data"`
	}
	readAll := func(shard string, extra ...string) []record {
		out, code := cli(t, addr, "", append([]string{"get", "--stream", "orders", "--shard", shard, "--json"}, extra...)...)
		if code != 0 {
			t.Fatalf("get %s %v exited %d", shard, extra, code)
		}
		return jsonLines[record](t, out)
	}
	byShard := map[string][]putResult{}
	for _, r := range puts {
		if r.ErrorCode != "" {
			t.Fatalf("line %d failed: %s", r.Line, r.ErrorCode)
		}
		byShard[r.ShardID] = append(byShard[r.ShardID], r)
	}
	before := map[string][]record{}
	for s := 0; s < 4; s++ {
		shard := fmt.Sprintf("shardId-%012d", s)
		recs := readAll(shard, "--type", "trim-horizon")
		want := byShard[shard]
		if len(recs) != len(want) {
			t.Fatalf("%s: read %d, wrote %d", shard, len(recs), len(want))
		}
		for i, r := range recs {
			// Sequence numbers grow with the input line within a shard.
			if r.SequenceNumber != want[i].SequenceNumber || string(r.Data) != lines[want[i].Line-1] {
				t.Fatalf("%s record %d: %s %q, want %s %q", shard, i, r.SequenceNumber, r.Data, want[i].SequenceNumber, lines[want[i].Line-1])
			}
		}
		before[shard] = recs
		mid := recs[len(recs)/2].SequenceNumber
		if at := readAll(shard, "--type", "at-sequence-number", "--seq", mid); len(at) != len(recs)-len(recs)/2 {
			t.Errorf("%s at-sequence-number: %d records", shard, len(at))
		}
		if after := readAll(shard, "--type", "after-sequence-number", "--seq", mid); len(after) != len(recs)-len(recs)/2-1 {
			t.Errorf("%s after-sequence-number: %d records", shard, len(after))
		}
		if ts := readAll(shard, "--type", "at-timestamp", "--timestamp", "2000-01-01T00:00:00Z"); len(ts) != len(recs) {
			t.Errorf("%s at-timestamp in the past: %d records", shard, len(ts))
		}
		if latest := readAll(shard, "--type", "latest"); len(latest) != 0 {
			t.Errorf("%s latest: %d records", shard, len(latest))
		}
	}
	if _, code := cli(t, addr, "", "stream", "describe", "missing"); code != 3 {
		t.Errorf("describe of a missing stream exited %d, want 3", code)
	}
	if _, code := cli(t, addr, "", "stream", "create"); code != 2 {
		t.Errorf("create without a name exited %d, want 2", code)
	}

	p.kill(t)
	startProcess(t, dir, addr) // the CLI reaches it by address
	for shard, recs := range before {
		after := readAll(shard, "--type", "trim-horizon")
		if len(after) != len(recs) {
			t.Fatalf("%s after kill -9: %d records, had %d", shard, len(after), len(recs))
		}
		for i := range recs {
			if after[i].SequenceNumber != recs[i].SequenceNumber || string(after[i].Data) != string(recs[i].Data) {
				t.Fatalf("%s record %d changed across kill -9", shard, i)
			}
		}
	}
	out, code = cli(t, addr, "", "put", "--stream", "orders", "--key", "customer-42", "--data", "after-restart", "--json")
	if code != 0 {
		t.Fatalf("put after restart exited %d", code)
	}
	res := jsonLines[putResult](t, out)[0]
	last := before[res.ShardID][len(before[res.ShardID])-1].SequenceNumber
	if !seqLess(last, res.SequenceNumber) {
		t.Fatalf("new sequence number %s not above the old %s", res.SequenceNumber, last)
	}
}

// TestCLIFanOut walks the fan-out verbs through the real binary: register
// a consumer, list and describe it, receive every record of every shard in
// order with `riffle subscribe --all`, deregister it, and see it gone.
func TestCLIFanOut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	addr := freePort(t)
	startProcess(t, filepath.Join(t.TempDir(), "data"), addr)
	if _, code := cli(t, addr, "", "stream", "create", "clicks", "--shards", "2"); code != 0 {
		t.Fatalf("stream create exited %d", code)
	}
	out, code := cli(t, addr, "", "consumer", "register", "clicks", "dashboard", "--json")
	if code != 0 {
		t.Fatalf("consumer register exited %d", code)
	}
	type consumer struct {
		Name   string `json:"consumer_name"`
		ARN    string `json:"consumer_arn"`
		Status string `json:"consumer_status"`
	}
	reg := jsonLines[consumer](t, out)[0]
	if reg.Name != "dashboard" || reg.Status != "ACTIVE" || !strings.Contains(reg.ARN, "/consumer/dashboard:") {
		t.Fatalf("registered %+v", reg)
	}
	out, code = cli(t, addr, "", "consumer", "list", "clicks", "--json")
	var list []consumer
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list) != 1 || list[0].ARN != reg.ARN {
		t.Fatalf("consumer list exited %d: %v %s", code, err, out)
	}
	if out, code = cli(t, addr, "", "consumer", "describe", "--arn", reg.ARN); code != 0 || !strings.Contains(out, "ACTIVE") {
		t.Fatalf("consumer describe exited %d: %s", code, out)
	}

	var lines []string
	for i := range 300 {
		lines = append(lines, fmt.Sprintf("click-%d", i))
	}
	if _, code := cli(t, addr, strings.Join(lines, "\n")+"\n", "put", "--stream", "clicks", "--random-keys"); code != 0 {
		t.Fatalf("put exited %d", code)
	}
	out, code = cli(t, addr, "", "subscribe", "--stream", "clicks", "--consumer", "dashboard", "--all", "--type", "trim-horizon", "--max", "300", "--json")
	if code != 0 {
		t.Fatalf("subscribe exited %d", code)
	}
	type pushed struct {
		ShardID        string `json:"shard_id"`
		SequenceNumber string `json:"sequence_number"`
		Data           []byte `json:"data"`
	}
	got := jsonLines[pushed](t, out)
	if len(got) != 300 {
		t.Fatalf("subscribe printed %d records, want 300", len(got))
	}
	seen, last := map[string]bool{}, map[string]string{}
	for _, r := range got {
		if l := last[r.ShardID]; l != "" && !seqLess(l, r.SequenceNumber) {
			t.Fatalf("%s: %s after %s", r.ShardID, r.SequenceNumber, l)
		}
		last[r.ShardID] = r.SequenceNumber
		seen[string(r.Data)] = true
	}
	for _, l := range lines {
		if !seen[l] {
			t.Fatalf("record %q never pushed", l)
		}
	}
	if len(last) != 2 {
		t.Errorf("records came from %d shards, want 2", len(last))
	}

	if _, code := cli(t, addr, "", "consumer", "deregister", "clicks", "dashboard"); code != 0 {
		t.Fatalf("consumer deregister exited %d", code)
	}
	waitFor(t, 10*time.Second, "consumer gone", func() error {
		if _, code := cli(t, addr, "", "consumer", "describe", "clicks", "dashboard"); code != 3 {
			return fmt.Errorf("describe exited %d, want 3", code)
		}
		return nil
	})
	if _, code := cli(t, addr, "", "subscribe", "--stream", "clicks", "--consumer", "dashboard", "--shard", "shardId-000000000000"); code != 3 {
		t.Errorf("subscribe of a deregistered consumer exited %d, want 3", code)
	}
	if _, code := cli(t, addr, "", "subscribe", "--stream", "clicks", "--consumer", "x"); code != 2 {
		t.Errorf("subscribe without --shard or --all exited %d, want 2", code)
	}
}

// The fan-out bench splits a shard and merges it back while it writes and
// its consumers read: every acknowledged record reaches both consumers once,
// per-key order holds across parent and children, and the report measures
// when the children took writes.
func TestCLIBenchReshards(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	addr := freePort(t)
	startProcess(t, filepath.Join(t.TempDir(), "data"), addr)
	out, code := cli(t, addr, "", "bench", "--mode", "fanout", "--stream", "hot", "--create-shards", "2",
		"--rate", "200", "--consumers", "2", "--in-flight", "8", "--key-count", "40",
		"--split-after", "2s", "--merge-after", "5s", "--duration", "8s", "--json")
	if code != 0 {
		t.Fatalf("bench exited %d: %s", code, out)
	}
	var report struct {
		Acked              uint64   `json:"acked"`
		Missing            []uint64 `json:"missing"`
		KeyOutOfOrder      []uint64 `json:"key_out_of_order"`
		KeyOrderViolations uint64   `json:"key_order_violations"`
		Reshards           []struct {
			Kind                string   `json:"kind"`
			Parents             []string `json:"parents"`
			Children            []string `json:"children"`
			FirstChildAckMillis float64  `json:"first_child_ack_ms"`
			AffectedPuts        int      `json:"affected_puts"`
		} `json:"reshards"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("report: %v: %s", err, out)
	}
	if report.Acked < 1000 || !slices.Equal(report.Missing, []uint64{0, 0}) || !slices.Equal(report.KeyOutOfOrder, []uint64{0, 0}) || report.KeyOrderViolations != 0 {
		t.Fatalf("report: %s", out)
	}
	if len(report.Reshards) != 2 || report.Reshards[0].Kind != "split" || report.Reshards[1].Kind != "merge" {
		t.Fatalf("reshards: %+v", report.Reshards)
	}
	split, merge := report.Reshards[0], report.Reshards[1]
	if len(split.Children) != 2 || !slices.Equal(merge.Parents, split.Children) || len(merge.Children) != 1 {
		t.Fatalf("lineage: split %+v, merge %+v", split, merge)
	}
	for _, r := range report.Reshards {
		if r.FirstChildAckMillis <= 0 || r.AffectedPuts == 0 {
			t.Errorf("%s: no write acknowledged by a child measured: %+v", r.Kind, r)
		}
	}
}
