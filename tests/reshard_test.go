package tests

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// reshardWrite is one acknowledged (or uncertain) write of the load.
type reshardWrite struct {
	writer, n int // the writer and its per-key counter
	key       string
	data      string
	shard     string
	seq       string
	start     time.Time
	acked     time.Time
	uncertain bool // the outcome is unknown: the record may or may not exist
	retried   []string
}

// reshardLoad is several writers putting records with many keys through
// the given nodes, each writer one key at a time (so a key's arrival order
// is its writer's order), retrying writes that were provably not applied.
type reshardLoad struct {
	stream string
	stop   chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	writes []reshardWrite
	errs   []error
}

func startReshardLoad(t *testing.T, clients []rifflev1.StreamsClient, stream string, writers, keys int) *reshardLoad {
	l := &reshardLoad{stream: stream, stop: make(chan struct{})}
	for w := range writers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			counter := map[string]int{}
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-k%d", w, i%keys)
				counter[key]++
				wr := reshardWrite{writer: w, n: counter[key], key: key, data: fmt.Sprintf("%s/%d", key, counter[key]), start: time.Now()}
				c := clients[(w+i)%len(clients)]
				for attempt := 0; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
					out, err := c.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: stream, PartitionKey: key, Data: []byte(wr.data)})
					cancel()
					if err == nil {
						wr.shard, wr.seq, wr.acked = out.ShardId, out.SequenceNumber, time.Now()
						break
					}
					if retryable(err) && attempt < 50 {
						wr.retried = append(wr.retried, err.Error())
						c = clients[(w+i+attempt+1)%len(clients)]
						time.Sleep(20 * time.Millisecond) // a client's retry backoff
						continue
					}
					wr.uncertain = true
					l.mu.Lock()
					l.errs = append(l.errs, err)
					l.mu.Unlock()
					break
				}
				l.mu.Lock()
				l.writes = append(l.writes, wr)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *reshardLoad) finish() []reshardWrite {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]reshardWrite(nil), l.writes...)
}

func (l *reshardLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.writes)
}

// firstAckIn is the first acknowledgement in one of shards after t0.
func (l *reshardLoad) firstAckIn(shards []string, t0 time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, w := range l.writes {
		if slices.Contains(shards, w.shard) && w.acked.After(t0) && (first.IsZero() || w.acked.Before(first)) {
			first = w.acked
		}
	}
	return first, !first.IsZero()
}

// coverWatch checks, again and again on every node's copy of the metadata,
// that exactly one open shard covers each probe hash key.
type coverWatch struct {
	stop   chan struct{}
	done   chan struct{}
	checks int
	err    error
}

func watchCover(c *testCluster, stream string, nodes []int, probes []*big.Int) *coverWatch {
	w := &coverWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			for _, i := range nodes {
				st := c.nodes[i].Host().Meta().State().Streams[stream]
				if st == nil {
					continue
				}
				for _, k := range probes {
					n := 0
					for _, sh := range st.Shards {
						if sh.Open() && sh.HashRange().Contains(k) {
							n++
						}
					}
					if n != 1 && w.err == nil {
						w.err = fmt.Errorf("n%d: hash key %s covered by %d open shards", i+1, k, n)
					}
				}
				w.checks++
			}
			select {
			case <-w.stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return w
}

func (w *coverWatch) finish(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	if w.err != nil {
		t.Error(w.err)
	}
	t.Logf("hash-range cover checked %d times", w.checks)
}

func probeKeys(extra ...*big.Int) []*big.Int {
	maxKey := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))
	mid := new(big.Int).Rsh(maxKey, 1)
	out := []*big.Int{big.NewInt(0), mid, new(big.Int).Add(mid, big.NewInt(1)), maxKey}
	for i := range 32 {
		out = append(out, cluster.PartitionHash(fmt.Sprintf("w%d-k%d", i%6, i)))
	}
	return append(out, extra...)
}

// lineageRead reads a stream as a consumer following the lineage would:
// every shard from its trim horizon to its end (GetRecords with no next
// iterator names the children) or, for an open shard, to its tip.
type lineageShard struct {
	records  []*rifflev1.Record
	children []string
	closed   bool
}

func lineageRead(t *testing.T, c rifflev1.StreamsClient, stream string) map[string]*lineageShard {
	t.Helper()
	ctx := context.Background()
	out := map[string]*lineageShard{}
	queue := []string{"shardId-000000000000"}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		if out[id] != nil {
			continue // a merged child is named by both parents
		}
		ls := &lineageShard{}
		out[id] = ls
		it, err := c.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: stream, ShardId: id,
			ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON})
		if err != nil {
			t.Fatalf("GetShardIterator %s: %v", id, err)
		}
		iter := it.ShardIterator
		for iter != "" {
			r, err := c.GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: iter, Limit: 10000})
			if err != nil {
				t.Fatalf("GetRecords %s: %v", id, err)
			}
			ls.records = append(ls.records, r.Records...)
			if r.NextShardIterator == "" {
				ls.closed = true
				for _, ch := range r.ChildShards {
					ls.children = append(ls.children, ch.ShardId)
					queue = append(queue, ch.ShardId)
				}
				break
			}
			if len(r.Records) == 0 {
				break // the tip of an open shard
			}
			iter = r.NextShardIterator
		}
	}
	return out
}

// checkLineage checks every acknowledged write was read exactly once by
// following the lineage, and that each key's records go from parent to
// child in its arrival order; it returns the records by shard.
func checkLineage(t *testing.T, writes []reshardWrite, got map[string]*lineageShard) {
	t.Helper()
	seen := map[string]int{}
	where := map[string]string{}
	for id, ls := range got {
		for _, r := range ls.records {
			seen[string(r.Data)]++
			if where[string(r.Data)] != "" {
				where[string(r.Data)] += ", "
			}
			where[string(r.Data)] += id + " " + r.SequenceNumber
		}
	}
	acked, uncertain := 0, 0
	for _, w := range writes {
		if w.uncertain {
			uncertain++
			if seen[w.data] > 1 {
				t.Errorf("uncertain write %s read %d times", w.data, seen[w.data])
			}
			continue
		}
		acked++
		if seen[w.data] != 1 {
			t.Errorf("acknowledged %s (%s %s) read %d times: %s; retried after %q", w.data, w.shard, w.seq, seen[w.data], where[w.data], w.retried)
			continue
		}
		if where[w.data] != w.shard+" "+w.seq {
			t.Errorf("acknowledged %s at %s %s, read at %s", w.data, w.shard, w.seq, where[w.data])
		}
	}
	// Per key, in arrival order: the shard never goes back to a lower
	// index (parents have lower indexes than their children) and the
	// sequence number only increases.
	byKey := map[string][]reshardWrite{}
	for _, w := range writes {
		if !w.uncertain {
			byKey[w.key] = append(byKey[w.key], w)
		}
	}
	for key, ws := range byKey {
		sort.Slice(ws, func(i, j int) bool { return ws[i].n < ws[j].n })
		for i := 1; i < len(ws); i++ {
			a, _ := new(big.Int).SetString(ws[i-1].seq, 10)
			b, _ := new(big.Int).SetString(ws[i].seq, 10)
			if ws[i].shard < ws[i-1].shard || a.Cmp(b) >= 0 {
				t.Fatalf("key %s: write %d at %s %s comes after write %d at %s %s", key,
					ws[i].n, ws[i].shard, ws[i].seq, ws[i-1].n, ws[i-1].shard, ws[i-1].seq)
			}
		}
	}
	t.Logf("%d acknowledged writes read exactly once through the lineage (%d uncertain)", acked, uncertain)
}

// checkClosed checks a closed shard's metadata against what it holds: the
// ending sequence number is its last record, and its children's numbers are
// above it.
func checkClosed(t *testing.T, c rifflev1.StreamsClient, stream string, got map[string]*lineageShard) {
	t.Helper()
	out, err := c.ListShards(context.Background(), &rifflev1.ListShardsRequest{StreamName: stream})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*rifflev1.Shard{}
	for _, sh := range out.Shards {
		byID[sh.ShardId] = sh
	}
	for id, ls := range got {
		sh := byID[id]
		if sh == nil {
			t.Fatalf("%s read but not listed", id)
		}
		end := sh.SequenceNumberRange.EndingSequenceNumber
		if ls.closed != (end != "") {
			t.Errorf("%s: closed by GetRecords %v, ending sequence %q", id, ls.closed, end)
		}
		if !ls.closed {
			continue
		}
		if n := len(ls.records); n > 0 && ls.records[n-1].SequenceNumber != end {
			t.Errorf("%s ends at %s, its last record is %s", id, end, ls.records[n-1].SequenceNumber)
		}
		endN, _ := new(big.Int).SetString(end, 10)
		for _, ch := range ls.children {
			if c := byID[ch]; c == nil || (c.ParentShardId != id && c.AdjacentParentShardId != id) {
				t.Errorf("%s names child %s, which does not name it as a parent", id, ch)
			}
			for _, r := range got[ch].records {
				n, _ := new(big.Int).SetString(r.SequenceNumber, 10)
				if n.Cmp(endN) <= 0 {
					t.Errorf("child %s record %s is not above parent %s's end %s", ch, r.SequenceNumber, id, end)
				}
			}
		}
	}
}

func streamStatusOf(t *testing.T, c rifflev1.StreamsClient, stream string) rifflev1.StreamStatus {
	t.Helper()
	out, err := c.DescribeStreamSummary(context.Background(), &rifflev1.DescribeStreamSummaryRequest{StreamName: stream})
	if err != nil {
		t.Fatal(err)
	}
	return out.StreamDescriptionSummary.StreamStatus
}

// metaLeader waits for the metadata leader and returns its index and the
// other nodes' indexes.
func (c *testCluster) metaLeader(t *testing.T) (leader int, others []int) {
	t.Helper()
	leader = -1
	waitFor(t, 10*time.Second, "metadata leader", func() error {
		for i, n := range c.nodes {
			if n.Host().Meta().IsLeader() {
				leader = i
				return nil
			}
		}
		return errors.New("none")
	})
	for i := range c.nodes {
		if i != leader {
			others = append(others, i)
		}
	}
	return leader, others
}

func clientsOf(c *testCluster, nodes ...int) []rifflev1.StreamsClient {
	var out []rifflev1.StreamsClient
	for _, i := range nodes {
		out = append(out, c.nodes[i].client)
	}
	return out
}

// pauses reports the longest time a write of a key in shards waited, from
// its first attempt to its acknowledgement.
func longestWrite(writes []reshardWrite, shards []string) time.Duration {
	var d time.Duration
	for _, w := range writes {
		if !w.uncertain && slices.Contains(shards, w.shard) {
			d = max(d, w.acked.Sub(w.start))
		}
	}
	return d
}

// TestReshardSplitThenMergeUnderWrites checks contract 5 through a split
// and a merge under continuous writes from several writers through every
// node: every acknowledged record is read exactly once by following the
// lineage (GetRecords to a parent's end, which returns no next iterator and
// names the children, then the children); per key, all records in a
// parent come before all in a child; a parent's ending sequence number is
// its last record and its children's numbers are above it; and at every
// moment each node's metadata has exactly one open shard per hash key. A
// fan-out subscriber on the parent gets a last event naming the children
// and no continuation. The merged child lists both parents. No write
// fails back to the client: one refused by a sealed parent is re-routed.
func TestReshardSplitThenMergeUnderWrites(t *testing.T) {
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: steadyRaft})
	killAtEnd(t, c)
	ctx := context.Background()
	const stream = "reshard"
	createStream(t, c.nodes[0].client, stream, 1)
	arn := registerConsumer(t, c.nodes[0].client, stream, "sub")
	sub := follow(t, clientsOf(c, 0, 1, 2), arn, "shardId-000000000000", trimHorizon())

	watch := watchCover(c, stream, []int{0, 1, 2}, probeKeys())
	load := startReshardLoad(t, clientsOf(c, 0, 1, 2), stream, 6, 40)
	waitFor(t, 10*time.Second, "writes before the split", func() error {
		if n := load.count(); n < 300 {
			return fmt.Errorf("%d writes", n)
		}
		return nil
	})

	// Split at the middle of the hash-key space.
	mid := new(big.Int).Lsh(big.NewInt(1), 127).String()
	t0 := time.Now()
	if _, err := c.nodes[1].client.SplitShard(ctx, &rifflev1.SplitShardRequest{StreamName: stream,
		ShardToSplit: "shardId-000000000000", NewStartingHashKey: mid}); err != nil {
		t.Fatalf("SplitShard: %v", err)
	}
	if s := streamStatusOf(t, c.nodes[1].client, stream); s != rifflev1.StreamStatus_STREAM_STATUS_UPDATING && s != rifflev1.StreamStatus_STREAM_STATUS_ACTIVE {
		t.Errorf("status after SplitShard %v", s)
	}
	children := []string{"shardId-000000000001", "shardId-000000000002"}
	waitFor(t, 20*time.Second, "children taking writes", func() error {
		if _, ok := load.firstAckIn(children, t0); !ok {
			return errors.New("no write acknowledged by a child yet")
		}
		return nil
	})
	first, _ := load.firstAckIn(children, t0)
	t.Logf("split: SplitShard call to the first write acknowledged by a child: %v", first.Sub(t0).Round(time.Millisecond))
	waitActive(t, c.nodes[2].client, stream)
	n0 := load.count()
	waitFor(t, 10*time.Second, "writes after the split", func() error {
		if n := load.count(); n < n0+300 {
			return fmt.Errorf("%d writes", n-n0)
		}
		return nil
	})

	// Merge the two children back.
	t1 := time.Now()
	if _, err := c.nodes[2].client.MergeShards(ctx, &rifflev1.MergeShardsRequest{StreamName: stream,
		ShardToMerge: children[0], AdjacentShardToMerge: children[1]}); err != nil {
		t.Fatalf("MergeShards: %v", err)
	}
	merged := []string{"shardId-000000000003"}
	waitFor(t, 20*time.Second, "merged child taking writes", func() error {
		if _, ok := load.firstAckIn(merged, t1); !ok {
			return errors.New("no write acknowledged by the merged child yet")
		}
		return nil
	})
	first, _ = load.firstAckIn(merged, t1)
	t.Logf("merge: MergeShards call to the first write acknowledged by the child: %v", first.Sub(t1).Round(time.Millisecond))
	waitActive(t, c.nodes[0].client, stream)
	n1 := load.count()
	waitFor(t, 10*time.Second, "writes after the merge", func() error {
		if n := load.count(); n < n1+200 {
			return fmt.Errorf("%d writes", n-n1)
		}
		return nil
	})
	writes := load.finish()
	watch.finish(t)
	t.Logf("longest write (first attempt to ack), keys of the split's children: %v; of the merged child: %v; writes: %d, not-acknowledged: %d",
		longestWrite(writes, children).Round(time.Millisecond), longestWrite(writes, merged).Round(time.Millisecond), len(writes), len(load.errs))
	for _, err := range load.errs {
		t.Errorf("write failed: %v", err)
	}
	// Writes keep working throughout: a write that reached a sealed parent
	// was routed to its child by the gateway, not failed back to the client.
	for _, w := range writes {
		if len(w.retried) > 0 {
			t.Errorf("write %s needed the client to retry: %q", w.data, w.retried)
		}
	}

	got := lineageRead(t, c.nodes[0].client, stream)
	checkLineage(t, writes, got)
	checkClosed(t, c.nodes[1].client, stream, got)
	if p := got["shardId-000000000000"]; !p.closed || !slices.Equal(p.children, children) {
		t.Errorf("parent: closed %v, children %v", p.closed, p.children)
	}
	list, err := c.nodes[0].client.ListShards(ctx, &rifflev1.ListShardsRequest{StreamName: stream})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Shards) != 4 {
		t.Fatalf("%d shards listed", len(list.Shards))
	}
	m := list.Shards[3]
	if m.ParentShardId != children[0] || m.AdjacentParentShardId != children[1] || m.SequenceNumberRange.EndingSequenceNumber != "" {
		t.Errorf("merged child %v", m)
	}

	// The subscriber on the parent ends with the children, no continuation.
	waitFor(t, 10*time.Second, "subscriber at the parent's end", func() error {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		if sub.fatal != nil {
			return fmt.Errorf("subscription failed: %w", sub.fatal)
		}
		if !sub.finished {
			return errors.New("not finished")
		}
		return nil
	})
	recs, _, _, _ := sub.snapshot()
	if want := got["shardId-000000000000"].records; len(recs) != len(want) {
		t.Errorf("subscriber got %d records of the parent, it holds %d", len(recs), len(want))
	}
	if sub.req.StartingPosition.SequenceNumber != "" {
		t.Errorf("last event carried continuation %q", sub.req.StartingPosition.SequenceNumber)
	}
}

// TestReshardValidation checks that bad reshardings are refused with the
// right exception and change nothing: a key not strictly inside the
// shard's range, a closed shard, non-adjacent shards (InvalidArgument), and
// a second resharding while one runs (ResourceInUse).
func TestReshardValidation(t *testing.T) {
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: steadyRaft})
	killAtEnd(t, c)
	ctx := context.Background()
	cl := c.nodes[0].client
	const stream = "valid"
	createStream(t, cl, stream, 3)
	before, err := cl.ListShards(ctx, &rifflev1.ListShardsRequest{StreamName: stream})
	if err != nil {
		t.Fatal(err)
	}
	s0 := before.Shards[0]
	expect := func(what string, err error, code codes.Code, exception string) {
		t.Helper()
		st, _ := status.FromError(err)
		if st.Code() != code || !strings.HasPrefix(st.Message(), exception) {
			t.Errorf("%s: %v, want %v %s", what, err, code, exception)
		}
	}
	split := func(shard, key string) error {
		_, err := cl.SplitShard(ctx, &rifflev1.SplitShardRequest{StreamName: stream, ShardToSplit: shard, NewStartingHashKey: key})
		return err
	}
	merge := func(a, b string) error {
		_, err := cl.MergeShards(ctx, &rifflev1.MergeShardsRequest{StreamName: stream, ShardToMerge: a, AdjacentShardToMerge: b})
		return err
	}
	end := s0.HashKeyRange.EndingHashKey
	endPlus, _ := new(big.Int).SetString(end, 10)
	endPlus.Add(endPlus, big.NewInt(1))
	expect("split at the starting key", split(s0.ShardId, s0.HashKeyRange.StartingHashKey), codes.InvalidArgument, "InvalidArgumentException")
	expect("split above the range", split(s0.ShardId, endPlus.String()), codes.InvalidArgument, "InvalidArgumentException")
	expect("merge of non-adjacent shards", merge("shardId-000000000000", "shardId-000000000002"), codes.InvalidArgument, "InvalidArgumentException")
	expect("split of an unknown shard", split("shardId-000000000009", end), codes.NotFound, "ResourceNotFoundException")

	// A merge starts; while it runs a second resharding is refused.
	if err := merge("shardId-000000000001", "shardId-000000000000"); err != nil {
		t.Fatalf("MergeShards: %v", err)
	}
	if err := split("shardId-000000000002", before.Shards[2].HashKeyRange.EndingHashKey); err == nil {
		t.Log("the merge finished before the second resharding was tried")
	} else {
		expect("second resharding", err, codes.FailedPrecondition, "ResourceInUseException")
	}
	waitActive(t, cl, stream)
	out, err := cl.ListShards(ctx, &rifflev1.ListShardsRequest{StreamName: stream})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Shards) != 4 && len(out.Shards) != 6 {
		t.Fatalf("%d shards after the merge", len(out.Shards))
	}
	if m := out.Shards[3]; m.ParentShardId != "shardId-000000000001" || m.AdjacentParentShardId != "shardId-000000000000" ||
		m.HashKeyRange.StartingHashKey != "0" || m.HashKeyRange.EndingHashKey != before.Shards[1].HashKeyRange.EndingHashKey {
		t.Errorf("merged child %v", m)
	}
	expect("split of a closed shard", split(s0.ShardId, end), codes.InvalidArgument, "InvalidArgumentException")
	expect("merge with a closed shard", merge("shardId-000000000000", "shardId-000000000003"), codes.InvalidArgument, "InvalidArgumentException")
	after, err := cl.ListShards(ctx, &rifflev1.ListShardsRequest{StreamName: stream})
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Shards) != len(out.Shards) || streamStatusOf(t, cl, stream) != rifflev1.StreamStatus_STREAM_STATUS_ACTIVE {
		t.Errorf("refused requests changed the stream: %d shards", len(after.Shards))
	}
}

// TestReshardSurvivesMetadataLeaderKill checks that a split survives a kill
// -9 of the metadata leader right after it started: a new leader finishes
// it (seal and switch are idempotent and resumable: sealing again through
// any node answers the recorded end), and no acknowledged record is lost.
func TestReshardSurvivesMetadataLeaderKill(t *testing.T) {
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: steadyRaft})
	killAtEnd(t, c)
	ctx := context.Background()
	const stream = "crash"
	createStream(t, c.nodes[0].client, stream, 1)
	leader, others := c.metaLeader(t)
	load := startReshardLoad(t, clientsOf(c, others...), stream, 4, 20)
	waitFor(t, 10*time.Second, "writes before the split", func() error {
		if n := load.count(); n < 200 {
			return fmt.Errorf("%d writes", n)
		}
		return nil
	})
	mid := new(big.Int).Lsh(big.NewInt(1), 127).String()
	if _, err := c.nodes[others[0]].client.SplitShard(ctx, &rifflev1.SplitShardRequest{StreamName: stream,
		ShardToSplit: "shardId-000000000000", NewStartingHashKey: mid}); err != nil {
		t.Fatalf("SplitShard: %v", err)
	}
	c.kill(leader)
	t0 := time.Now()
	waitActive(t, c.nodes[others[0]].client, stream)
	t.Logf("split finished %v after the metadata leader was killed", time.Since(t0).Round(time.Millisecond))
	n0 := load.count()
	waitFor(t, 15*time.Second, "writes after the split", func() error {
		if n := load.count(); n < n0+200 {
			return fmt.Errorf("%d writes", n-n0)
		}
		return nil
	})
	writes := load.finish()
	got := lineageRead(t, c.nodes[others[1]].client, stream)
	checkLineage(t, writes, got)
	checkClosed(t, c.nodes[others[0]].client, stream, got)
	if p := got["shardId-000000000000"]; !p.closed || len(p.children) != 2 {
		t.Errorf("parent: closed %v, children %v", p.closed, p.children)
	}
	// A new metadata leader resumes by sealing again: through any node,
	// sealing the sealed parent answers the end the switch recorded.
	for _, i := range others {
		st := c.nodes[i].Host().Meta().State().Streams[stream]
		parent := st.Shards[0]
		end, err := c.nodes[i].Host().SealShard(ctx, st, parent)
		if err != nil || end != parent.EndOffset {
			t.Errorf("sealing the sealed parent again through n%d: %d, %v; the switch recorded %d", i+1, end, err, parent.EndOffset)
		}
	}
	var inChildren int
	for _, w := range writes {
		if w.shard != "shardId-000000000000" && !w.uncertain {
			inChildren++
		}
	}
	if inChildren == 0 {
		t.Error("no write acknowledged by a child")
	}
}

// TestSplitWhileNodeDownKeepsThreeReplicas: children of a split made while
// one of three nodes is down are placed on all three, the absent node
// included, so they keep three replicas; they take writes on the two live
// ones, and the node, once back, runs its replicas of them and serves
// every record. A fault run's split during a partition placed children on
// the two nodes it saw alive, leaving them with two replicas for good.
func TestSplitWhileNodeDownKeepsThreeReplicas(t *testing.T) {
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: steadyRaft})
	killAtEnd(t, c)
	ctx := context.Background()
	const stream = "absent"
	createStream(t, c.nodes[0].client, stream, 1)
	c.kill(2)
	waitFor(t, 30*time.Second, "n1 and n2 count n3 dead", func() error {
		for _, i := range []int{0, 1} {
			for _, n := range c.nodes[i].Host().Nodes() {
				if n.ID == "n3" && n.Alive {
					return fmt.Errorf("n%d counts n3 alive", i+1)
				}
			}
		}
		return nil
	})
	mid := new(big.Int).Lsh(big.NewInt(1), 127).String()
	waitFor(t, 20*time.Second, "SplitShard", func() error {
		_, err := c.nodes[0].client.SplitShard(ctx, &rifflev1.SplitShardRequest{StreamName: stream,
			ShardToSplit: "shardId-000000000000", NewStartingHashKey: mid})
		return err
	})
	waitActive(t, c.nodes[0].client, stream)
	st := c.nodes[0].Host().Meta().State().Streams[stream]
	var children []*cluster.Shard
	for _, sh := range st.Shards {
		if sh.Open() {
			children = append(children, sh)
			if len(sh.Replicas) != 3 || !slices.Contains(sh.Replicas, "n3") || sh.Replicas[0] == "n3" {
				t.Errorf("%s placed on %v while n3 was down; want three replicas, n3 among them but not first", sh.ID(), sh.Replicas)
			}
		}
	}
	if len(children) != 2 {
		t.Fatalf("%d open shards after the split, want 2", len(children))
	}

	var acks []ack
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("k-%d", i)
		waitFor(t, 20*time.Second, "put "+key, func() error {
			out, err := c.nodes[i%2].client.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: stream, PartitionKey: key, Data: []byte(key)})
			if err == nil {
				acks = append(acks, ack{out.ShardId, out.SequenceNumber, key})
			} else if !retryable(err) {
				t.Fatalf("put %s: %v", key, err)
			}
			return err
		})
	}
	c.restart(2)
	waitFor(t, 30*time.Second, "n3 runs its replicas of both children", func() error {
		st := c.nodes[2].Host().Meta().State().Streams[stream]
		for _, sh := range children {
			if _, err := c.nodes[2].Host().Shard(st, sh); err != nil {
				return fmt.Errorf("%s: %w", sh.ID(), err)
			}
		}
		return nil
	})
	sameEverywhere(t, c, stream, []int{0, 1, 2}, acks)
}
