package cluster

import "sort"

// Load counts, per node, the shard replicas it holds and how many of them
// list it first (its preferred leaderships).
type Load struct {
	Replicas map[string]int
	Leaders  map[string]int
}

// PlaceReplicas chooses rf nodes for each of n new shards so that replicas
// and preferred leaderships (the first replica) both spread evenly over
// nodes, counting what they already hold. load is updated in place.
func PlaceReplicas(nodes []string, load Load, n, rf int) [][]string {
	rf = min(rf, len(nodes))
	if load.Replicas == nil {
		load.Replicas = map[string]int{}
	}
	if load.Leaders == nil {
		load.Leaders = map[string]int{}
	}
	out := make([][]string, n)
	for i := range out {
		// The preferred leader first: fewest leaderships, then fewest
		// replicas; the others by fewest replicas.
		order := append([]string(nil), nodes...)
		sort.SliceStable(order, func(a, b int) bool {
			x, y := order[a], order[b]
			if load.Leaders[x] != load.Leaders[y] {
				return load.Leaders[x] < load.Leaders[y]
			}
			if load.Replicas[x] != load.Replicas[y] {
				return load.Replicas[x] < load.Replicas[y]
			}
			return x < y
		})
		rest := order[1:]
		sort.SliceStable(rest, func(a, b int) bool {
			x, y := rest[a], rest[b]
			if load.Replicas[x] != load.Replicas[y] {
				return load.Replicas[x] < load.Replicas[y]
			}
			return x < y
		})
		replicas := append([]string(nil), order[:rf]...)
		out[i] = replicas
		for _, id := range replicas {
			load.Replicas[id]++
		}
		load.Leaders[replicas[0]]++
	}
	return out
}

// Load counts the replicas and preferred leaderships each node holds.
func (st *State) Load() Load {
	l := Load{Replicas: map[string]int{}, Leaders: map[string]int{}}
	for _, s := range st.Streams {
		for _, sh := range s.Shards {
			for _, n := range sh.Replicas {
				l.Replicas[n]++
			}
			if len(sh.Replicas) > 0 {
				l.Leaders[sh.Replicas[0]]++
			}
		}
	}
	return l
}
