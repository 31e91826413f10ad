package cluster

import (
	"fmt"
	"slices"
	"testing"
)

// TestPlaceReplicasSpreadsReplicasAndLeaders checks that placement puts rf
// distinct nodes on every shard, gives every node an even share of
// replicas, and rotates the preferred leader (the first replica) evenly.
func TestPlaceReplicasSpreadsReplicasAndLeaders(t *testing.T) {
	cases := []struct{ nodes, shards, rf int }{
		{1, 4, 3}, {3, 6, 3}, {3, 7, 3}, {4, 8, 3}, {5, 10, 3}, {5, 7, 3}, {2, 5, 3},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%dnodes_%dshards", c.nodes, c.shards), func(t *testing.T) {
			var nodes []string
			for i := 0; i < c.nodes; i++ {
				nodes = append(nodes, fmt.Sprintf("n%d", i+1))
			}
			got := PlaceReplicas(nodes, Load{}, c.shards, c.rf)
			replicas, leaders := map[string]int{}, map[string]int{}
			for _, r := range got {
				if len(r) != min(c.rf, c.nodes) {
					t.Fatalf("shard with %d replicas: %v", len(r), r)
				}
				seen := map[string]bool{}
				for _, n := range r {
					if seen[n] {
						t.Fatalf("node %s twice in %v", n, r)
					}
					seen[n] = true
					replicas[n]++
				}
				leaders[r[0]]++
			}
			spread := func(m map[string]int) int {
				lo, hi := 1<<30, 0
				for _, n := range nodes {
					lo, hi = min(lo, m[n]), max(hi, m[n])
				}
				return hi - lo
			}
			if d := spread(replicas); d > 1 {
				t.Errorf("replicas uneven by %d: %v", d, replicas)
			}
			if d := spread(leaders); d > 1 {
				t.Errorf("preferred leaders uneven by %d: %v", d, leaders)
			}
		})
	}
	// Existing load is taken into account: a new node gets the new shards.
	got := PlaceReplicas([]string{"n1", "n2", "n3", "n4"}, Load{Replicas: map[string]int{"n1": 5, "n2": 5, "n3": 5}}, 1, 3)
	if got[0][0] != "n4" {
		t.Errorf("least loaded node not first: %v", got[0])
	}
}

// TestPlaceFillsFromAbsentNodes: a shard placed while a node is down keeps
// three replicas, the absent node among them but never as the preferred
// leader; with enough live nodes the absent ones are not used; a cluster
// that never had three nodes places on what it has.
func TestPlaceFillsFromAbsentNodes(t *testing.T) {
	got := placeFilling([]string{"n1", "n3"}, []string{"n2"}, Load{}, 4)
	for i, r := range got {
		if len(r) != 3 || !slices.Contains(r, "n2") || r[0] == "n2" {
			t.Fatalf("shard %d placed on %v, want n1, n3 and n2, n2 not first", i, r)
		}
	}
	got = placeFilling([]string{"n1", "n3", "n4"}, []string{"n2"}, Load{}, 4)
	for i, r := range got {
		if len(r) != 3 || slices.Contains(r, "n2") {
			t.Fatalf("shard %d placed on %v with three live nodes, want the absent n2 left out", i, r)
		}
	}
	got = placeFilling([]string{"n1"}, []string{"n2", "n3"}, Load{}, 1)
	if len(got[0]) != 3 || got[0][0] != "n1" {
		t.Fatalf("one live node of three: placed on %v, want n1 first and both absent nodes", got[0])
	}
	if got := placeFilling([]string{"n1", "n2"}, nil, Load{}, 2); len(got[0]) != 2 || len(got[1]) != 2 {
		t.Fatalf("a two-node cluster: placed on %v, want both nodes", got)
	}
}
