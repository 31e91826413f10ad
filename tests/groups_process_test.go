package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// consumeProcess is a `riffle consume` child process and what it printed.
type consumeProcess struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan struct{} // stdout read to its end

	mu      sync.Mutex
	printed map[string]time.Time // shard/seq -> when printed
}

func startConsume(t *testing.T, addr, stream, group, worker string, extra ...string) *consumeProcess {
	t.Helper()
	args := append([]string{"consume", "--addr", addr, "--stream", stream, "--group", group, "--worker-id", worker, "--json"}, extra...)
	cp := &consumeProcess{cmd: exec.Command(riffleBinary, args...), stderr: &bytes.Buffer{}, done: make(chan struct{}),
		printed: map[string]time.Time{}}
	cp.cmd.Stderr = cp.stderr
	out, err := cp.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cp.read(t, out)
	t.Cleanup(func() {
		if cp.cmd.ProcessState == nil {
			cp.cmd.Process.Kill()
			<-cp.done
			cp.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("riffle consume %s stderr:\n%s", worker, cp.stderr.String())
		}
	})
	return cp
}

func (cp *consumeProcess) read(t *testing.T, out io.Reader) {
	defer close(cp.done)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var r struct {
			ShardID        string `json:"shard_id"`
			SequenceNumber string `json:"sequence_number"`
			PartitionKey   string `json:"partition_key"`
			Data           []byte `json:"data"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.ShardID == "" || r.SequenceNumber == "" || r.PartitionKey == "" {
			t.Errorf("riffle consume printed %q: %v", sc.Text(), err)
			continue
		}
		cp.mu.Lock()
		if _, seen := cp.printed[r.ShardID+"/"+r.SequenceNumber]; !seen {
			cp.printed[r.ShardID+"/"+r.SequenceNumber] = time.Now()
		}
		cp.mu.Unlock()
	}
}

func (cp *consumeProcess) snapshot() map[string]time.Time {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	out := make(map[string]time.Time, len(cp.printed))
	for k, v := range cp.printed {
		out[k] = v
	}
	return out
}

// TestConsumeProcessesSurviveKill9 runs two `riffle consume` workers of one
// group on a 4-shard stream while records are written, kills one with
// SIGKILL, and checks that the other takes its shards over and prints every
// acknowledged record; records printed by both lie above the dead worker's
// last checkpoint. It reports the takeover time and the duplicates.
func TestConsumeProcessesSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	p := startProcess(t, filepath.Join(t.TempDir(), "data"), freePort(t))
	createStream(t, p.client, "procgroup", 4)
	opts := []string{"--lease-duration", "2s", "--checkpoint-interval", "1s"}
	a := startConsume(t, p.addr, "procgroup", "g", "wa", opts...)
	b := startConsume(t, p.addr, "procgroup", "g", "wb", opts...)
	groups := rifflev1.NewConsumerGroupsClient(p.conn)
	owners := func() (map[string]string, map[string]string) {
		d, err := groups.DescribeConsumerGroup(context.Background(), &rifflev1.DescribeConsumerGroupRequest{GroupName: "g"})
		if err != nil {
			return nil, nil
		}
		own, cps := map[string]string{}, map[string]string{}
		for _, l := range d.Group.Leases {
			own[l.ShardId], cps[l.ShardId] = l.Owner, l.Checkpoint
		}
		return own, cps
	}
	waitFor(t, 20*time.Second, "two shards each", func() error {
		own, _ := owners()
		n := map[string]int{}
		for _, o := range own {
			n[o]++
		}
		if n["wa"] != 2 || n["wb"] != 2 {
			return fmt.Errorf("owners %v", own)
		}
		return nil
	})

	var mu sync.Mutex
	acked := map[string]bool{}
	ctx, stopWriting := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			var entries []*rifflev1.PutRecordsRequestEntry
			for j := 0; j < 20; j++ {
				entries = append(entries, &rifflev1.PutRecordsRequestEntry{PartitionKey: fmt.Sprintf("k%d-%d", i, j), Data: []byte("x")})
			}
			out, err := p.client.PutRecords(ctx, &rifflev1.PutRecordsRequest{StreamName: "procgroup", Records: entries})
			if err == nil {
				mu.Lock()
				for _, r := range out.Records {
					if r.ErrorCode == "" {
						acked[r.ShardId+"/"+r.SequenceNumber] = true
					}
				}
				mu.Unlock()
			}
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	})
	defer func() { stopWriting(); wg.Wait() }()
	waitFor(t, 20*time.Second, "both workers printing", func() error {
		if na, nb := len(a.snapshot()), len(b.snapshot()); na < 200 || nb < 200 {
			return fmt.Errorf("a printed %d, b %d", na, nb)
		}
		return nil
	})
	ownBefore, _ := owners()
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-a.done
	a.cmd.Wait()
	_, checkpoints := owners() // a's last checkpoints: nothing moves for a lease
	printedByA := a.snapshot()

	// Takeover: b prints a record of a shard a held.
	var takeover time.Duration
	// The lease runs from wa's last heartbeat, up to a heartbeat interval
	// (lease/4) before the kill.
	waitFor(t, 20*time.Second, "b prints a's shards", func() error {
		got := map[string]bool{}
		first := time.Time{}
		for k, at := range b.snapshot() {
			shard := k[:len("shardId-000000000000")]
			if ownBefore[shard] == "wa" && at.After(killed) && printedByA[k].IsZero() {
				got[shard] = true
				if first.IsZero() || at.Before(first) {
					first = at
				}
			}
		}
		if len(got) < 2 {
			return fmt.Errorf("b printed new records of %d of a's shards", len(got))
		}
		takeover = first.Sub(killed)
		return nil
	})
	stopWriting()
	wg.Wait()
	mu.Lock()
	want := acked
	mu.Unlock()
	waitFor(t, 20*time.Second, "every acknowledged record printed", func() error {
		byB := b.snapshot()
		missing := 0
		for k := range want {
			if _, ok := byB[k]; !ok && printedByA[k].IsZero() {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d missing", missing, len(want))
		}
		return nil
	})
	dups := 0
	for k := range b.snapshot() {
		if printedByA[k].IsZero() {
			continue
		}
		dups++
		shard, seq := k[:len("shardId-000000000000")], k[len("shardId-000000000000/"):]
		if !aboveCheckpoint(checkpoints[shard], seq) {
			t.Errorf("%s printed by both workers, yet at or below a's last checkpoint %s", k, checkpoints[shard])
		}
	}
	t.Logf("%d records acknowledged; after SIGKILL of wa, wb printed new records of wa's shards after %v (lease 2 s); %d records printed by both (above wa's last checkpoint, checkpoints every second)",
		len(want), takeover.Round(10*time.Millisecond), dups)
}
