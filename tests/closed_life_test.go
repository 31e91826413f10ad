package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// The end of a closed shard's life (issue 5): retention reaches its
// records, then the shard itself.

// putN writes n records through c and returns their data in order. A
// write whose outcome is unknown (a leadership change on a loaded
// machine) is sent again, as a client would, so a record may be stored
// twice, right after its first copy: compare with firstCopies.
func putN(t *testing.T, c rifflev1.StreamsClient, stream, prefix string, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		data := fmt.Sprintf("%s-%02d", prefix, i)
		waitFor(t, 10*time.Second, "PutRecord "+data, func() error {
			_, err := c.PutRecord(context.Background(), &rifflev1.PutRecordRequest{StreamName: stream,
				PartitionKey: fmt.Sprintf("k%d", i%5), Data: []byte(data)})
			if err != nil && !retryable(err) && status.Code(err) != codes.Unknown {
				t.Fatalf("PutRecord %s: %v", data, err)
			}
			return err
		})
		out = append(out, data)
	}
	return out
}

// unknownOutcome reports whether a call failed without saying whether it
// was applied (a leadership change on a loaded machine), or was not
// applied: either way a client calls again.
func unknownOutcome(err error) bool { return retryable(err) || status.Code(err) == codes.Unknown }

// setRetention sets the stream's retention, calling again after an
// unknown outcome (setting the current value again is allowed).
func setRetention(t *testing.T, c rifflev1.StreamsClient, stream string, hours int32, increase bool) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("retention of %d hours", hours), func() error {
		var err error
		if increase {
			_, err = c.IncreaseStreamRetentionPeriod(context.Background(), &rifflev1.IncreaseStreamRetentionPeriodRequest{StreamName: stream, RetentionPeriodHours: hours})
		} else {
			_, err = c.DecreaseStreamRetentionPeriod(context.Background(), &rifflev1.DecreaseStreamRetentionPeriodRequest{StreamName: stream, RetentionPeriodHours: hours})
		}
		if err != nil && !unknownOutcome(err) {
			t.Fatalf("setting the retention to %d hours: %v", hours, err)
		}
		return err
	})
}

// splitShard splits shard at key through cl, calling again after an
// unknown outcome until node 0's metadata shows the split under way or
// done, and waits until the stream is ACTIVE.
func splitShard(t *testing.T, c *testCluster, cl rifflev1.StreamsClient, stream, shard, key string) {
	t.Helper()
	waitFor(t, 20*time.Second, "SplitShard "+shard, func() error {
		_, err := cl.SplitShard(context.Background(), &rifflev1.SplitShardRequest{StreamName: stream, ShardToSplit: shard, NewStartingHashKey: key})
		if err == nil {
			return nil
		}
		if s := c.nodes[0].Host().Meta().State().Streams[stream]; s != nil {
			if sh, ok := s.ShardByID(shard); ok && (sh.Closed() || s.Status == cluster.StreamUpdating) {
				return nil // an earlier call went through
			}
		}
		if !unknownOutcome(err) {
			t.Fatalf("SplitShard %s: %v", shard, err)
		}
		return err
	})
	waitActive(t, cl, stream)
}

// firstCopies is data without the copies after a first (putN's retries).
func firstCopies(data []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range data {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// waitPreferredLeaders waits until every open shard of stream is led by
// its first replica, where leader balancing keeps it, so that the writes
// that follow are not caught by a leadership transfer (an unknown outcome).
func waitPreferredLeaders(t *testing.T, c *testCluster, stream string) {
	t.Helper()
	waitFor(t, 30*time.Second, stream+"'s shards led by their preferred replicas", func() error {
		s := c.nodes[0].Host().Meta().State().Streams[stream]
		if s == nil {
			return errors.New("no stream")
		}
		for _, sh := range s.Shards {
			if !sh.Open() {
				continue
			}
			i := slices.IndexFunc(c.nodes, func(n *testNode) bool { return n.conn != nil && n.Host().NodeID() == sh.Replicas[0] })
			if i < 0 {
				return fmt.Errorf("%s's first replica %s is not running", sh.ID(), sh.Replicas[0])
			}
			if r := localShard(c.nodes[i], stream, int(sh.Index)); r == nil || !r.IsLeader() {
				return fmt.Errorf("%s not led by %s yet", sh.ID(), sh.Replicas[0])
			}
		}
		return nil
	})
}

// shardMeta is node i's metadata of a stream's shard, nil when it has none.
func (c *testCluster) shardMeta(i int, stream string, index uint64) (*cluster.Stream, *cluster.Shard) {
	s := c.nodes[i].Host().Meta().State().Streams[stream]
	if s == nil {
		return nil, nil
	}
	sh, _ := s.ShardByIndex(index)
	return s, sh
}

// waitShardFrozen waits until every node's metadata shows the shard frozen
// and the nodes serve it without a raft group.
func waitShardFrozen(t *testing.T, c *testCluster, stream string, index uint64, nodes ...int) {
	t.Helper()
	waitFor(t, 20*time.Second, cluster.ShardID(index)+" frozen", func() error {
		for _, i := range nodes {
			s, sh := c.shardMeta(i, stream, index)
			if sh == nil || !sh.Frozen {
				return fmt.Errorf("node %d: shard not frozen (%+v)", i, sh)
			}
			if slices.Contains(sh.Replicas, c.nodes[i].Host().NodeID()) && !c.nodes[i].Host().IsFrozen(s.GroupID(sh)) {
				return fmt.Errorf("node %d still runs the raft group", i)
			}
		}
		return nil
	})
}

func dataOf(recs []*rifflev1.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Data)
	}
	return out
}

func shardsAndParents(t *testing.T, c rifflev1.StreamsClient, stream string) (ids []string, parents map[string]string) {
	t.Helper()
	out, err := c.ListShards(context.Background(), &rifflev1.ListShardsRequest{StreamName: stream})
	if err != nil {
		t.Fatalf("ListShards: %v", err)
	}
	parents = map[string]string{}
	for _, sh := range out.Shards {
		ids = append(ids, sh.ShardId)
		parents[sh.ShardId] = sh.ParentShardId
	}
	return ids, parents
}

// TestClosedShardsExpire checks, on three nodes with a clock the test sets
// ahead: a retention decrease reaches a frozen parent's records (all its
// segments go on every replica, and a TRIM_HORIZON read finds the end and
// the children, as Kinesis answers for a closed shard with nothing
// retained); once retention passes the parent's close, the metadata drops
// it on every node and every node deletes its directory; ListShards and
// DescribeStream no longer show it while its children still name it as
// their parent; reads of it get ResourceNotFound; the children's records
// stay readable; and a later split does not reuse its index.
func TestClosedShardsExpire(t *testing.T) {
	clock := &testClock{}
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: steadyRaft, clock: clock, retentionCheck: 50 * time.Millisecond})
	killAtEnd(t, c)
	t0 := time.Now()
	phase := func(what string) { t.Logf("%s: %v", what, time.Since(t0).Round(time.Millisecond)) }
	ctx := context.Background()
	cl := c.nodes[0].client
	const stream = "expiring"
	createStream(t, cl, stream, 1)
	setRetention(t, cl, stream, 48, true)
	parentData := putN(t, cl, stream, "parent", 10)
	phase("parent written")
	parent := cluster.ShardID(0)
	splitShard(t, c, cl, stream, parent, "170141183460469231731687303715884105728")
	phase("split")
	waitPreferredLeaders(t, c, stream)
	childData := putN(t, cl, stream, "child", 10)
	phase("split and written")
	waitShardFrozen(t, c, stream, 0, 0, 1, 2)
	phase("parent frozen")

	got := lineageReadOne(t, cl, stream, parent)
	if !slices.Equal(firstCopies(dataOf(got.records)), parentData) {
		t.Fatalf("parent holds %v, want %v", dataOf(got.records), parentData)
	}
	lastTS := got.records[len(got.records)-1].ApproximateArrivalTimestamp.AsTime()
	desc0, psh := c.shardMeta(0, stream, 0)
	closedAt, endOffset := psh.ClosedAt, psh.EndOffset
	if !lastTS.Before(closedAt) {
		t.Fatalf("the parent's last record (%v) is not older than its close (%v)", lastTS, closedAt)
	}

	// A day after the last record, inside the 48 hours: the decrease to 24
	// hours makes the frozen parent's records expire, not the parent.
	clock.Set(lastTS.Add(24*time.Hour + time.Millisecond))
	setRetention(t, cl, stream, 24, false)
	waitFor(t, 20*time.Second, "the frozen parent's segments expired on every replica", func() error {
		for i, n := range c.nodes {
			r := localShard(n, stream, 0)
			if r == nil {
				return fmt.Errorf("node %d has no replica of the parent", i)
			}
			if trim, next := r.Log().TrimOffset(), r.Log().NextOffset(); trim != endOffset || next != endOffset {
				return fmt.Errorf("node %d: the parent's log holds [%d, %d), want it empty at %d", i, trim, next, endOffset)
			}
		}
		return nil
	})
	phase("parent's segments expired")
	for i, n := range c.nodes {
		got := lineageReadOne(t, n.client, stream, parent)
		if len(got.records) != 0 || !got.closed || len(got.children) != 2 {
			t.Fatalf("node %d: TRIM_HORIZON read of the expired parent: %d records, closed %v, children %v; want none, closed, 2",
				i, len(got.records), got.closed, got.children)
		}
	}
	if ids, _ := shardsAndParents(t, cl, stream); !slices.Contains(ids, parent) {
		t.Fatalf("the parent left the listing before its close was a retention period back: %v", ids)
	}
	// An iterator to the parent, issued while it exists.
	it, err := cl.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: stream, ShardId: parent,
		ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON})
	if err != nil {
		t.Fatal(err)
	}

	// A day after the close, with n3 down: the parent goes, and n3
	// deletes its replica when it comes back.
	removed := func(nodes ...int) func() error {
		return func() error {
			for _, i := range nodes {
				s, sh := c.shardMeta(i, stream, 0)
				if sh != nil {
					return fmt.Errorf("node %d's metadata still holds the parent", i)
				}
				dir := filepath.Join(c.nodes[i].dir, "shards", fmt.Sprintf("s%d-0", s.ID))
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("node %d: %s is still there (%v)", i, dir, err)
				}
			}
			return nil
		}
	}
	c.kill(2)
	clock.Set(closedAt.Add(24*time.Hour + time.Millisecond))
	waitFor(t, 20*time.Second, "the expired parent removed on the live nodes, metadata and disk", removed(0, 1))
	if _, err := os.Stat(filepath.Join(c.dirs[2], "shards", fmt.Sprintf("s%d-0", desc0.ID))); err != nil {
		t.Fatalf("n3's replica of the parent, down: %v", err)
	}
	c.restart(2)
	waitFor(t, 20*time.Second, "the expired parent removed on the restarted node", removed(2))
	phase("parent removed")
	ids, parents := shardsAndParents(t, cl, stream)
	if want := []string{cluster.ShardID(1), cluster.ShardID(2)}; !slices.Equal(ids, want) {
		t.Fatalf("ListShards lists %v, want %v", ids, want)
	}
	for _, id := range ids {
		if parents[id] != parent {
			t.Errorf("%s's parent is %q, want the removed %s", id, parents[id], parent)
		}
	}
	// The children are now where a TRIM_HORIZON reader starts.
	roots, err := cl.ListShards(ctx, &rifflev1.ListShardsRequest{StreamName: stream,
		ShardFilter: &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TRIM_HORIZON}})
	if err != nil {
		t.Fatal(err)
	}
	if len(roots.Shards) != 2 || roots.Shards[0].ShardId != cluster.ShardID(1) || roots.Shards[1].ShardId != cluster.ShardID(2) {
		t.Errorf("AT_TRIM_HORIZON lists %v, want the two children", roots.Shards)
	}
	desc, err := cl.DescribeStream(ctx, &rifflev1.DescribeStreamRequest{StreamName: stream})
	if err != nil {
		t.Fatal(err)
	}
	for _, sh := range desc.StreamDescription.Shards {
		if sh.ShardId == parent {
			t.Fatal("DescribeStream still lists the expired parent")
		}
	}
	if _, err := cl.GetShardIterator(ctx, &rifflev1.GetShardIteratorRequest{StreamName: stream, ShardId: parent,
		ShardIteratorType: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON}); status.Code(err) != codes.NotFound {
		t.Errorf("GetShardIterator of the expired parent: %v, want NotFound (ResourceNotFoundException)", err)
	}
	for i, n := range c.nodes {
		if _, err := n.client.GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: it.ShardIterator}); status.Code(err) != codes.NotFound {
			t.Errorf("node %d: GetRecords on the expired parent: %v, want NotFound (ResourceNotFoundException)", i, err)
		}
	}

	// What remains of the lineage is read as before.
	var children []string
	for _, id := range ids {
		children = append(children, dataOf(lineageReadOne(t, c.nodes[2].client, stream, id).records)...)
	}
	children = firstCopies(children)
	slices.Sort(children)
	want := slices.Clone(childData)
	slices.Sort(want)
	if !slices.Equal(children, want) {
		t.Fatalf("the children hold %v, want %v", children, want)
	}

	phase("children read")
	// The removed index is not reused.
	splitShard(t, c, cl, stream, cluster.ShardID(1), "85070591730234615865843651857942052864")
	ids, parents = shardsAndParents(t, cl, stream)
	if want := []string{cluster.ShardID(1), cluster.ShardID(2), cluster.ShardID(3), cluster.ShardID(4)}; !slices.Equal(ids, want) {
		t.Fatalf("after a later split ListShards lists %v, want %v", ids, want)
	}
	if parents[cluster.ShardID(3)] != cluster.ShardID(1) {
		t.Errorf("grandchild's parent %q", parents[cluster.ShardID(3)])
	}
}

// sameLocalRecords fails unless node a's and node b's replicas of a shard
// hold the same records, field by field (offset, raft index, arrival time,
// key, data, batch boundary), and the same bytes in their segment files.
func sameLocalRecords(t *testing.T, c *testCluster, stream string, index uint64, a, b int) {
	t.Helper()
	ra, rb := localShard(c.nodes[a], stream, int(index)), localShard(c.nodes[b], stream, int(index))
	if ra == nil || rb == nil {
		t.Fatalf("no local replica on node %d (%v) or %d (%v)", a, ra != nil, b, rb != nil)
	}
	la, lb := ra.Log(), rb.Log()
	if la.TrimOffset() != lb.TrimOffset() || la.NextOffset() != lb.NextOffset() {
		t.Fatalf("node %d holds [%d, %d), node %d [%d, %d)", a, la.TrimOffset(), la.NextOffset(), b, lb.TrimOffset(), lb.NextOffset())
	}
	ga, err := la.Read(la.TrimOffset(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	gb, err := lb.Read(lb.TrimOffset(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ga) != len(gb) {
		t.Fatalf("node %d reads %d records, node %d %d", a, len(ga), b, len(gb))
	}
	for i := range ga {
		x, y := ga[i], gb[i]
		if x.Offset != y.Offset || x.RaftIndex != y.RaftIndex || x.Timestamp != y.Timestamp ||
			x.PartitionKey != y.PartitionKey || !bytes.Equal(x.Data, y.Data) || x.LastInBatch != y.LastInBatch {
			t.Fatalf("record %d differs: node %d %+v, node %d %+v", i, a, x, b, y)
		}
	}
	sa, sb := la.Segments(), lb.Segments()
	if len(sa) != len(sb) {
		t.Fatalf("node %d has %d segments, node %d %d", a, len(sa), b, len(sb))
	}
	for i := range sa {
		fa, err := os.ReadFile(sa[i].Path)
		if err != nil {
			t.Fatal(err)
		}
		fb, err := os.ReadFile(sb[i].Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fa, fb) {
			t.Fatalf("segment %d: %s (%d bytes) and %s (%d bytes) differ", i, sa[i].Path, len(fa), sb[i].Path, len(fb))
		}
	}
}

// waitReplicasFrozen waits until node 0's metadata shows the shard's replicas as
// want (in any order), with no rebuild under way, and frozen.
func waitReplicasFrozen(t *testing.T, c *testCluster, stream string, index uint64, want ...string) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("%s frozen on %v", cluster.ShardID(index), want), func() error {
		_, sh := c.shardMeta(0, stream, index)
		if sh == nil {
			return errors.New("no such shard")
		}
		got := slices.Sorted(slices.Values(sh.Replicas))
		if !slices.Equal(got, want) || sh.Moving != nil || sh.Copying != nil || !sh.Frozen {
			return fmt.Errorf("replicas %v moving %+v copying %+v frozen %v", sh.Replicas, sh.Moving, sh.Copying, sh.Frozen)
		}
		return nil
	})
}

// TestFrozenReplicaRebuiltOnNewNode checks that a frozen shard keeps its
// replica count when a node dies: the metadata leader has a fourth node
// copy the dead replica's segments from a surviving one (no raft group
// runs for a frozen shard), the copy serves reads frozen, and it holds
// exactly the records of the other replicas, byte for byte.
func TestFrozenReplicaRebuiltOnNewNode(t *testing.T) {
	if testing.Short() {
		t.Skip("four nodes")
	}
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: steadyRaft, deadNodeGrace: 2 * time.Second})
	killAtEnd(t, c)
	cl := c.nodes[0].client
	const stream = "rebuild-frozen"
	createStream(t, cl, stream, 1)
	waitPreferredLeaders(t, c, stream)
	parentData := putN(t, cl, stream, "parent", 40)
	parent := cluster.ShardID(0)
	splitShard(t, c, cl, stream, parent, "170141183460469231731687303715884105728")
	waitShardFrozen(t, c, stream, 0, 0, 1, 2)

	n4 := c.addNode()
	killed := time.Now()
	c.kill(2)
	waitReplicasFrozen(t, c, stream, 0, "n1", "n2", "n4")
	t.Logf("frozen replica rebuilt on n4 %v after n3's kill (grace 2s)", time.Since(killed).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "n4 serving the parent frozen", func() error {
		s, sh := c.shardMeta(n4, stream, 0)
		if sh == nil || !slices.Contains(sh.Replicas, "n4") || !c.nodes[n4].Host().IsFrozen(s.GroupID(sh)) {
			return errors.New("not yet")
		}
		return nil
	})
	if n := c.nodes[n4].Host().RunningGroups(); n > 2 {
		t.Errorf("n4 runs %d raft groups; the frozen parent must not be one", n)
	}
	sameLocalRecords(t, c, stream, 0, 0, n4)
	got := lineageReadOne(t, c.nodes[n4].client, stream, parent)
	if !slices.Equal(firstCopies(dataOf(got.records)), parentData) || !got.closed || len(got.children) != 2 {
		t.Fatalf("n4 reads the parent as %v (closed %v, children %v), want %v", dataOf(got.records), got.closed, got.children, parentData)
	}
}

// TestClosedReplicaRebuiltBeforeFreeze checks the case a closed shard
// cannot freeze: a replica's node died before the split, so it never
// reports the seal. Such a shard still runs raft, so its replica is
// rebuilt through raft on a new node (non-voter, caught up, promoted),
// which then reports the seal, and the shard freezes on its new replicas
// with every record.
func TestClosedReplicaRebuiltBeforeFreeze(t *testing.T) {
	if testing.Short() {
		t.Skip("four nodes")
	}
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: steadyRaft, deadNodeGrace: 2 * time.Second})
	killAtEnd(t, c)
	cl := c.nodes[0].client
	const stream = "rebuild-closed"
	createStream(t, cl, stream, 1)
	waitPreferredLeaders(t, c, stream)
	parentData := putN(t, cl, stream, "parent", 30)
	c.kill(2)
	parent := cluster.ShardID(0)
	splitShard(t, c, cl, stream, parent, "170141183460469231731687303715884105728")
	if _, sh := c.shardMeta(0, stream, 0); sh == nil || !sh.Closed() || sh.Frozen {
		t.Fatalf("parent after the split: %+v; want closed and not frozen", sh)
	}

	added := time.Now()
	n4 := c.addNode()
	waitReplicasFrozen(t, c, stream, 0, "n1", "n2", "n4")
	waitShardFrozen(t, c, stream, 0, 0, 1, n4)
	t.Logf("closed replica rebuilt through raft and frozen %v after n4 was started", time.Since(added).Round(time.Millisecond))
	sameLocalRecords(t, c, stream, 0, 1, n4)
	got := lineageReadOne(t, c.nodes[n4].client, stream, parent)
	if !slices.Equal(firstCopies(dataOf(got.records)), parentData) || !got.closed || len(got.children) != 2 {
		t.Fatalf("n4 reads the parent as %v (closed %v, children %v), want %v", dataOf(got.records), got.closed, got.children, parentData)
	}
}
