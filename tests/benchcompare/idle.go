package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The idle-cost workload (issue 14): N shards or N R3 streams that nobody
// writes to or reads, and what the three server processes cost meanwhile:
// CPU (utime+stime from /proc over the window, in cores) and RSS.

// idleResult is one system's idle cost.
type idleResult struct {
	system  string
	groups  int
	window  time.Duration
	cores   float64 // the three processes together
	rssMiB  float64 // per process, the mean
	settled time.Duration
}

// usage is a process's CPU time so far and its resident memory.
func (p *process) usage() (cpu time.Duration, rssKiB int64, err error) {
	pid := p.cmd.Process.Pid
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: utime and stime are the 14th and 15th fields.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
	fields := strings.Fields(rest)
	if len(fields) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %q %q", pid, fields[11], fields[12])
	}
	// Linux counts in USER_HZ, 100 a second on every architecture Go runs.
	cpu = time.Duration(utime+stime) * 10 * time.Millisecond
	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			rssKiB, _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return cpu, rssKiB, sc.Err()
}

// measureIdle samples the processes' CPU time over window and their RSS
// at its end.
func measureIdle(ctx context.Context, system string, groups int, nodes []*process, window time.Duration) (idleResult, error) {
	res := idleResult{system: system, groups: groups, window: window}
	var before time.Duration
	for _, p := range nodes {
		cpu, _, err := p.usage()
		if err != nil {
			return res, err
		}
		before += cpu
	}
	start := time.Now()
	pause(ctx, window)
	elapsed := time.Since(start)
	var after time.Duration
	var rss int64
	for _, p := range nodes {
		cpu, kib, err := p.usage()
		if err != nil {
			return res, err
		}
		after += cpu
		rss += kib
	}
	res.cores = (after - before).Seconds() / elapsed.Seconds()
	res.rssMiB = float64(rss) / 1024 / float64(len(nodes))
	return res, ctx.Err()
}

// idle creates a stream of groups shards, waits until every replica
// hibernates (the nodes' riffle_shards_hibernating), measures and deletes
// the stream.
func (c *riffleCluster) idle(ctx context.Context, stream string, groups int, window time.Duration) (idleResult, error) {
	addrs := strings.Join(c.addrs, ",")
	create := exec.CommandContext(ctx, c.bin, "stream", "create", stream, "--shards", strconv.Itoa(groups), "--addr", addrs, "--timeout", "5m")
	create.Stdout, create.Stderr = os.Stderr, os.Stderr
	if err := create.Run(); err != nil {
		return idleResult{}, fmt.Errorf("riffle stream create: %w", err)
	}
	defer func() {
		del := exec.Command(c.bin, "stream", "delete", stream, "--addr", addrs)
		del.Stdout, del.Stderr = os.Stderr, os.Stderr
		_ = del.Run()
	}()
	start := time.Now()
	deadline := start.Add(5 * time.Minute)
	for {
		asleep, err := c.metricSum(ctx, "riffle_shards_hibernating")
		if err == nil && asleep >= float64(3*groups) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return idleResult{}, fmt.Errorf("%d shards: %v of %d replicas hibernating after %s (err %v)", groups, asleep, 3*groups, time.Since(start).Round(time.Second), err)
		}
		fmt.Fprintf(os.Stderr, "benchcompare: riffle: %v of %d replicas hibernating\n", asleep, 3*groups)
		pause(ctx, 2*time.Second)
	}
	settled := time.Since(start)
	res, err := measureIdle(ctx, "riffle", groups, c.nodes, window)
	res.settled = settled
	return res, err
}

// metricSum adds up one metric over the three nodes' /metrics.
func (c *riffleCluster) metricSum(ctx context.Context, name string) (float64, error) {
	sum := 0.0
	for _, admin := range c.admins {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
		if err != nil {
			return 0, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, err
		}
		for line := range strings.SplitSeq(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					return 0, fmt.Errorf("%s on %s: %q", name, admin, v)
				}
				sum += f
			}
		}
	}
	return sum, nil
}

// natsIdleSettle is how long the NATS streams are left alone after their
// creation before the window starts.
const natsIdleSettle = 10 * time.Second

// idle creates groups R3 file streams (each takes one message as it is
// created: the first publish waits for the stream's leader), leaves them
// alone for natsIdleSettle, measures and deletes them.
func (c *natsCluster) idle(ctx context.Context, stream string, groups int, window time.Duration) (idleResult, error) {
	admin, err := nats.Connect(strings.Join(c.urls, ","))
	if err != nil {
		return idleResult{}, err
	}
	defer admin.Close()
	js, err := jetstream.New(admin)
	if err != nil {
		return idleResult{}, err
	}
	var names []string
	defer func() {
		delCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, name := range names {
			_ = js.DeleteStream(delCtx, name)
		}
	}()
	start := time.Now()
	for i := range groups {
		name := fmt.Sprintf("%s-%d", stream, i)
		names = append(names, name)
		if err := createNATSStream(ctx, js, name, name+".records"); err != nil {
			return idleResult{}, err
		}
		if (i+1)%100 == 0 {
			fmt.Fprintf(os.Stderr, "benchcompare: nats: %d of %d streams created\n", i+1, groups)
		}
	}
	pause(ctx, natsIdleSettle)
	settled := time.Since(start)
	res, err := measureIdle(ctx, "nats", groups, c.nodes, window)
	res.settled = settled
	return res, err
}

// writeIdleTable prints the idle results, one row each.
func writeIdleTable(w io.Writer, results []idleResult) error {
	if _, err := fmt.Fprintf(w, "%8s  %8s  %10s  %12s  %16s\n", "system", "groups", "window", "cores (all)", "RSS MiB / node"); err != nil {
		return err
	}
	for _, r := range results {
		if _, err := fmt.Fprintf(w, "%8s  %8d  %10s  %12.3f  %16.1f\n", r.system, r.groups, r.window, r.cores, r.rssMiB); err != nil {
			return err
		}
	}
	return nil
}
