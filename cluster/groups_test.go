package cluster

import (
	"errors"
	"fmt"
	"io"
	"testing"
	"time"
)

// groupState builds a state with one stream of n shards and a group on it.
func groupState(t *testing.T, n int) *State {
	t.Helper()
	st := &State{Streams: map[string]*Stream{}}
	placement := make([][]string, n)
	st, err := st.apply(&Command{CreateStream: &CreateStreamCmd{Name: "s", ShardCount: n, Mode: ModeProvisioned, RetentionHours: 24, Placement: placement}})
	if err != nil {
		t.Fatal(err)
	}
	st, err = st.apply(&Command{CreateGroup: &CreateGroupCmd{Name: "g", Stream: "s", LeaseDuration: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func applyPlan(t *testing.T, st *State, live []string, expired bool) (*State, []LeaseChange) {
	t.Helper()
	g := st.Groups["g"]
	changes := planLeases(g, st.Streams["s"], live, func(string) bool { return expired })
	if len(changes) == 0 {
		return st, nil
	}
	next, err := st.apply(&Command{AssignLeases: &AssignLeasesCmd{Group: "g", Changes: changes}})
	if err != nil {
		t.Fatal(err)
	}
	return next, changes
}

func owners(st *State) map[string]int {
	n := map[string]int{}
	for _, l := range st.Groups["g"].Leases {
		n[l.Owner]++
	}
	return n
}

// TestPlanLeasesBalances checks the assignment: even shares, leases of a
// gone worker move at once, a live worker's surplus is handed over (not
// taken) until the handover expires, and a balanced group moves nothing.
func TestPlanLeasesBalances(t *testing.T) {
	st := groupState(t, 8)
	st, _ = applyPlan(t, st, []string{"a", "b", "c"}, false)
	if got := fmt.Sprint(owners(st)); got != "map[a:3 b:3 c:2]" {
		t.Fatalf("three workers on 8 shards: %s", got)
	}
	if _, ch := applyPlan(t, st, []string{"a", "b", "c"}, false); len(ch) != 0 {
		t.Fatalf("a balanced group changed: %+v", ch)
	}
	// c is gone: its two shards go to a and b at once.
	st, _ = applyPlan(t, st, []string{"a", "b"}, false)
	if got := fmt.Sprint(owners(st)); got != "map[a:4 b:4]" {
		t.Fatalf("after c left: %s", got)
	}
	// d joins: two shards are handed over, still owned by a and b.
	st, ch := applyPlan(t, st, []string{"a", "b", "d"}, false)
	if len(ch) != 2 || !ch[0].Handover || ch[0].Owner != "d" {
		t.Fatalf("join: %+v", ch)
	}
	if got := fmt.Sprint(owners(st)); got != "map[a:4 b:4]" {
		t.Fatalf("handover took leases before release: %s", got)
	}
	// One is released by its owner; the other owner ignores it until the
	// handover expires.
	var released string
	for id, l := range st.Groups["g"].Leases {
		if l.HandoverTo == "d" {
			next, err := st.apply(&Command{ReleaseLeases: &ReleaseLeasesCmd{Group: "g", Worker: l.Owner, Leases: []LeaseRef{{id, l.Counter}}}})
			if err != nil {
				t.Fatal(err)
			}
			st, released = next, id
			break
		}
	}
	if l := st.Groups["g"].Leases[released]; l.Owner != "d" || l.HandoverTo != "" {
		t.Fatalf("released lease: %+v", l)
	}
	if _, ch := applyPlan(t, st, []string{"a", "b", "d"}, false); len(ch) != 0 {
		t.Fatalf("unexpired handover changed again: %+v", ch)
	}
	st, _ = applyPlan(t, st, []string{"a", "b", "d"}, true)
	if got := fmt.Sprint(owners(st)); got != "map[a:3 b:3 d:2]" {
		t.Fatalf("after expiry: %s", got)
	}
}

// TestGroupCheckpointFencing checks that only the holder with the current
// counter checkpoints, and that SHARD_END unlocks a split's children.
func TestGroupCheckpointFencing(t *testing.T) {
	st := groupState(t, 1)
	st, _ = applyPlan(t, st, []string{"a"}, false)
	l := *st.Groups["g"].Leases[ShardID(0)]
	seq := "5"
	if _, err := st.apply(&Command{GroupCheckpoint: &GroupCheckpointCmd{Group: "g", Shard: ShardID(0), Worker: "a", Counter: l.Counter, Sequence: seq}}); err != nil {
		t.Fatalf("holder checkpoint: %v", err)
	}
	// a stops heartbeating: b takes the lease with a new counter.
	st, _ = applyPlan(t, st, []string{"b"}, false)
	_, err := st.apply(&Command{GroupCheckpoint: &GroupCheckpointCmd{Group: "g", Shard: ShardID(0), Worker: "a", Counter: l.Counter, Sequence: seq}})
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("stale holder checkpoint: %v, want ErrLeaseLost", err)
	}
	nl := st.Groups["g"].Leases[ShardID(0)]
	if nl.Owner != "b" || nl.Counter <= l.Counter {
		t.Fatalf("taken lease %+v, old %+v", nl, l)
	}
	_, err = st.apply(&Command{GroupCheckpoint: &GroupCheckpointCmd{Group: "g", Shard: ShardID(0), Worker: "b", Counter: nl.Counter, Sequence: ShardEndCheckpoint}})
	if !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("SHARD_END of an open shard: %v", err)
	}
}

// TestGroupsSurviveSnapshot checks that leases, checkpoints and the lease
// counter sequence are in the metadata snapshot: a replica restored from it
// fences exactly as the one that took it, and never grants a counter again.
func TestGroupsSurviveSnapshot(t *testing.T) {
	st := groupState(t, 2)
	st, _ = applyPlan(t, st, []string{"a"}, false)
	l := *st.Groups["g"].Leases[ShardID(0)]
	st, err := st.apply(&Command{GroupCheckpoint: &GroupCheckpointCmd{Group: "g", Shard: ShardID(0), Worker: "a", Counter: l.Counter, Sequence: "3"}})
	if err != nil {
		t.Fatal(err)
	}
	f := newMetaFSM()
	f.publish(st, 1)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink bufferSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	g := newMetaFSM()
	if err := g.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	restored := g.current()
	if got := restored.Groups["g"].Leases[ShardID(0)]; got.Owner != "a" || got.Checkpoint != "3" || got.Counter != l.Counter {
		t.Fatalf("restored lease %+v", got)
	}
	if restored.LeaseCounter != st.LeaseCounter || restored.Groups["g"].LeaseDuration != time.Second {
		t.Fatalf("restored counter %d (want %d), group %+v", restored.LeaseCounter, st.LeaseCounter, restored.Groups["g"])
	}
	_, err = restored.apply(&Command{GroupCheckpoint: &GroupCheckpointCmd{Group: "g", Shard: ShardID(0), Worker: "b", Counter: l.Counter, Sequence: "4"}})
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("checkpoint by a non-holder after restore: %v", err)
	}
}
