package cluster

import (
	"errors"
	"math/big"
	"slices"
	"testing"
	"time"
)

// frozenFixture is a stream of three-replica shards whose shard 0 split
// into 1 and 2 and froze on n1, n2, n3.
func frozenFixture(t *testing.T) *State {
	t.Helper()
	rf := []string{"n1", "n2", "n3"}
	st := applyOK(t, &State{Streams: map[string]*Stream{}}, Command{CreateStream: &CreateStreamCmd{Name: "s", ShardCount: 1,
		Mode: ModeProvisioned, RetentionHours: 24, CreatedAt: time.UnixMilli(1_700_000_000_000).UTC(), Placement: [][]string{rf}}})
	id := st.Streams["s"].ID
	st = applyOK(t, st, Command{ShardReady: &ShardReadyCmd{StreamID: id, ShardIndex: 0}})
	half := new(big.Int).Lsh(big.NewInt(1), 127)
	st = applyOK(t, st, Command{SplitShard: &SplitShardCmd{Name: "s", Shard: "shardId-000000000000",
		NewStartingHashKey: half.String(), Placement: [][]string{rf, rf}}})
	st = applyOK(t, st, Command{ShardsSwitched: &ShardsSwitchedCmd{StreamID: id, Ends: []ShardEnd{{Index: 0, EndOffset: 9}},
		At: time.UnixMilli(1_700_000_100_000).UTC()}})
	for _, n := range rf {
		st = applyOK(t, st, Command{ReplicaSealed: &ReplicaSealedCmd{StreamID: id, ShardIndex: 0, Node: n}})
	}
	if sh, _ := st.Streams["s"].ShardByIndex(0); !sh.Frozen {
		t.Fatalf("fixture: parent not frozen: %+v", sh)
	}
	return st
}

// A frozen shard's lost replica is rebuilt by a copy: only a frozen shard
// takes CopyFrozen (others move through raft), from a replica it has to a
// node it lacks; a new target may replace a dead one for the same lost
// replica; FrozenCopied swaps the replica in Replicas and SealedOn and the
// shard stays frozen; a stale report changes nothing.
func TestFrozenCopyState(t *testing.T) {
	st := frozenFixture(t)
	id := st.Streams["s"].ID
	for _, bad := range []CopyFrozenCmd{
		{StreamID: id, ShardIndex: 1, From: "n3", To: "n4"}, // open: raft's business
		{StreamID: id, ShardIndex: 0, From: "n4", To: "n5"}, // no replica there
		{StreamID: id, ShardIndex: 0, From: "n3", To: "n1"}, // already a replica
		{StreamID: id, ShardIndex: 7, From: "n3", To: "n4"}, // no such shard
	} {
		if _, err := st.apply(&Command{CopyFrozen: &bad}); err == nil {
			t.Errorf("CopyFrozen %+v accepted", bad)
		}
	}
	if _, err := st.apply(&Command{MoveReplica: &MoveReplicaCmd{StreamID: id, ShardIndex: 0, From: "n3", To: "n4"}}); !errors.Is(err, ErrInvalidCommand) {
		t.Errorf("raft move of a frozen shard: %v, want ErrInvalidCommand", err)
	}

	st = applyOK(t, st, Command{CopyFrozen: &CopyFrozenCmd{StreamID: id, ShardIndex: 0, From: "n3", To: "n4"}})
	if _, err := st.apply(&Command{CopyFrozen: &CopyFrozenCmd{StreamID: id, ShardIndex: 0, From: "n2", To: "n5"}}); !errors.Is(err, ErrInvalidCommand) {
		t.Errorf("a second copy for another replica: %v, want ErrInvalidCommand", err)
	}
	// n4 died too: n5 takes over the same copy.
	st = applyOK(t, st, Command{CopyFrozen: &CopyFrozenCmd{StreamID: id, ShardIndex: 0, From: "n3", To: "n5"}})
	if sh, _ := st.Streams["s"].ShardByIndex(0); sh.Copying == nil || *sh.Copying != (FrozenCopy{From: "n3", To: "n5"}) {
		t.Fatalf("copying %+v, want n3 -> n5", sh.Copying)
	}
	if stale := applyOK(t, st, Command{FrozenCopied: &FrozenCopiedCmd{StreamID: id, ShardIndex: 0, To: "n4"}}); stale != st {
		t.Error("a report from the replaced target changed the state")
	}
	before := st
	st = applyOK(t, st, Command{FrozenCopied: &FrozenCopiedCmd{StreamID: id, ShardIndex: 0, To: "n5"}})
	sh, _ := st.Streams["s"].ShardByIndex(0)
	if !slices.Equal(sh.Replicas, []string{"n1", "n2", "n5"}) || sh.Copying != nil || !sh.Frozen {
		t.Fatalf("after the copy: replicas %v copying %+v frozen %v", sh.Replicas, sh.Copying, sh.Frozen)
	}
	if got := slices.Sorted(slices.Values(sh.SealedOn)); !slices.Equal(got, []string{"n1", "n2", "n5"}) {
		t.Errorf("sealed on %v, want n1 n2 n5", got)
	}
	if old, _ := before.Streams["s"].ShardByIndex(0); old.Copying == nil || slices.Contains(old.Replicas, "n5") {
		t.Error("the copy's end changed the earlier state")
	}
	if again := applyOK(t, st, Command{FrozenCopied: &FrozenCopiedCmd{StreamID: id, ShardIndex: 0, To: "n5"}}); again != st {
		t.Error("a repeated report changed the state")
	}
}
