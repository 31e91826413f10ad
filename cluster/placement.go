package cluster

import "sort"

// PlaceReplicas chooses rf nodes for each of n new shards, spreading them so
// that every node holds as even a share as possible, counting the replicas
// it already holds (load maps node id to its current replica count).
func PlaceReplicas(nodes []string, load map[string]int, n, rf int) [][]string {
	rf = min(rf, len(nodes))
	count := make(map[string]int, len(nodes))
	for _, id := range nodes {
		count[id] = load[id]
	}
	out := make([][]string, n)
	for i := range out {
		order := append([]string(nil), nodes...)
		sort.SliceStable(order, func(a, b int) bool {
			if count[order[a]] != count[order[b]] {
				return count[order[a]] < count[order[b]]
			}
			return order[a] < order[b]
		})
		out[i] = append([]string(nil), order[:rf]...)
		for _, id := range out[i] {
			count[id]++
		}
	}
	return out
}

// ReplicaLoad counts how many shard replicas each node holds.
func (st *State) ReplicaLoad() map[string]int {
	load := map[string]int{}
	for _, s := range st.Streams {
		for _, sh := range s.Shards {
			for _, n := range sh.Replicas {
				load[n]++
			}
		}
	}
	return load
}
