//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// TestWritesSurviveAKilledNode checks contracts 1 and 2 under a real crash:
// while a quorum of every shard's replicas survives, writes keep being
// acknowledged, after at most a short outage of retryable errors, and no
// acknowledged record is lost. Then that a killed replica, started again on
// its old data, catches up and serves every acknowledged record at the same
// sequence number as the survivors (contract 3, sequence numbers unchanged
// by failover or restart).
//
// n3 is killed with `docker kill` (SIGKILL: no shutdown, no leave) while a
// writer spreads PutRecords over n1 and n2, retrying only what the broker
// says may be retried; the writer keeps going through the restart of n3.
func TestWritesSurviveAKilledNode(t *testing.T) {
	const victim = "n3"
	survivors := []string{"n1", "n2"}
	c := connectCluster(t)
	stream := uniqueStreamName("e2e-failover")
	// Unlimited: the writer goes as fast as the cluster lets it, and the
	// outage check must see failover, not throttling.
	shards := c.createStreamWithLimits(survivors[0], stream, 3, unlimited())
	outageBudget := maxWriteOutage(t)

	// Leave the cluster whole for the next test when the test stopped with
	// the victim down. A victim that runs but never got healthy is the
	// failure itself: waiting again would only repeat it.
	t.Cleanup(func() {
		if state := c.containerState(victim); !strings.HasPrefix(state, "running/") {
			t.Logf("cleanup: %s is %s; starting it", victim, state)
			c.startNode(victim)
			c.waitHealthy(victim)
		}
	})

	var clients []rifflev1.StreamsClient
	for _, s := range survivors {
		clients = append(clients, c.streams(s))
	}
	w := newWriter(stream, clients, 20)
	ctx, stopWriter := context.WithCancel(context.Background())
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		w.run(ctx)
	}()
	stop := func() {
		stopWriter()
		<-writerDone
	}
	defer stop()

	// Each phase waits for fresh acknowledgements, so that writes are known
	// to succeed in it, not merely before it, and for a while, so that they
	// go on succeeding.
	waitAcked := func(phase string, batches int, atLeast time.Duration) {
		t.Helper()
		from, start := w.batchesAcked(), time.Now()
		what := fmt.Sprintf("%d batches acknowledged over at least %v %s", batches, atLeast, phase)
		eventually(t, atLeast+2*outageBudget+30*time.Second, what, func() error {
			if err := w.failure(); err != nil {
				t.Fatalf("writer %s: %v", phase, err)
			}
			if n := w.batchesAcked() - from; n < batches || time.Since(start) < atLeast {
				return fmt.Errorf("%d in %v; last retryable error: %v", n, time.Since(start).Round(time.Millisecond), w.lastRetryable())
			}
			return nil
		})
	}

	// The phases, for the outage check: a write outage is charged to the
	// phase in which it ended.
	type phase struct {
		name  string
		start time.Time
	}
	phases := []phase{{"with every node up", w.startedAt()}}
	reportOutages := func() {
		t.Helper()
		for i, p := range phases {
			end := time.Now()
			if i+1 < len(phases) {
				end = phases[i+1].start
			}
			gap := w.longestGap(p.start, end)
			t.Logf("longest wait for an acknowledgement %s: %v", p.name, gap.Round(time.Millisecond))
			if gap > outageBudget {
				t.Errorf("writes went %v without an acknowledgement %s, more than the %v allowed (RIFFLE_E2E_MAX_OUTAGE)",
					gap.Round(time.Millisecond), p.name, outageBudget)
			}
		}
		for _, note := range w.retryNotes() {
			t.Logf("retryable failure: %s", note)
		}
	}

	waitAcked(phases[0].name, 10, 0)
	phases = append(phases, phase{"after " + victim + " was killed", time.Now()})
	c.killNode(victim)
	// Past memberlist's failure detection (about 5 s), when the cluster
	// reacts to the death, not only raft.
	waitAcked(phases[1].name, 30, 10*time.Second)

	phases = append(phases, phase{"after " + victim + " was started again", time.Now()})
	c.startNode(victim)
	c.waitHealthy(victim)
	waitAcked(phases[2].name, 10, 0)
	stop()
	if err := w.failure(); err != nil {
		reportOutages()
		t.Fatalf("writer: %v", err)
	}
	reportOutages()
	acks, written, retried := w.results()
	t.Logf("%d records acknowledged in %d batches; %d retryable failures ridden out", len(acks), w.batchesAcked(), retried)

	// Every node, the restarted one included, must serve every acknowledged
	// record where it was acknowledged, and the same shard contents.
	c.reconnect(victim)
	c.waitEveryNodeServes(stream, shards, acks, written)
}

// writer puts batches of new records, one PutRecords at a time, spreading
// the calls (and retries) over its clients, and remembers what was
// acknowledged and when.
type writer struct {
	stream    string
	clients   []rifflev1.StreamsClient
	batchSize int

	mu        sync.Mutex
	acks      []ackedRecord
	written   map[string]bool // data of every record sent, acknowledged or not
	ackTimes  []time.Time     // the start, then when each batch was fully acknowledged
	retried   int
	lastRetry error
	notes     []string // the first maxRetryNotes retryable failures, timed
	err       error    // the first failure that was not retryable
}

// maxRetryNotes bounds the retryable failures a writer keeps for the log.
const maxRetryNotes = 30

// newWriter returns a writer of batches of batchSize records to stream; the
// clock of its longest wait for an acknowledgement starts now.
func newWriter(stream string, clients []rifflev1.StreamsClient, batchSize int) *writer {
	return &writer{stream: stream, clients: clients, batchSize: batchSize,
		written: map[string]bool{}, ackTimes: []time.Time{time.Now()}}
}

// run writes until ctx ends or a write is refused.
func (w *writer) run(ctx context.Context) {
	for batch := 0; ctx.Err() == nil; batch++ {
		entries := make([]*rifflev1.PutRecordsRequestEntry, w.batchSize)
		w.mu.Lock()
		for i := range entries {
			n := batch*w.batchSize + i
			entries[i] = &rifflev1.PutRecordsRequestEntry{PartitionKey: fmt.Sprintf("key-%d", n), Data: fmt.Appendf(nil, "record-%d", n)}
			w.written[string(entries[i].GetData())] = true
		}
		w.mu.Unlock()
		// Start each batch on the next client, so both nodes take writes.
		clients := append(append([]rifflev1.StreamsClient{}, w.clients[batch%len(w.clients):]...), w.clients[:batch%len(w.clients)]...)
		acks, err := putRecords(ctx, w.stream, clients, entries, w.noteRetry)
		w.mu.Lock()
		switch {
		case err == nil:
			w.acks = append(w.acks, acks...)
			w.ackTimes = append(w.ackTimes, time.Now())
		case errors.Is(err, errWriteRefused):
			w.err = fmt.Errorf("batch %d: %w", batch, err)
		}
		w.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (w *writer) noteRetry(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.retried++
	w.lastRetry = err
	if len(w.notes) < maxRetryNotes {
		w.notes = append(w.notes, fmt.Sprintf("+%v: %v", time.Since(w.ackTimes[0]).Round(time.Millisecond), err))
	}
}

func (w *writer) retryNotes() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.notes...)
}

func (w *writer) startedAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ackTimes[0]
}

func (w *writer) batchesAcked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ackTimes) - 1
}

func (w *writer) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *writer) lastRetryable() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastRetry
}

// longestGap is the longest wait for an acknowledged batch among those
// acknowledged between from and to: the time since the acknowledgement
// before it (or since the writer started).
func (w *writer) longestGap(from, to time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var longest time.Duration
	for i := 1; i < len(w.ackTimes); i++ {
		if at := w.ackTimes[i]; at.After(from) && !at.After(to) {
			longest = max(longest, at.Sub(w.ackTimes[i-1]))
		}
	}
	return longest
}

// results returns what was acknowledged and what was sent; call it once the
// writer has stopped.
func (w *writer) results() ([]ackedRecord, map[string]bool, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acks, w.written, w.retried
}
