package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// riffleCluster is three `riffle serve` processes on loopback.
type riffleCluster struct {
	bin    string
	addrs  []string
	admins []string // each node's admin HTTP (health, metrics)
	// kinesis are the nodes' Kinesis HTTP API addresses.
	kinesis []string
	nodes   []*process
}

// startRiffle starts three nodes with data under dir, no per-shard limits,
// and waits until every one reports SERVING. Node i listens on
// portBase+3i (gRPC), +1 (gossip) and +2 (admin HTTP), and serves the
// Kinesis API on portBase+10+i.
func startRiffle(ctx context.Context, bin, dir string, portBase int) (*riffleCluster, error) {
	c := &riffleCluster{bin: bin}
	var gossip []string
	for i := range 3 {
		c.addrs = append(c.addrs, fmt.Sprintf("127.0.0.1:%d", portBase+3*i))
		gossip = append(gossip, fmt.Sprintf("127.0.0.1:%d", portBase+3*i+1))
	}
	for i := range 3 {
		nodeDir := filepath.Join(dir, fmt.Sprintf("n%d", i+1))
		if err := os.MkdirAll(nodeDir, 0o755); err != nil {
			return nil, err
		}
		c.admins = append(c.admins, fmt.Sprintf("127.0.0.1:%d", portBase+3*i+2))
		c.kinesis = append(c.kinesis, fmt.Sprintf("127.0.0.1:%d", portBase+10+i))
		p, err := startProcess(bin, filepath.Join(dir, fmt.Sprintf("n%d.log", i+1)),
			"serve", "--node-id", fmt.Sprintf("n%d", i+1), "--data-dir", filepath.Join(nodeDir, "data"),
			"--grpc-addr", c.addrs[i], "--gossip-addr", gossip[i], "--admin-addr", c.admins[i], "--kinesis-addr", c.kinesis[i],
			"--join", strings.Join(gossip, ","), "--bootstrap-expect", "3", "--shard-limits", "unlimited", "--log-level", "warn")
		if err != nil {
			c.stop()
			return nil, err
		}
		c.nodes = append(c.nodes, p)
	}
	deadline := time.Now().Add(90 * time.Second)
	for i, addr := range c.addrs {
		for {
			out, err := exec.CommandContext(ctx, bin, "health", "--quiet", "--addr", addr, "--timeout", "2s").CombinedOutput()
			if err == nil {
				break
			}
			if exited := c.nodes[i].exited(); exited != nil {
				c.stop()
				return nil, fmt.Errorf("riffle node %d exited (%v); its log:\n%s", i+1, exited, c.nodes[i].tail())
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				c.stop()
				return nil, fmt.Errorf("riffle node %d at %s not SERVING: %s; its log:\n%s", i+1, addr, bytes.TrimSpace(out), c.nodes[i].tail())
			}
			pause(ctx, 250*time.Millisecond)
		}
	}
	return c, nil
}

func (c *riffleCluster) stop() {
	for _, p := range c.nodes {
		p.stop()
	}
}

// riffleBenchReport is the part of `riffle bench --json` used here.
type riffleBenchReport struct {
	Records          uint64            `json:"records"`
	FailedRecords    uint64            `json:"failed_records"`
	Errors           map[string]uint64 `json:"errors"`
	ElapsedSeconds   float64           `json:"elapsed_seconds"`
	RecordsPerSecond float64           `json:"records_per_second"`
	MiBPerSecond     float64           `json:"mib_per_second"`
	Latency          struct {
		P50 float64 `json:"p50"`
		P99 float64 `json:"p99"`
	} `json:"ack_latency_ms"`
}

// produce runs the workload with `riffle bench`: each producer keeps
// inFlight/batch PutRecords calls of batch records in flight, on a stream
// of shards shards that the bench creates without limits. A warm-up run of
// the same workload, not counted, first lets the shards elect leaders and
// the connections open. The stream is deleted afterwards.
func (c *riffleCluster) produce(ctx context.Context, stream string, w workload, batch, shards int, shardBatches bool, warmup time.Duration) (result, error) {
	defer func() {
		del := exec.Command(c.bin, "stream", "delete", stream, "--addr", strings.Join(c.addrs, ","))
		del.Stdout, del.Stderr = os.Stderr, os.Stderr
		_ = del.Run()
	}()
	if warmup > 0 {
		fmt.Fprintf(os.Stderr, "benchcompare: riffle: warming up for %s\n", warmup)
		warm := w
		warm.duration = warmup
		// A warm-up with nothing acknowledged (exit 1) still warmed up.
		if _, err := c.bench(ctx, stream, warm, batch, shards, shardBatches); err != nil && !errors.As(err, new(*exec.ExitError)) {
			return result{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	return c.bench(ctx, stream, w, batch, shards, shardBatches)
}

// bench runs `riffle bench --json` once and reads its report.
func (c *riffleCluster) bench(ctx context.Context, stream string, w workload, batch, shards int, shardBatches bool) (result, error) {
	args := []string{"bench", "--addr", strings.Join(c.addrs, ","), "--stream", stream, "--create-shards", strconv.Itoa(shards),
		"--producers", strconv.Itoa(w.producers), "--in-flight", strconv.Itoa(w.inFlight / batch), "--batch", strconv.Itoa(batch),
		"--record-size", strconv.Itoa(w.size), "--duration", w.duration.String(), "--timeout", "30s", "--json"}
	if w.rate > 0 {
		// One record a call on a fixed schedule: --in-flight is callers.
		args = []string{"bench", "--addr", strings.Join(c.addrs, ","), "--stream", stream, "--create-shards", strconv.Itoa(shards),
			"--producers", strconv.Itoa(w.producers), "--in-flight", strconv.Itoa(w.inFlight), "--batch", "1", "--rate", strconv.Itoa(w.rate),
			"--record-size", strconv.Itoa(w.size), "--duration", w.duration.String(), "--timeout", "30s", "--json"}
	} else if shardBatches {
		args = append(args, "--shard-batches")
	}
	cmd := exec.CommandContext(ctx, c.bin, args...)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	runErr := cmd.Run()
	if runErr != nil {
		return result{}, fmt.Errorf("riffle bench: %w", runErr)
	}
	var rep riffleBenchReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return result{}, fmt.Errorf("riffle bench printed %q: %w", stdout.String(), err)
	}
	return result{system: "riffle", workload: w, records: rep.Records, errors: rep.FailedRecords, errorNames: rep.Errors,
		elapsed: time.Duration(rep.ElapsedSeconds * float64(time.Second)),
		recPerS: rep.RecordsPerSecond, mibPerS: rep.MiBPerSecond, p50: rep.Latency.P50, p99: rep.Latency.P99}, nil
}
