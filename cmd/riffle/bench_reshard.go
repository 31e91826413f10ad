package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"time"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Resharding during a fan-out bench (--split-after, --merge-after): the
// bench splits the stream's first open shard at the middle of its hash
// range, later merges the two children back, and reports for each how long
// it took from the call until a child acknowledged a write, and what the
// writes of the affected keys saw meanwhile. The consumers follow the
// lineage and check per-key order across it.

// reshardEvent is one split or merge the bench made.
type reshardEvent struct {
	kind     string // "split" or "merge"
	parents  []string
	children []string
	callAt   time.Time
	callTook time.Duration
}

// reshardReport is a reshardEvent measured against the run's puts.
type reshardReport struct {
	Kind      string   `json:"kind"`
	Parents   []string `json:"parents"`
	Children  []string `json:"children"`
	AtSeconds float64  `json:"at_seconds"`
	// CallMillis is how long the SplitShard or MergeShards call took.
	CallMillis float64 `json:"call_ms"`
	// FirstChildAckMillis is the time from the call until the first put
	// acknowledged by a child: how long the split or merge took to carry
	// writes. Negative when no child acknowledged a put during the run.
	FirstChildAckMillis float64 `json:"first_child_ack_ms"`
	// The puts to the affected hash range (acknowledged by a parent or a
	// child) sent between the call and one second after the first child
	// acknowledgement: their ack latencies bound the write pause.
	AffectedPuts int           `json:"affected_puts"`
	AffectedAck  latencyReport `json:"affected_ack_latency_ms"`
	// FailedPuts are puts to any key, sent in the same window, that failed.
	FailedPuts int `json:"failed_puts"`
}

// benchKeys returns n partition keys, or none for a fresh key per record.
func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = randomKey()
	}
	return keys
}

// runReshards makes the splits and merges asked for, at their times from
// start, and returns them; it stops early when ctx ends.
func (c *benchVerb) runReshards(ctx context.Context, streams rifflev1.StreamsClient, start time.Time, progress io.Writer) ([]*reshardEvent, error) {
	if c.splitAfter == 0 {
		return nil, nil
	}
	if !sleepUntil(ctx, start.Add(c.splitAfter)) {
		return nil, nil
	}
	var events []*reshardEvent
	split, err := c.splitFirstShard(ctx, streams, progress)
	if split != nil {
		events = append(events, split)
	}
	if err != nil || c.mergeAfter == 0 {
		return events, err
	}
	if !sleepUntil(ctx, start.Add(c.mergeAfter)) {
		return events, nil
	}
	merge, err := c.mergeChildren(ctx, streams, split.children, progress)
	if merge != nil {
		events = append(events, merge)
	}
	return events, err
}

// splitFirstShard splits the open shard with the lowest hash keys at the
// middle of its range and waits for its two children to be listed.
func (c *benchVerb) splitFirstShard(ctx context.Context, streams rifflev1.StreamsClient, progress io.Writer) (*reshardEvent, error) {
	shards, err := listAllShards(ctx, &c.connFlags, streams, c.stream)
	if err != nil {
		return nil, fmt.Errorf("list shards: %w", err)
	}
	var target *rifflev1.Shard
	for _, sh := range shards {
		if sh.GetSequenceNumberRange().GetEndingSequenceNumber() != "" {
			continue
		}
		if target == nil || hashLess(sh.GetHashKeyRange().GetStartingHashKey(), target.GetHashKeyRange().GetStartingHashKey()) {
			target = sh
		}
	}
	if target == nil {
		return nil, errors.New("no open shard to split")
	}
	lo, _ := new(big.Int).SetString(target.GetHashKeyRange().GetStartingHashKey(), 10)
	hi, _ := new(big.Int).SetString(target.GetHashKeyRange().GetEndingHashKey(), 10)
	if lo == nil || hi == nil || hi.Cmp(lo) <= 0 {
		return nil, fmt.Errorf("shard %s has range %v, too small to split", target.GetShardId(), target.GetHashKeyRange())
	}
	mid := new(big.Int).Add(lo, new(big.Int).Rsh(new(big.Int).Sub(hi, lo), 1))
	mid.Add(mid, big.NewInt(1))

	ev := &reshardEvent{kind: "split", parents: []string{target.GetShardId()}, callAt: time.Now()}
	fmt.Fprintf(progress, "riffle: splitting %s at hash key %s\n", target.GetShardId(), mid)
	err = retryInUse(ctx, c.timeout, func(callCtx context.Context) error {
		_, err := streams.SplitShard(callCtx, &rifflev1.SplitShardRequest{StreamName: c.stream, ShardToSplit: target.GetShardId(), NewStartingHashKey: mid.String()})
		return err
	})
	ev.callTook = time.Since(ev.callAt)
	if err != nil {
		return nil, fmt.Errorf("split %s: %w", target.GetShardId(), err)
	}
	ev.children, err = c.waitChildren(ctx, streams, func(sh *rifflev1.Shard) bool {
		return sh.GetParentShardId() == target.GetShardId() && sh.GetAdjacentParentShardId() == ""
	}, 2)
	if err != nil {
		return ev, err
	}
	fmt.Fprintf(progress, "riffle: %s split into %s after %s\n", target.GetShardId(), ev.children, time.Since(ev.callAt).Round(time.Millisecond))
	return ev, nil
}

// mergeChildren merges the two children of the split back into one shard.
func (c *benchVerb) mergeChildren(ctx context.Context, streams rifflev1.StreamsClient, children []string, progress io.Writer) (*reshardEvent, error) {
	// The stream is UPDATING until the split has finished; wait for it
	// rather than count on the retries below.
	if _, err := waitActive(ctx, &c.connFlags, streams, c.stream, time.Now().Add(defaultActiveWait), io.Discard); err != nil {
		return nil, fmt.Errorf("wait for the split to finish: %w", err)
	}
	lower, upper := children[0], children[1]
	ev := &reshardEvent{kind: "merge", parents: []string{lower, upper}, callAt: time.Now()}
	fmt.Fprintf(progress, "riffle: merging %s and %s\n", lower, upper)
	err := retryInUse(ctx, c.timeout, func(callCtx context.Context) error {
		_, err := streams.MergeShards(callCtx, &rifflev1.MergeShardsRequest{StreamName: c.stream, ShardToMerge: lower, AdjacentShardToMerge: upper})
		return err
	})
	ev.callTook = time.Since(ev.callAt)
	if err != nil {
		return nil, fmt.Errorf("merge %s and %s: %w", lower, upper, err)
	}
	ev.children, err = c.waitChildren(ctx, streams, func(sh *rifflev1.Shard) bool {
		p, a := sh.GetParentShardId(), sh.GetAdjacentParentShardId()
		return (p == lower && a == upper) || (p == upper && a == lower)
	}, 1)
	if err != nil {
		return ev, err
	}
	fmt.Fprintf(progress, "riffle: %s and %s merged into %s after %s\n", lower, upper, ev.children[0], time.Since(ev.callAt).Round(time.Millisecond))
	return ev, nil
}

// waitChildren polls ListShards until want shards match, and returns their
// ids in hash-key order.
func (c *benchVerb) waitChildren(ctx context.Context, streams rifflev1.StreamsClient, match func(*rifflev1.Shard) bool, want int) ([]string, error) {
	deadline := time.Now().Add(defaultActiveWait)
	for {
		shards, err := listAllShards(ctx, &c.connFlags, streams, c.stream)
		if err != nil {
			return nil, fmt.Errorf("list shards: %w", err)
		}
		var found []*rifflev1.Shard
		for _, sh := range shards {
			if match(sh) {
				found = append(found, sh)
			}
		}
		if len(found) == want {
			slices.SortFunc(found, func(a, b *rifflev1.Shard) int {
				if hashLess(a.GetHashKeyRange().GetStartingHashKey(), b.GetHashKeyRange().GetStartingHashKey()) {
					return -1
				}
				return 1
			})
			ids := make([]string, len(found))
			for i, sh := range found {
				ids[i] = sh.GetShardId()
			}
			return ids, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d child shards listed after %v, want %d", len(found), defaultActiveWait, want)
		}
		if !sleepUntil(ctx, time.Now().Add(50*time.Millisecond)) {
			return nil, ctx.Err()
		}
	}
}

// retryInUse makes a call, again while the stream is busy with an earlier
// resharding (ResourceInUseException), for up to a minute.
func retryInUse(ctx context.Context, timeout time.Duration, call func(context.Context) error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		callCtx, cancel := context.WithTimeout(ctx, timeout)
		err := call(callCtx)
		cancel()
		if err == nil || client.ExceptionName(err) != client.ResourceInUseException || time.Now().After(deadline) {
			return err
		}
		if !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
			return ctx.Err()
		}
	}
}

// listAllShards lists every shard of the stream, open or closed.
func listAllShards(ctx context.Context, conn *connFlags, streams rifflev1.StreamsClient, stream string) ([]*rifflev1.Shard, error) {
	var out []*rifflev1.Shard
	req := &rifflev1.ListShardsRequest{StreamName: stream}
	for {
		callCtx, cancel := conn.call(ctx)
		resp, err := streams.ListShards(callCtx, req)
		cancel()
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetShards()...)
		if resp.GetNextToken() == "" {
			return out, nil
		}
		req = &rifflev1.ListShardsRequest{NextToken: resp.GetNextToken()}
	}
}

// hashLess compares two decimal hash keys.
func hashLess(a, b string) bool { return seqLess(a, b) }

// sleepUntil waits until t; false when ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// reshardReports measures each resharding against the acknowledged and
// failed puts.
func (p *fanoutProducer) reshardReports(events []*reshardEvent, start time.Time) []reshardReport {
	p.mu.Lock()
	defer p.mu.Unlock()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	var out []reshardReport
	for _, ev := range events {
		r := reshardReport{Kind: ev.kind, Parents: ev.parents, Children: ev.children,
			AtSeconds: ev.callAt.Sub(start).Seconds(), CallMillis: ms(ev.callTook), FirstChildAckMillis: -1}
		var firstChild time.Time
		for _, put := range p.puts {
			if slices.Contains(ev.children, put.shard) && (firstChild.IsZero() || put.ack.Before(firstChild)) {
				firstChild = put.ack
			}
		}
		windowEnd := time.Now()
		if !firstChild.IsZero() {
			r.FirstChildAckMillis = ms(firstChild.Sub(ev.callAt))
			windowEnd = firstChild.Add(time.Second)
		}
		var h Histogram
		for _, put := range p.puts {
			affected := slices.Contains(ev.parents, put.shard) || slices.Contains(ev.children, put.shard)
			if affected && !put.sent.Before(ev.callAt) && put.sent.Before(windowEnd) {
				r.AffectedPuts++
				h.Record(put.ack.Sub(put.sent))
			}
		}
		r.AffectedAck = latencies(&h)
		for _, sent := range p.failures {
			if !sent.Before(ev.callAt) && sent.Before(windowEnd) {
				r.FailedPuts++
			}
		}
		out = append(out, r)
	}
	return out
}

// realTimeViolations counts acknowledged puts whose sequence number is
// below that of a put of the same key that was acknowledged before they
// were sent. Sequence numbers of children are above their parents', so
// across a split or merge this is the contract's per-key order: a key's
// records in the parent all come before its records in a child.
func (p *fanoutProducer) realTimeViolations() uint64 {
	p.mu.Lock()
	byKey := map[string][]putRecord{}
	for _, put := range p.puts {
		byKey[put.key] = append(byKey[put.key], put)
	}
	p.mu.Unlock()
	var violations uint64
	for _, puts := range byKey {
		violations += realTimeViolations(puts)
	}
	return violations
}

// realTimeViolations counts, among one key's puts, those sent after
// another had been acknowledged with a higher sequence number.
func realTimeViolations(puts []putRecord) uint64 {
	bySent := slices.Clone(puts)
	slices.SortFunc(bySent, func(a, b putRecord) int { return a.sent.Compare(b.sent) })
	byAck := slices.Clone(puts)
	slices.SortFunc(byAck, func(a, b putRecord) int { return a.ack.Compare(b.ack) })
	var violations uint64
	highest := "" // highest sequence number acknowledged before the put was sent
	i := 0
	for _, put := range bySent {
		for ; i < len(byAck) && byAck[i].ack.Before(put.sent); i++ {
			if highest == "" || seqLess(highest, byAck[i].seq) {
				highest = byAck[i].seq
			}
		}
		if highest != "" && !seqLess(highest, put.seq) {
			violations++
		}
	}
	return violations
}
