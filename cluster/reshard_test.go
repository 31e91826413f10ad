package cluster

import (
	"errors"
	"math/big"
	"testing"
)

// coverCheck fails unless exactly one open shard covers each of the probe
// keys: the hash-range switch must never leave a key with none or two.
func coverCheck(t *testing.T, s *Stream) {
	t.Helper()
	max := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))
	mid := new(big.Int).Rsh(max, 1)
	for _, k := range []*big.Int{big.NewInt(0), new(big.Int).Sub(mid, big.NewInt(1)), mid, new(big.Int).Add(mid, big.NewInt(1)), max} {
		n := 0
		for _, sh := range s.Shards {
			if sh.Open() && sh.HashRange().Contains(k) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("key %s is covered by %d open shards", k, n)
		}
	}
}

// A split adds two pending children under an UPDATING stream (the parent
// still takes the writes), the switch closes the parent at its seal and
// opens the children at once, and a merge of the children gives a child
// with both parents. Invalid requests change nothing.
func TestSplitMergeState(t *testing.T) {
	st := newStateWithStream(t)
	st = applyOK(t, st, Command{ShardReady: &ShardReadyCmd{StreamID: st.Streams["s"].ID, ShardIndex: 0}})
	var s *Stream
	mid := new(big.Int).Rsh(new(big.Int).Lsh(big.NewInt(1), 128), 1)
	for _, bad := range []string{"0", "340282366920938463463374607431768211456", "x"} {
		if _, err := st.apply(&Command{SplitShard: &SplitShardCmd{Name: "s", Shard: "shardId-000000000000", NewStartingHashKey: bad,
			Placement: [][]string{{"n1"}, {"n1"}}}}); !errors.Is(err, ErrInvalidCommand) {
			t.Errorf("split at %s: %v, want ErrInvalidCommand", bad, err)
		}
	}
	st = applyOK(t, st, Command{SplitShard: &SplitShardCmd{Name: "s", Shard: "shardId-000000000000",
		NewStartingHashKey: mid.String(), Placement: [][]string{{"n1"}, {"n1"}}}})
	s = st.Streams["s"]
	if s.Status != StreamUpdating || len(s.Shards) != 3 || !s.Shards[1].Pending || s.Shards[2].Parent != "shardId-000000000000" {
		t.Fatalf("after split: %+v", s)
	}
	coverCheck(t, s)
	if _, err := st.apply(&Command{SplitShard: &SplitShardCmd{Name: "s", Shard: "shardId-000000000000",
		NewStartingHashKey: mid.String(), Placement: [][]string{{"n1"}, {"n1"}}}}); !errors.Is(err, ErrStreamInUse) {
		t.Errorf("second split while UPDATING: %v, want ErrStreamInUse", err)
	}
	if _, err := st.apply(&Command{ShardsSwitched: &ShardsSwitchedCmd{StreamID: s.ID}}); !errors.Is(err, ErrInvalidCommand) {
		t.Errorf("switch without the parent's end: %v", err)
	}
	sw := Command{ShardsSwitched: &ShardsSwitchedCmd{StreamID: s.ID, Ends: []ShardEnd{{Index: 0, EndOffset: 7}}}}
	st = applyOK(t, st, sw)
	st = applyOK(t, st, sw) // repeated by a new leader: no change
	s = st.Streams["s"]
	if s.Status != StreamActive || s.Shards[0].Open() || s.Shards[0].EndOffset != 7 ||
		s.Shards[0].EndingSequence != "6" || !s.Shards[1].Open() || !s.Shards[2].Open() {
		t.Fatalf("after switch: status %s, shards %+v %+v %+v", s.Status, s.Shards[0], s.Shards[1], s.Shards[2])
	}
	coverCheck(t, s)
	if _, err := st.apply(&Command{SplitShard: &SplitShardCmd{Name: "s", Shard: "shardId-000000000000",
		NewStartingHashKey: "5", Placement: [][]string{{"n1"}, {"n1"}}}}); !errors.Is(err, ErrInvalidCommand) {
		t.Errorf("split of a closed shard: %v, want ErrInvalidCommand", err)
	}
	if _, err := st.apply(&Command{MergeShards: &MergeShardsCmd{Name: "s", Shard: "shardId-000000000001", Adjacent: "shardId-000000000000",
		Placement: [][]string{{"n1"}}}}); !errors.Is(err, ErrInvalidCommand) {
		t.Errorf("merge with a closed shard: %v, want ErrInvalidCommand", err)
	}
	st = applyOK(t, st, Command{MergeShards: &MergeShardsCmd{Name: "s", Shard: "shardId-000000000002", Adjacent: "shardId-000000000001",
		Placement: [][]string{{"n1"}}}})
	s = st.Streams["s"]
	c := s.Shards[3]
	if c.Parent != "shardId-000000000002" || c.AdjacentParent != "shardId-000000000001" || c.HashStart != "0" || !c.Pending {
		t.Fatalf("merged child %+v", c)
	}
	st = applyOK(t, st, Command{ShardsSwitched: &ShardsSwitchedCmd{StreamID: s.ID, Ends: []ShardEnd{{Index: 1, EndOffset: 0}, {Index: 2, EndOffset: 3}}}})
	s = st.Streams["s"]
	coverCheck(t, s)
	if s.Shards[1].EndingSequence != s.Shards[1].StartingSequence() || s.Shards[1].Open() || !s.Shards[3].Open() {
		t.Errorf("empty parent %+v, child %+v", s.Shards[1], s.Shards[3])
	}
}
