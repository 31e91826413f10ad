package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// integrityStream is the one-shard stream the integrity tests write.
const integrityStream = "integrity"

// writeIntegrityRecords writes calls PutRecords calls of four records
// through the nodes in turn and returns the acknowledged data, each value
// unique.
func writeIntegrityRecords(t *testing.T, nodes []*testNode, tag string, calls int) map[string]bool {
	t.Helper()
	acked := map[string]bool{}
	for i := range calls {
		entries := make([]*rifflev1.PutRecordsRequestEntry, 4)
		for k := range entries {
			v := fmt.Sprintf("%s-%d-%d:%s", tag, i, k, strings.Repeat("x", 200))
			entries[k] = &rifflev1.PutRecordsRequestEntry{PartitionKey: v[:20], Data: []byte(v)}
		}
		waitFor(t, 20*time.Second, "PutRecords", func() error {
			out, err := nodes[i%len(nodes)].client.PutRecords(context.Background(),
				&rifflev1.PutRecordsRequest{StreamName: integrityStream, Records: entries})
			if err != nil {
				if !retryable(err) {
					t.Fatalf("PutRecords: %v", err)
				}
				return err
			}
			var failed []*rifflev1.PutRecordsRequestEntry
			for j, r := range out.Records {
				if r.ErrorCode != "" {
					failed = append(failed, entries[j])
					continue
				}
				acked[string(entries[j].Data)] = true
			}
			entries = failed
			if len(failed) > 0 {
				return fmt.Errorf("%d records failed", len(failed))
			}
			return nil
		})
	}
	return acked
}

// startIntegrityCluster starts three nodes whose segments roll at
// segmentMaxBytes (0: the default) and creates the one-shard stream.
func startIntegrityCluster(t *testing.T, segmentMaxBytes int64) *testCluster {
	t.Helper()
	c := startClusterOpts(t, &testCluster{t: t, expect: 3, raft: fastRaft, segmentMaxBytes: segmentMaxBytes})
	createStream(t, c.nodes[0].client, integrityStream, 1)
	for _, n := range c.nodes {
		waitActive(t, n.client, integrityStream)
	}
	return c
}

// integrityGroup returns the raft group id of the stream's only shard.
func integrityGroup(t *testing.T, n *testNode) string {
	t.Helper()
	st, ok := n.Host().Meta().State().Streams[integrityStream]
	if !ok {
		t.Fatal("stream unknown")
	}
	sh, _ := st.ShardByIndex(0)
	return st.GroupID(sh)
}

// sameReplica checks that the replica r holds exactly ref's records
// (offsets, raft indexes, timestamps, keys, data) and every acked value,
// reading its own log: a damaged record would fail the read.
func sameReplica(t *testing.T, r, ref *shardlog.Log, acked map[string]bool) {
	t.Helper()
	got, err := r.Read(r.TrimOffset(), 0, 0)
	if err != nil {
		t.Fatalf("reading the repaired replica: %v", err)
	}
	want, err := ref.Read(ref.TrimOffset(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("repaired replica holds %d records, its peer %d", len(got), len(want))
	}
	have := map[string]bool{}
	for i := range got {
		g, w := got[i], want[i]
		if g.Offset != w.Offset || g.RaftIndex != w.RaftIndex || g.Timestamp != w.Timestamp ||
			g.PartitionKey != w.PartitionKey || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("record %d differs from its peer's: %+v vs %+v", i, g, w)
		}
		have[string(g.Data)] = true
	}
	for v := range acked {
		if !have[v] {
			t.Fatalf("acknowledged record %.24s... lost", v)
		}
	}
}

// TestDamagedSegmentsRepairedFromPeers checks issue 6's file faults on a
// stopped minority node: a flipped byte in a sealed segment, a truncated
// sealed segment and a flipped byte in the active segment are detected when
// the node starts, and the replica is repaired from its peers (raft no
// longer holds the entries) before it serves: it then holds exactly its
// peers' records, every acknowledged one included, and serves them through
// the API without error.
func TestDamagedSegmentsRepairedFromPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startIntegrityCluster(t, 8<<10)
	acked := writeIntegrityRecords(t, c.nodes, "before", 150)
	waitFor(t, 20*time.Second, "n3 holds every record", func() error {
		r := localShard(c.nodes[2], integrityStream, 0)
		if r == nil || r.Log().NextOffset() < uint64(len(acked)) {
			return errors.New("n3 behind")
		}
		return nil
	})
	// Compact every replica's raft log, so that only peers can repair n3.
	for i := range 3 {
		r := localShard(c.nodes[i], integrityStream, 0)
		if err := r.Raft().Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			t.Fatalf("snapshot on n%d: %v", i+1, err)
		}
	}
	segs := localShard(c.nodes[2], integrityStream, 0).Log().Segments()
	if len(segs) < 8 {
		t.Fatalf("n3 holds %d segments; the test needs several", len(segs))
	}
	c.kill(2)
	flipFileByte(t, segs[2].Path, segs[2].Bytes/2)
	if err := os.Truncate(segs[5].Path, segs[5].Bytes*2/3); err != nil {
		t.Fatal(err)
	}
	active := segs[len(segs)-1]
	if active.Bytes > 36 {
		flipFileByte(t, active.Path, active.Bytes-1)
	}
	more := writeIntegrityRecords(t, c.nodes[:2], "while-down", 20)

	c.restart(2)
	ref := localShard(c.nodes[0], integrityStream, 0).Log()
	waitFor(t, 30*time.Second, "n3 repaired", func() error {
		r := localShard(c.nodes[2], integrityStream, 0)
		if r == nil || r.Log().NextOffset() != ref.NextOffset() {
			return errors.New("n3 behind")
		}
		return nil
	})
	for v := range more {
		acked[v] = true
	}
	sameReplica(t, localShard(c.nodes[2], integrityStream, 0).Log(), ref, acked)
	if err := localShard(c.nodes[2], integrityStream, 0).Log().Damaged(); err != nil {
		t.Fatalf("repaired replica met damage: %v", err)
	}
	got := readShard(t, c.nodes[2].client, integrityStream, "shardId-000000000000")
	if len(got) != int(ref.NextOffset()) {
		t.Fatalf("n3 serves %d records, want %d", len(got), ref.NextOffset())
	}
}

// TestDamagedRaftStoreKeepsReplicaStopped checks issue 6's raft store
// fault: a stopped node whose shard replica's raft.db is damaged comes back
// without starting that group (it could vote having lost its vote or log),
// reports the replica failed, while the other two replicas go on taking
// writes; and once a node that can take the replica joins, the replica is
// rebuilt there (a move the damaged node asks for), ending with every
// acknowledged record, and the damaged copy is deleted.
func TestDamagedRaftStoreKeepsReplicaStopped(t *testing.T) {
	if testing.Short() {
		t.Skip("four nodes")
	}
	c := startIntegrityCluster(t, 0)
	acked := writeIntegrityRecords(t, c.nodes, "before", 40)
	gid := integrityGroup(t, c.nodes[0])
	c.kill(2)
	dbPath := filepath.Join(c.dirs[2], "shards", gid, shardlog.RaftStateFile)
	flipFileByte(t, dbPath, 16+40) // meta page 0: bbolt would fall back to the older page

	c.nodes[2] = c.startNode(2)
	if c.nodes[2] == nil {
		t.FailNow()
	}
	waitFor(t, 30*time.Second, "n3 reports the replica failed", func() error {
		if _, ok := c.nodes[2].Host().FailedReplicas()[gid]; !ok {
			return errors.New("not reported")
		}
		return nil
	})
	if localShard(c.nodes[2], integrityStream, 0) != nil {
		t.Fatal("n3 runs the replica whose raft store is damaged")
	}
	// Its readiness names the replica and why.
	if err := c.nodes[2].NotReady(); err == nil || !strings.Contains(err.Error(), gid) || !strings.Contains(err.Error(), "failed") {
		t.Errorf("n3's readiness with a failed replica: %v; want the replica named as failed", err)
	}
	if _, err := os.Stat(dbPath); err != nil {
		t.Fatalf("damaged raft store not kept: %v", err)
	}
	for v := range writeIntegrityRecords(t, c.nodes[:2], "degraded", 20) {
		acked[v] = true
	}

	// With three nodes there is nowhere to rebuild it; a fourth node
	// joining gets it, through a move n3 asks for.
	n4 := c.addNode()
	waitFor(t, 60*time.Second, "replica rebuilt on n4, damaged copy gone", func() error {
		st := c.nodes[0].Host().Meta().State().Streams[integrityStream]
		sh, _ := st.ShardByIndex(0)
		if slices.Contains(sh.Replicas, "n3") || !slices.Contains(sh.Replicas, "n4") {
			return fmt.Errorf("replicas %v", sh.Replicas)
		}
		if len(c.nodes[2].Host().FailedReplicas()) > 0 {
			return errors.New("n3 still reports the failed replica")
		}
		if _, err := os.Stat(filepath.Dir(dbPath)); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("damaged replica still on disk: %v", err)
		}
		r := localShard(c.nodes[n4], integrityStream, 0)
		if r == nil || r.Log().NextOffset() != localShard(c.nodes[0], integrityStream, 0).Log().NextOffset() {
			return errors.New("n4 behind")
		}
		return nil
	})
	sameReplica(t, localShard(c.nodes[n4], integrityStream, 0).Log(), localShard(c.nodes[0], integrityStream, 0).Log(), acked)
}

// TestDamagedFrozenReplicaRepairedFromPeers checks issue 6's file faults on
// a closed shard whose raft group is stopped (frozen), which has no raft
// log to replay: a flipped byte in a sealed segment of a stopped node's
// frozen replica is detected when the node starts, and the replica fetches
// the dropped records from a peer before it serves: it then holds exactly
// its peers' records.
func TestDamagedFrozenReplicaRepairedFromPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startIntegrityCluster(t, 1<<10)
	acked := writeIntegrityRecords(t, c.nodes, "frozen", 30)
	waitFrozen := splitAndFreeze(t, c)
	segs := localShard(c.nodes[2], integrityStream, 0).Log().Segments()
	if len(segs) < 4 {
		t.Fatalf("n3's frozen replica has %d segments; the test needs several", len(segs))
	}
	c.kill(2)
	flipFileByte(t, segs[1].Path, segs[1].Bytes-10)

	c.restart(2)
	waitFrozen()
	ref := localShard(c.nodes[0], integrityStream, 0).Log()
	sameReplica(t, localShard(c.nodes[2], integrityStream, 0).Log(), ref, acked)
}

// splitAndFreeze splits the integrity stream's only shard, waits until the
// parent is frozen on every node and returns that wait, for again after a
// restart.
func splitAndFreeze(t *testing.T, c *testCluster) (waitFrozen func()) {
	t.Helper()
	if _, err := c.nodes[0].client.SplitShard(context.Background(), &rifflev1.SplitShardRequest{StreamName: integrityStream,
		ShardToSplit: "shardId-000000000000", NewStartingHashKey: "170141183460469231731687303715884105728"}); err != nil {
		t.Fatalf("SplitShard: %v", err)
	}
	gid := integrityGroup(t, c.nodes[0])
	waitFrozen = func() {
		t.Helper()
		waitFor(t, 30*time.Second, "the parent frozen on every node", func() error {
			for i, n := range c.nodes {
				if !n.Host().IsFrozen(gid) {
					return fmt.Errorf("n%d: not frozen", i+1)
				}
			}
			return nil
		})
	}
	waitFrozen()
	return waitFrozen
}

// TestLostFrozenReplicaCopiedFromPeers: a node that holds a frozen shard
// in the metadata but finds no sealed replica of it on disk (its directory
// gone, as a sweep over a stale metadata state once deleted it in a fault
// soak) copies it from a peer and serves it, instead of failing to open it
// for good.
func TestLostFrozenReplicaCopiedFromPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startIntegrityCluster(t, 1<<10)
	acked := writeIntegrityRecords(t, c.nodes, "lost", 30)
	waitFrozen := splitAndFreeze(t, c)
	dir := filepath.Dir(filepath.Dir(localShard(c.nodes[2], integrityStream, 0).Log().Segments()[0].Path))
	c.kill(2)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	c.restart(2)
	waitFrozen()
	ref := localShard(c.nodes[0], integrityStream, 0).Log()
	sameReplica(t, localShard(c.nodes[2], integrityStream, 0).Log(), ref, acked)
}

// TestBitRotWhileRunningRepaired checks that damage appearing under a
// running replica is never served and gets repaired: the read that meets it
// fails, the node closes the replica and opens it again, which drops the
// damaged segment and fetches it from its peers; the replica then holds
// exactly its peers' records.
func TestBitRotWhileRunningRepaired(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startIntegrityCluster(t, 8<<10)
	acked := writeIntegrityRecords(t, c.nodes, "rot", 60)
	damaged := localShard(c.nodes[2], integrityStream, 0)
	waitFor(t, 20*time.Second, "n3 holds every record", func() error {
		if damaged.Log().NextOffset() < uint64(len(acked)) {
			return errors.New("n3 behind")
		}
		return nil
	})
	segs := damaged.Log().Segments()
	if len(segs) < 3 {
		t.Fatalf("n3 holds %d segments; the test needs several", len(segs))
	}
	flipFileByte(t, segs[1].Path, segs[1].Bytes/2)
	if recs, err := damaged.Log().Read(segs[1].BaseOffset, 0, 0); err == nil || recs != nil {
		t.Fatalf("read over the damage returned %d records, %v", len(recs), err)
	}
	ref := localShard(c.nodes[0], integrityStream, 0).Log()
	waitFor(t, 30*time.Second, "n3 reopens and repairs its replica", func() error {
		r := localShard(c.nodes[2], integrityStream, 0)
		if r == nil || r == damaged {
			return errors.New("not reopened")
		}
		if r.Log().NextOffset() != ref.NextOffset() {
			return errors.New("n3 behind")
		}
		return nil
	})
	sameReplica(t, localShard(c.nodes[2], integrityStream, 0).Log(), ref, acked)
}

func flipFileByte(t *testing.T, path string, pos int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, pos); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, pos); err != nil {
		t.Fatal(err)
	}
}
