package client

import (
	"context"
	"crypto/md5"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"google.golang.org/grpc"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// maxHashKey is 2^128-1, the top of the hash-key space.
var maxHashKey = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))

// PartitionHash is the hash key of a partition key, as the broker computes
// it: the MD5 of its UTF-8 bytes read as an unsigned big-endian 128-bit
// integer.
func PartitionHash(partitionKey string) *big.Int {
	sum := md5.Sum([]byte(partitionKey))
	return new(big.Int).SetBytes(sum[:])
}

// parseHashKey reads an explicit hash key: a decimal in [0, 2^128-1].
func parseHashKey(s string) (*big.Int, bool) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return nil, false
	}
	h, ok := new(big.Int).SetString(s, 10)
	if !ok || h.Cmp(maxHashKey) > 0 {
		return nil, false
	}
	return h, true
}

// shardMap routes hash keys to a stream's open shards. It only groups
// records for batching and ordering: the broker routes each record itself,
// so a stale map costs order across a reshard at worst, never a misplaced
// record.
type shardMap struct {
	ranges []shardRange // sorted by start, disjoint
}

type shardRange struct {
	id         string
	start, end *big.Int
}

// shardFor returns the open shard whose range holds hash.
func (m *shardMap) shardFor(hash *big.Int) (string, bool) {
	i, _ := slices.BinarySearchFunc(m.ranges, hash, func(r shardRange, h *big.Int) int {
		return r.start.Cmp(h)
	})
	// ranges[i] is the first range starting above hash, or at it.
	if i < len(m.ranges) && m.ranges[i].start.Cmp(hash) == 0 {
		return m.ranges[i].id, true
	}
	if i == 0 {
		return "", false
	}
	r := m.ranges[i-1]
	if hash.Cmp(r.end) <= 0 {
		return r.id, true
	}
	return "", false
}

// loadShardMap lists the open shards of stream.
func loadShardMap(ctx context.Context, c *Client, stream string, policy RetryPolicy) (*shardMap, error) {
	m := &shardMap{}
	req := &rifflev1.ListShardsRequest{
		StreamName:  stream,
		ShardFilter: &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_LATEST},
	}
	for {
		var resp *rifflev1.ListShardsResponse
		err := policy.Read(ctx, func(ctx context.Context, opts ...grpc.CallOption) error {
			var err error
			resp, err = c.Streams().ListShards(ctx, req, opts...)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("client: list shards of %s: %w", stream, err)
		}
		for _, sh := range resp.GetShards() {
			if sh.GetSequenceNumberRange().GetEndingSequenceNumber() != "" {
				continue // closed: takes no writes
			}
			start, ok1 := parseHashKey(sh.GetHashKeyRange().GetStartingHashKey())
			end, ok2 := parseHashKey(sh.GetHashKeyRange().GetEndingHashKey())
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("client: shard %s of %s has a malformed hash key range", sh.GetShardId(), stream)
			}
			m.ranges = append(m.ranges, shardRange{id: sh.GetShardId(), start: start, end: end})
		}
		if resp.GetNextToken() == "" {
			break
		}
		req = &rifflev1.ListShardsRequest{NextToken: resp.GetNextToken()}
	}
	if len(m.ranges) == 0 {
		return nil, fmt.Errorf("client: stream %s has no open shard", stream)
	}
	slices.SortFunc(m.ranges, func(a, b shardRange) int { return a.start.Cmp(b.start) })
	return m, nil
}
