//go:build fault

package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Environment of the runs (the Makefile sets what it needs), besides the
// cluster's (RIFFLE_E2E_DOCKER, RIFFLE_E2E_COMPOSE, RIFFLE_E2E_COMPOSE_FILE,
// RIFFLE_E2E_PROJECT, as for tests/e2e):
//
//	RIFFLE_FAULT_SEED      seed of the run (default: the clock); printed first
//	RIFFLE_FAULT_DURATION  length of the soak's fault phase (default 30m)
//	RIFFLE_FAULT_NEMESES   the soak's nemeses, comma-separated (default all)
//	RIFFLE_FAULT_RESULTS   directory for each run's results (default ./results)
//	RIFFLE_FAULT_KEEP      1 keeps the history of a passing run too
//	RIFFLE_FAULT_LIN_TIMEOUT  the linearizability check's time per shard (default 10s)
//	RIFFLE_FAULT_LIN_MAX_OPS  shards with more operations are not checked for it (default 100000)

// Timing of a run: clients warm up before the first fault, and each fault
// is followed by a quiet period that shows whether writes came back.
const (
	warmup       = 10 * time.Second
	quietPeriod  = 10 * time.Second
	finalTimeout = 90 * time.Second // final liveness: every ack readable everywhere
)

// ciSchedule is the CI-sized run's fixed mix: crashes (of any node, of the
// metadata leader, of every node at once), a pause longer than the election
// timeout, a split or merge (perhaps inside another fault), and partitions
// (isolated node, one-way). The seed picks the nodes.
var ciSchedule = []string{"kill-one", "pause-leader", "reshard", "partition-isolate", "kill-meta-leader", "partition-oneway", "kill-all"}

// soakKinds is every nemesis; the soak runs them in a new random order
// each round.
var soakKinds = []string{
	"kill-one", "kill-meta-leader", "kill-shard-leader", "kill-majority", "kill-all",
	"pause-one", "pause-leader",
	"partition-isolate", "partition-bridge", "partition-oneway", "kill-isolated",
	"slow-link", "packet-loss", "clock-jump", "reshard",
	"corrupt-files",
	// Twice a round: a round brings the spare in and then (at random)
	// drains it out or drains and undrains one of the three.
	"membership", "membership",
}

// TestFaultCI is the CI-sized run (about three minutes): the workload on
// every node through ciSchedule, then every checker; any anomaly fails it.
func TestFaultCI(t *testing.T) {
	runFaults(t, "ci", func(_ *rand.Rand, i int, _ time.Duration) string {
		if i < len(ciSchedule) {
			return ciSchedule[i]
		}
		return ""
	})
}

// TestFaultSoak is `make jepsen`: every nemesis in a rotating order for
// RIFFLE_FAULT_DURATION.
func TestFaultSoak(t *testing.T) {
	if os.Getenv("RIFFLE_FAULT_DURATION") == "" && testing.Short() {
		t.Skip("the soak runs for 30 minutes by default")
	}
	d, err := time.ParseDuration(envOr("RIFFLE_FAULT_DURATION", "30m"))
	if err != nil {
		t.Fatalf("RIFFLE_FAULT_DURATION: %v", err)
	}
	kinds := soakKinds
	if s := os.Getenv("RIFFLE_FAULT_NEMESES"); s != "" {
		kinds = strings.Split(s, ",")
		for _, k := range kinds {
			if _, ok := nemeses[k]; !ok {
				t.Fatalf("RIFFLE_FAULT_NEMESES: no nemesis %q (have %v)", k, soakKinds)
			}
		}
	}
	var round []int
	runFaults(t, "soak", func(rng *rand.Rand, i int, elapsed time.Duration) string {
		if elapsed >= d {
			return ""
		}
		if i%len(kinds) == 0 {
			round = rng.Perm(len(kinds))
		}
		return kinds[round[i%len(kinds)]]
	})
}

// schedule names the i-th fault to inject, elapsed into the fault phase;
// "" ends the run.
type schedule func(rng *rand.Rand, i int, elapsed time.Duration) string

// runFaults runs the workload through the scheduled faults and checks the
// history.
func runFaults(t *testing.T, name string, next schedule) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("RIFFLE_FAULT_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("RIFFLE_FAULT_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("fault run %s: seed %d (RIFFLE_FAULT_SEED=%d repeats the faults and keys)", name, seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6661756c74))

	dir := filepath.Join(envOr("RIFFLE_FAULT_RESULTS", "results"), fmt.Sprintf("%s-%s-%d", name, time.Now().UTC().Format("20060102T150405"), seed))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := newDockerCluster(t)
	ctx := context.Background()
	// Whatever happens, leave the cluster whole: no paused node, no rule.
	t.Cleanup(func() {
		if err := c.healAll(); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	if err := c.healAll(); err != nil {
		t.Fatalf("healing faults left by an earlier run: %v", err)
	}
	if err := waitAllServing(ctx, recoveryTimeout); err != nil {
		t.Fatalf("cluster not serving before the run: %v", err)
	}

	rec, err := NewRecorder(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := setUp(ctx, rec, uint64(seed))
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	c.work = w // for the nemeses that act through the API (reshard)
	t.Logf("stream %s, shards %v, consumer %s", w.stream, w.shards, w.consumerARN)

	wctx, stopClients := context.WithCancel(ctx)
	w.start(wctx)
	pause(ctx, warmup)
	var recovery []Anomaly
	start := time.Now()
	for i := 0; ; i++ {
		kind := next(rng, i, time.Since(start))
		if kind == "" {
			break
		}
		n, ok := nemeses[kind]
		if !ok {
			t.Fatalf("no nemesis %q", kind)
		}
		if err := applyFault(ctx, c, rec, rng, n, t.Logf); err != nil {
			t.Logf("nemesis: %v", err)
			recovery = append(recovery, Anomaly{"recovery", strings.ReplaceAll(err.Error(), "\n", "; ")})
			if err := c.healAll(); err != nil {
				t.Logf("healing after a failed recovery: %v", err)
			}
			waitAllServing(ctx, recoveryTimeout)
		}
		pause(ctx, quietPeriod)
	}
	stopClients()
	w.wait()
	if lulls, asleep := w.Lulls(); lulls > 0 {
		t.Logf("%d lulls in the workload; at most %d replicas hibernating in one", lulls, asleep)
		if asleep == 0 {
			t.Errorf("%d lulls put no shard to sleep: hibernation went untested", lulls)
		}
	}
	if spareIn.Load() {
		// The spare holds replicas: its reads are judged too.
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cl, err := dialNode(dctx, spareNode)
		cancel()
		if err != nil {
			recovery = append(recovery, Anomaly{"recovery", fmt.Sprintf("final reads: dial %s: %v", spareNode.service, err)})
		} else {
			w.clients[spareNode.service] = cl
		}
	}
	h := rec.History()
	t.Logf("clients stopped after %d history entries; final reads", len(h))
	putOK, putFail, putInfo, readOK, readFail := kinesisCounts(h)
	t.Logf("through the Kinesis API: puts %d ok / %d fail / %d info, reads %d ok / %d fail", putOK, putFail, putInfo, readOK, readFail)
	if putOK == 0 || readOK == 0 {
		t.Errorf("the Kinesis API clients completed no put or no read: that API went untested")
	}
	final, unread := w.finalReads(ctx, h, finalTimeout)
	h = rec.History() // with the shards' lineage the final reads recorded
	if err := rec.Close(); err != nil {
		t.Errorf("history file: %v", err)
	}

	anomalies, lin := CheckRun(h, final, linearizabilityBudget(t))
	for _, n := range sortedKeys(unread) {
		// Every record looks lost from a node never read: say why first.
		recovery = append(recovery, Anomaly{"recovery", fmt.Sprintf("final reads: nothing read from %s: %v", n, unread[n])})
	}
	if len(recovery) > 0 {
		anomalies["recovery"] = recovery
	}
	var report bytes.Buffer
	fmt.Fprintf(&report, "fault run %s, stream %s\n", name, w.stream)
	WriteReport(&report, seed, h, anomalies, lin)
	os.WriteFile(filepath.Join(dir, "report.txt"), report.Bytes(), 0o644)
	if err := PlotLatency(filepath.Join(dir, "latency.png"), h); err != nil {
		t.Logf("plot: %v", err)
	}
	for _, line := range strings.Split(strings.TrimRight(report.String(), "\n"), "\n") {
		t.Log(line)
	}
	if len(anomalies) > 0 {
		if b, err := json.Marshal(final); err == nil {
			os.WriteFile(filepath.Join(dir, "final-reads.json"), b, 0o644)
		}
		c.saveEvidence(dir)
		t.Errorf("%d kinds of anomaly (seed %d); history, final reads, node logs and data in %s", len(anomalies), seed, dir)
		return
	}
	if os.Getenv("RIFFLE_FAULT_KEEP") != "1" {
		os.Remove(filepath.Join(dir, "history.jsonl"))
	}
	t.Logf("no anomaly; report and latency plot in %s", dir)
}

// linearizabilityBudget is the default, or what RIFFLE_FAULT_LIN_TIMEOUT
// and RIFFLE_FAULT_LIN_MAX_OPS set.
func linearizabilityBudget(t *testing.T) LinearizabilityBudget {
	b := DefaultLinearizabilityBudget
	if s := os.Getenv("RIFFLE_FAULT_LIN_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("RIFFLE_FAULT_LIN_TIMEOUT: %v", err)
		}
		b.Timeout = d
	}
	if s := os.Getenv("RIFFLE_FAULT_LIN_MAX_OPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("RIFFLE_FAULT_LIN_MAX_OPS: %v", err)
		}
		b.MaxOps = n
	}
	return b
}
