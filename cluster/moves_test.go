package cluster

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// movesState is a stream of n ready shards placed on nodes by PlaceReplicas.
func movesState(t *testing.T, nodes []string, shards int) *State {
	t.Helper()
	st := applyOK(t, &State{Streams: map[string]*Stream{}}, Command{CreateStream: &CreateStreamCmd{Name: "s", ShardCount: shards,
		Mode: ModeProvisioned, RetentionHours: 24, CreatedAt: time.Unix(1, 0),
		Placement: PlaceReplicas(nodes, Load{}, shards, 3)}})
	for i := range shards {
		st = applyOK(t, st, Command{ShardReady: &ShardReadyCmd{StreamID: 1, ShardIndex: uint64(i)}})
	}
	return st
}

// completeMoves applies every planned move as the cluster would: planned,
// caught up, done; then plans again, until nothing is left.
func completeMoves(t *testing.T, st *State, alive []string) (*State, int) {
	t.Helper()
	total := 0
	for round := 0; ; round++ {
		if round > 50 {
			t.Fatal("moves never settle")
		}
		plan := planRelocations(st, alive)
		if len(plan) == 0 {
			return st, total
		}
		perNode := map[string]int{}
		for _, cmd := range plan {
			perNode[cmd.From]++
			perNode[cmd.To]++
			if perNode[cmd.From] > maxMovesPerNode || perNode[cmd.To] > maxMovesPerNode {
				t.Fatalf("round %d: more than %d moves on a node: %+v", round, maxMovesPerNode, plan)
			}
			st = applyOK(t, st, Command{MoveReplica: &cmd})
		}
		for _, cmd := range plan {
			st = applyOK(t, st, Command{MoveCaughtUp: &MoveCaughtUpCmd{StreamID: cmd.StreamID, ShardIndex: cmd.ShardIndex, To: cmd.To}})
			st = applyOK(t, st, Command{MoveDone: &MoveDoneCmd{StreamID: cmd.StreamID, ShardIndex: cmd.ShardIndex, To: cmd.To}})
		}
		total += len(plan)
	}
}

func replicaCounts(st *State) map[string]int {
	return st.Load().Replicas
}

// TestPlanRelocationsBalancesNewNode checks that a node joining a cluster
// gets replicas until replicas per node differ by at most one, with every
// shard keeping three distinct replicas.
func TestPlanRelocationsBalancesNewNode(t *testing.T) {
	for _, c := range []struct{ before, after, shards int }{{3, 4, 6}, {3, 5, 6}, {3, 4, 1}, {4, 6, 10}} {
		t.Run(fmt.Sprintf("%d_to_%d_nodes_%d_shards", c.before, c.after, c.shards), func(t *testing.T) {
			var nodes []string
			for i := range c.after {
				nodes = append(nodes, fmt.Sprintf("n%d", i+1))
			}
			st := movesState(t, nodes[:c.before], c.shards)
			st, moves := completeMoves(t, st, nodes)
			counts := replicaCounts(st)
			lo, hi := 1<<30, 0
			for _, n := range nodes {
				lo, hi = min(lo, counts[n]), max(hi, counts[n])
			}
			if hi-lo > 1 {
				t.Errorf("unbalanced after %d moves: %v", moves, counts)
			}
			leaders := st.Load().Leaders
			lo, hi = 1<<30, 0
			for _, n := range nodes {
				lo, hi = min(lo, leaders[n]), max(hi, leaders[n])
			}
			if c.shards >= c.after && hi-lo > 1 {
				t.Errorf("preferred leaderships unbalanced: %v", leaders)
			}
			for _, sh := range st.Streams["s"].Shards {
				if len(sh.Replicas) != 3 || len(slices.Compact(slices.Sorted(slices.Values(sh.Replicas)))) != 3 {
					t.Errorf("%s replicas %v", sh.ID(), sh.Replicas)
				}
			}
		})
	}
}

// TestPlanRelocationsDrains checks that a draining node's replicas all
// leave, only onto nodes that are not draining, and that nothing moves
// while a replica holder is down.
func TestPlanRelocationsDrains(t *testing.T) {
	nodes := []string{"n1", "n2", "n3", "n4"}
	st := movesState(t, nodes, 6)
	st = applyOK(t, st, Command{SetDraining: &SetDrainingCmd{Node: "n2", Draining: true, Alive: nodes}})
	if got := planRelocations(st, []string{"n1", "n2", "n4"}); len(got) != 0 {
		// n3 is down: only drain moves of shards without n3 may go.
		for _, cmd := range got {
			sh := st.Streams["s"].Shards[cmd.ShardIndex]
			if slices.Contains(sh.Replicas, "n3") || cmd.Reason != MoveReasonDrain {
				t.Errorf("moved %s (%v) with n3 down: %+v", sh.ID(), sh.Replicas, cmd)
			}
		}
	}
	st, _ = completeMoves(t, st, nodes)
	counts := replicaCounts(st)
	if counts["n2"] != 0 {
		t.Errorf("n2 still holds %d replicas: %v", counts["n2"], counts)
	}
	if counts["n1"]+counts["n3"]+counts["n4"] != 18 || max(counts["n1"], counts["n3"], counts["n4"]) != 6 {
		t.Errorf("replicas after the drain: %v", counts)
	}
	// Undrained, it takes its share back.
	st = applyOK(t, st, Command{SetDraining: &SetDrainingCmd{Node: "n2", Draining: false}})
	st, _ = completeMoves(t, st, nodes)
	if c := replicaCounts(st); c["n2"] < 4 {
		t.Errorf("undrained n2 holds %d replicas: %v", c["n2"], c)
	}
}

// TestSetDrainingRefusals checks that a drain leaving too few nodes for the
// shards' replicas, or none, is refused and changes nothing.
func TestSetDrainingRefusals(t *testing.T) {
	nodes := []string{"n1", "n2", "n3"}
	st := movesState(t, nodes, 2)
	if _, err := st.apply(&Command{SetDraining: &SetDrainingCmd{Node: "n1", Draining: true, Alive: nodes}}); !errors.Is(err, ErrDrainRefused) || !errors.Is(err, ErrInvalidCommand) {
		t.Errorf("drain of 3 nodes with 3 replicas: %v", err)
	}
	four := append(nodes, "n4")
	st = applyOK(t, st, Command{SetDraining: &SetDrainingCmd{Node: "n1", Draining: true, Alive: four}})
	if _, err := st.apply(&Command{SetDraining: &SetDrainingCmd{Node: "n2", Draining: true, Alive: four}}); !errors.Is(err, ErrDrainRefused) {
		t.Errorf("second drain leaving 2 nodes for 3 replicas: %v", err)
	}
	empty := &State{Streams: map[string]*Stream{}}
	if _, err := empty.apply(&Command{SetDraining: &SetDrainingCmd{Node: "n1", Draining: true, Alive: []string{"n1"}}}); !errors.Is(err, ErrDrainRefused) {
		t.Errorf("drain of the last node: %v", err)
	}
	if !st.IsDraining("n1") || st.IsDraining("n2") {
		t.Errorf("draining %v", st.Draining)
	}
}

// TestCancelledMoveAborts checks the metadata side of a roll-back: a
// cancelled move is cleared by MoveAborted with the replicas unchanged, and
// a caught-up report after the cancel changes nothing.
func TestCancelledMoveAborts(t *testing.T) {
	st := movesState(t, []string{"n1", "n2", "n3"}, 1)
	before := slices.Clone(st.Streams["s"].Shards[0].Replicas)
	st = applyOK(t, st, Command{MoveReplica: &MoveReplicaCmd{StreamID: 1, ShardIndex: 0, From: "n1", To: "n4", Reason: MoveReasonBalance}})
	st = applyOK(t, st, Command{CancelMove: &CancelMoveCmd{StreamID: 1, ShardIndex: 0, To: "n4"}})
	if mv := st.Streams["s"].Shards[0].Moving; mv == nil || !mv.Cancel {
		t.Fatalf("moving %+v", mv)
	}
	st = applyOK(t, st, Command{MoveAborted: &MoveAbortedCmd{StreamID: 1, ShardIndex: 0, To: "n4"}})
	sh := st.Streams["s"].Shards[0]
	if sh.Moving != nil || !slices.Equal(sh.Replicas, before) {
		t.Errorf("after abort: moving %+v replicas %v, want %v", sh.Moving, sh.Replicas, before)
	}
}
