//go:build fault

package fault

import (
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"sort"
	"time"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// maxOpenShards bounds the stream's open shards under repeated splits;
// at the bound a reshard merges, with two it splits.
const maxOpenShards = 8

// reshardTimeout bounds one reshard's attempts, through node after node:
// during a fault some nodes cannot answer.
const reshardTimeout = 30 * time.Second

// openShard is an open shard and its hash key range.
type openShard struct {
	id         string
	start, end *big.Int
}

// openShards lists the stream's open shards by their first hash key.
func openShards(shards []*rifflev1.Shard) []openShard {
	var out []openShard
	for _, s := range shards {
		if s.GetSequenceNumberRange().GetEndingSequenceNumber() != "" {
			continue // closed
		}
		start, ok1 := new(big.Int).SetString(s.GetHashKeyRange().GetStartingHashKey(), 10)
		end, ok2 := new(big.Int).SetString(s.GetHashKeyRange().GetEndingHashKey(), 10)
		if ok1 && ok2 {
			out = append(out, openShard{s.GetShardId(), start, end})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start.Cmp(out[j].start) < 0 })
	return out
}

// reshard splits a random open shard at a random hash key, or merges two
// adjacent open shards, through the public API of one node after another
// until one accepts (a stream still UPDATING from the last reshard is
// ResourceInUse, and a node cut off or down fails), and says what it did.
func (w *workload) reshard(ctx context.Context, rng *rand.Rand) (string, error) {
	nodes := nodeNames()
	attempt := rng.IntN(len(nodes))
	var what string
	err := waitFor(ctx, reshardTimeout, func() error {
		node := nodes[attempt%len(nodes)]
		attempt++
		streams := w.clients[node].Streams()
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		list, err := streams.ListShards(cctx, &rifflev1.ListShardsRequest{StreamName: w.stream})
		if err != nil {
			return fmt.Errorf("ListShards via %s: %w", node, err)
		}
		open := openShards(list.GetShards())
		if len(open) >= 2 && (len(open) >= maxOpenShards || rng.IntN(2) == 0) {
			var adjacent []int
			for i := 0; i+1 < len(open); i++ {
				if new(big.Int).Add(open[i].end, big.NewInt(1)).Cmp(open[i+1].start) == 0 {
					adjacent = append(adjacent, i)
				}
			}
			if len(adjacent) > 0 && len(open) > 2 {
				i := adjacent[rng.IntN(len(adjacent))]
				what = fmt.Sprintf("merge %s+%s via %s", open[i].id, open[i+1].id, node)
				_, err := streams.MergeShards(cctx, &rifflev1.MergeShardsRequest{StreamName: w.stream,
					ShardToMerge: open[i].id, AdjacentShardToMerge: open[i+1].id})
				return wrapIf(err, what)
			}
		}
		var splittable []openShard
		for _, s := range open {
			if new(big.Int).Sub(s.end, s.start).Cmp(big.NewInt(1)) >= 0 {
				splittable = append(splittable, s)
			}
		}
		if len(splittable) == 0 {
			return fmt.Errorf("no open shard to split among %d", len(open))
		}
		s := splittable[rng.IntN(len(splittable))]
		// A key in (start, end]: start + 1 + r mod (end - start).
		r := new(big.Int).Lsh(new(big.Int).SetUint64(rng.Uint64()), 64)
		r.Or(r, new(big.Int).SetUint64(rng.Uint64()))
		key := r.Mod(r, new(big.Int).Sub(s.end, s.start))
		key.Add(key, s.start).Add(key, big.NewInt(1))
		what = fmt.Sprintf("split %s at %s via %s", s.id, key, node)
		_, err = streams.SplitShard(cctx, &rifflev1.SplitShardRequest{StreamName: w.stream,
			ShardToSplit: s.id, NewStartingHashKey: key.String()})
		return wrapIf(err, what)
	})
	return what, err
}

func wrapIf(err error, what string) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
