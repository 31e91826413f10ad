package cluster

import (
	"errors"
	"testing"
)

// runScaling plays the controller's part on a State: plan a step, apply
// it, switch the children in, until the empty step finishes the scaling.
// It returns the number of steps.
func runScaling(t *testing.T, st *State, name string) (*State, int) {
	t.Helper()
	for step := 0; step < 20; step++ {
		s := st.Streams[name]
		splits, merges, err := s.ScalePlan()
		if err != nil {
			t.Fatal(err)
		}
		n := 2*len(splits) + len(merges)
		placement := make([][]string, n)
		for i := range placement {
			placement[i] = []string{"n1"}
		}
		st = applyOK(t, st, Command{ScaleStep: &ScaleStepCmd{StreamID: s.ID, Splits: splits, Merges: merges, Placement: placement}})
		if n == 0 {
			return st, step
		}
		s = st.Streams[name]
		if s.Status != StreamUpdating {
			t.Fatalf("step %d: status %s", step, s.Status)
		}
		coverCheck(t, s)
		var ends []ShardEnd
		for _, p := range s.PendingParents() {
			ends = append(ends, ShardEnd{Index: p.Index, EndOffset: 1})
		}
		st = applyOK(t, st, Command{ShardsSwitched: &ShardsSwitchedCmd{StreamID: s.ID, Ends: ends}})
		if s := st.Streams[name]; s.Status != StreamUpdating {
			t.Fatalf("after switch %d: status %s, want UPDATING until the target is reached", step, s.Status)
		}
	}
	t.Fatal("scaling did not finish in 20 steps")
	return st, 0
}

// checkEven fails unless the open shards are exactly EvenRanges(n) and every
// shard obeys Kinesis lineage (a split child one parent, a merge child two).
func checkEven(t *testing.T, s *Stream, n int) {
	t.Helper()
	want, _ := EvenRanges(n)
	open := s.sortedOpenShards()
	if len(open) != n {
		t.Fatalf("%d open shards, want %d", len(open), n)
	}
	for i, sh := range open {
		r := sh.HashRange()
		if r.Start.Cmp(want[i].Start) != 0 || r.End.Cmp(want[i].End) != 0 {
			t.Errorf("open shard %d is [%s, %s], want [%s, %s]", i, r.Start, r.End, want[i].Start, want[i].End)
		}
	}
	for _, sh := range s.Shards {
		if sh.AdjacentParent != "" {
			a, _ := s.ShardByID(sh.Parent)
			b, _ := s.ShardByID(sh.AdjacentParent)
			if r, err := mergeRange(a, b); err != nil || r.Start.Cmp(sh.HashRange().Start) != 0 || r.End.Cmp(sh.HashRange().End) != 0 {
				t.Errorf("merge child %s does not cover its parents exactly", sh.ID())
			}
		}
	}
}

// Scaling 4 -> 8 -> 4 -> 6 -> 3 -> 5 on the state alone reaches the even ranges of
// each target, keeps the stream UPDATING between steps and ACTIVE at the
// end; out-of-range targets, equal counts and a scaling while UPDATING are
// refused and change nothing.
func TestScaleState(t *testing.T) {
	st := &State{Streams: map[string]*Stream{}}
	placement := [][]string{{"n1"}, {"n1"}, {"n1"}, {"n1"}}
	st = applyOK(t, st, Command{CreateStream: &CreateStreamCmd{Name: "s", ShardCount: 4, Mode: ModeProvisioned,
		RetentionHours: 24, Placement: placement}})
	for i := range 4 {
		st = applyOK(t, st, Command{ShardReady: &ShardReadyCmd{StreamID: st.Streams["s"].ID, ShardIndex: uint64(i)}})
	}
	for _, bad := range []struct {
		target int
		want   error
	}{{9, ErrShardCountLimit}, {1, ErrShardCountLimit}, {4, ErrInvalidCommand}, {0, ErrInvalidCommand}} {
		if got, err := st.apply(&Command{UpdateShardCount: &UpdateShardCountCmd{Name: "s", Target: bad.target}}); !errors.Is(err, bad.want) || got != st {
			t.Errorf("target %d: %v, want %v and no change", bad.target, err, bad.want)
		}
	}
	steps := map[int]int{}
	for _, target := range []int{8, 4, 6, 3, 5} {
		st = applyOK(t, st, Command{UpdateShardCount: &UpdateShardCountCmd{Name: "s", Target: target}})
		if s := st.Streams["s"]; s.Status != StreamUpdating || s.ScalingTarget != target {
			t.Fatalf("after UpdateShardCount(%d): %s target %d", target, s.Status, s.ScalingTarget)
		}
		if _, err := st.apply(&Command{UpdateShardCount: &UpdateShardCountCmd{Name: "s", Target: target}}); !errors.Is(err, ErrStreamInUse) {
			t.Errorf("second scaling while UPDATING: %v, want ErrStreamInUse", err)
		}
		if _, err := st.apply(&Command{SplitShard: &SplitShardCmd{Name: "s", Shard: st.Streams["s"].sortedOpenShards()[0].ID(),
			NewStartingHashKey: "1", Placement: [][]string{{"n1"}, {"n1"}}}}); !errors.Is(err, ErrStreamInUse) {
			t.Errorf("user split while scaling: %v, want ErrStreamInUse", err)
		}
		st, steps[target] = runScaling(t, st, "s")
		s := st.Streams["s"]
		if s.Status != StreamActive || s.ScalingTarget != 0 {
			t.Fatalf("after scaling to %d: %s target %d", target, s.Status, s.ScalingTarget)
		}
		checkEven(t, s, target)
	}
	t.Logf("steps per scaling: %v", steps)
}
