package cluster

import (
	"errors"
	"math/big"
	"testing"
)

// A closed shard freezes only once every replica reported its seal applied
// and no replica move is in progress; reports from open shards or from
// nodes without a replica change nothing, and a frozen shard is never moved.
func TestReplicaSealedFreezes(t *testing.T) {
	st := &State{Streams: map[string]*Stream{}}
	st = applyOK(t, st, Command{CreateStream: &CreateStreamCmd{Name: "s", ShardCount: 1, Mode: ModeProvisioned,
		RetentionHours: 24, Placement: [][]string{{"n1", "n2", "n3"}}}})
	id := st.Streams["s"].ID
	st = applyOK(t, st, Command{ShardReady: &ShardReadyCmd{StreamID: id, ShardIndex: 0}})
	report := func(st *State, node string) *State {
		return applyOK(t, st, Command{ReplicaSealed: &ReplicaSealedCmd{StreamID: id, ShardIndex: 0, Node: node}})
	}
	if sh := report(st, "n1").Streams["s"].Shards[0]; len(sh.SealedOn) != 0 {
		t.Fatalf("an open shard recorded a seal report: %+v", sh)
	}
	mid := new(big.Int).Rsh(new(big.Int).Lsh(big.NewInt(1), 128), 1)
	st = applyOK(t, st, Command{SplitShard: &SplitShardCmd{Name: "s", Shard: "shardId-000000000000",
		NewStartingHashKey: mid.String(), Placement: [][]string{{"n1"}, {"n1"}}}})
	st = applyOK(t, st, Command{ShardsSwitched: &ShardsSwitchedCmd{StreamID: id, Ends: []ShardEnd{{Index: 0, EndOffset: 5}}}})

	st = report(report(report(st, "n1"), "n1"), "n9")
	st = applyOK(t, st, Command{MoveReplica: &MoveReplicaCmd{StreamID: id, ShardIndex: 0, From: "n3", To: "n4"}})
	st = report(report(st, "n2"), "n3")
	if sh := st.Streams["s"].Shards[0]; sh.Frozen || len(sh.SealedOn) != 3 {
		t.Fatalf("frozen during a move, or reports lost: %+v", sh)
	}
	// The move ends with n4 in place of n3: n4 has not reported yet.
	st = applyOK(t, st, Command{MoveDone: &MoveDoneCmd{StreamID: id, ShardIndex: 0, To: "n4"}})
	if sh := st.Streams["s"].Shards[0]; sh.Frozen {
		t.Fatalf("frozen before the new replica reported: %+v", sh)
	}
	st = report(st, "n4")
	sh := st.Streams["s"].Shards[0]
	if !sh.Frozen {
		t.Fatalf("not frozen after every replica reported: %+v", sh)
	}
	if _, err := st.apply(&Command{MoveReplica: &MoveReplicaCmd{StreamID: id, ShardIndex: 0, From: "n1", To: "n5"}}); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("moving a frozen shard's replica: %v, want ErrInvalidCommand", err)
	}
}
