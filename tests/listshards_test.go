package tests

import (
	"context"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/riffle-streams/riffle/node"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// listShardIDs pages through ListShards from first, continuing with
// next_token alone, and returns the ids in order; pages counts the calls.
func listShardIDs(t *testing.T, c rifflev1.StreamsClient, first *rifflev1.ListShardsRequest) (ids []string, pages int) {
	t.Helper()
	req := first
	for {
		out, err := c.ListShards(context.Background(), req)
		if err != nil {
			t.Fatalf("ListShards %v: %v", req, err)
		}
		pages++
		if max := req.MaxResults; max > 0 && len(out.Shards) > int(max) {
			t.Errorf("page of %d shards, max_results %d", len(out.Shards), max)
		}
		for _, sh := range out.Shards {
			ids = append(ids, sh.ShardId)
		}
		if out.NextToken == "" {
			return ids, pages
		}
		req = &rifflev1.ListShardsRequest{NextToken: out.NextToken, MaxResults: first.MaxResults}
	}
}

// waitLatest waits until the open shards are want: the switch of a
// resharding has happened.
func waitLatest(t *testing.T, c rifflev1.StreamsClient, stream string, want []string) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprint("open shards ", want), func() error {
		out, err := c.ListShards(context.Background(), &rifflev1.ListShardsRequest{StreamName: stream,
			ShardFilter: &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_LATEST}})
		if err != nil {
			return err
		}
		var got []string
		for _, sh := range out.Shards {
			got = append(got, sh.ShardId)
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("open shards %v", got)
		}
		return nil
	})
	waitActive(t, c, stream)
}

// TestListShardsFilters checks ListShards's ShardFilter types against a
// lineage made by SplitShard then MergeShards, with client-side timestamps
// taken between the steps: every type returns exactly the shards Kinesis
// documents; paging one shard at a time through a filtered listing, with
// next_token alone, returns the same shards; and malformed filters are
// refused with Kinesis's exceptions and change nothing.
func TestListShardsFilters(t *testing.T) {
	n := singleNode(t, node.Config{DataDir: tempDataDir(t)})
	c := n.client
	ctx := context.Background()
	const stream = "lineage"

	// Times are compared in milliseconds, as the broker records them; each
	// step (a child's election at least) takes far longer than that.
	now := func() time.Time { return time.Now().Truncate(time.Millisecond) }
	beforeCreate := now().Add(-time.Second)
	createStream(t, c, stream, 2) // 0: [0, mid-1], 1: [mid, max]
	afterCreate := now()

	// Split shard 0 in the middle of its range: 2 and 3.
	ls, err := c.ListShards(ctx, &rifflev1.ListShardsRequest{StreamName: stream})
	if err != nil {
		t.Fatal(err)
	}
	r0 := ls.Shards[0].HashKeyRange
	lo, _ := new(big.Int).SetString(r0.StartingHashKey, 10)
	hi, _ := new(big.Int).SetString(r0.EndingHashKey, 10)
	key := new(big.Int).Rsh(new(big.Int).Add(lo, hi), 1)
	if _, err := c.SplitShard(ctx, &rifflev1.SplitShardRequest{StreamName: stream, ShardToSplit: shardID(0), NewStartingHashKey: key.String()}); err != nil {
		t.Fatalf("SplitShard: %v", err)
	}
	waitLatest(t, c, stream, []string{shardID(1), shardID(2), shardID(3)})
	afterSplit := now()

	// Merge 3 (the upper half of 0) with 1: child 4.
	if _, err := c.MergeShards(ctx, &rifflev1.MergeShardsRequest{StreamName: stream, ShardToMerge: shardID(3), AdjacentShardToMerge: shardID(1)}); err != nil {
		t.Fatalf("MergeShards: %v", err)
	}
	waitLatest(t, c, stream, []string{shardID(2), shardID(4)})
	afterMerge := now()

	ids := func(is ...int) []string {
		out := []string{}
		for _, i := range is {
			out = append(out, shardID(i))
		}
		return out
	}
	filter := func(typ rifflev1.ShardFilterType, at time.Time, shard string) *rifflev1.ShardFilter {
		f := &rifflev1.ShardFilter{Type: typ, ShardId: shard}
		if !at.IsZero() {
			f.Timestamp = timestamppb.New(at)
		}
		return f
	}
	const (
		afterID = rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AFTER_SHARD_ID
		atTrim  = rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TRIM_HORIZON
		frTrim  = rifflev1.ShardFilterType_SHARD_FILTER_TYPE_FROM_TRIM_HORIZON
		atLast  = rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_LATEST
		atTime  = rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TIMESTAMP
		frTime  = rifflev1.ShardFilterType_SHARD_FILTER_TYPE_FROM_TIMESTAMP
	)
	var none time.Time
	tests := []struct {
		name string
		f    *rifflev1.ShardFilter
		want []string
	}{
		{"no filter", nil, ids(0, 1, 2, 3, 4)},
		{"FROM_TRIM_HORIZON", filter(frTrim, none, ""), ids(0, 1, 2, 3, 4)},
		{"AFTER_SHARD_ID 1", filter(afterID, none, shardID(1)), ids(2, 3, 4)},
		{"AT_TRIM_HORIZON", filter(atTrim, none, ""), ids(0, 1)},
		{"AT_LATEST", filter(atLast, none, ""), ids(2, 4)},
		{"AT_TIMESTAMP before the stream", filter(atTime, beforeCreate, ""), ids()},
		{"AT_TIMESTAMP after the creation", filter(atTime, afterCreate, ""), ids(0, 1)},
		{"AT_TIMESTAMP after the split", filter(atTime, afterSplit, ""), ids(1, 2, 3)},
		{"AT_TIMESTAMP after the merge", filter(atTime, afterMerge, ""), ids(2, 4)},
		{"FROM_TIMESTAMP before the stream", filter(frTime, beforeCreate, ""), ids(0, 1, 2, 3, 4)},
		{"FROM_TIMESTAMP after the creation", filter(frTime, afterCreate, ""), ids(0, 1, 2, 3, 4)},
		{"FROM_TIMESTAMP after the split", filter(frTime, afterSplit, ""), ids(1, 2, 3, 4)},
		{"FROM_TIMESTAMP after the merge", filter(frTime, afterMerge, ""), ids(2, 4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := listShardIDs(t, c, &rifflev1.ListShardsRequest{StreamName: stream, ShardFilter: tt.f})
			if !slices.Equal(got, tt.want) {
				t.Errorf("listed %v, want %v", got, tt.want)
			}
			paged, pages := listShardIDs(t, c, &rifflev1.ListShardsRequest{StreamName: stream, ShardFilter: tt.f, MaxResults: 1})
			if !slices.Equal(paged, tt.want) || pages < len(tt.want) {
				t.Errorf("one at a time: listed %v in %d pages, want %v", paged, pages, tt.want)
			}
		})
	}
	// exclusive_start_shard_id bounds a filtered listing too.
	got, _ := listShardIDs(t, c, &rifflev1.ListShardsRequest{StreamName: stream, ExclusiveStartShardId: shardID(2), ShardFilter: filter(atLast, none, "")})
	if want := ids(4); !slices.Equal(got, want) {
		t.Errorf("AT_LATEST after %s: %v, want %v", shardID(2), got, want)
	}

	// Refusals.
	page, err := c.ListShards(ctx, &rifflev1.ListShardsRequest{StreamName: stream, MaxResults: 1, ShardFilter: filter(atLast, none, "")})
	if err != nil || page.NextToken == "" {
		t.Fatalf("first page: %v %v", page, err)
	}
	ts := timestamppb.New(afterSplit)
	bad := []struct {
		name      string
		req       *rifflev1.ListShardsRequest
		exception string
	}{
		{"filter without a type", &rifflev1.ListShardsRequest{StreamName: stream, ShardFilter: &rifflev1.ShardFilter{}}, "ValidationException"},
		{"AFTER_SHARD_ID without shard_id", &rifflev1.ListShardsRequest{StreamName: stream, ShardFilter: filter(afterID, none, "")}, "InvalidArgumentException"},
		{"AT_TIMESTAMP without timestamp", &rifflev1.ListShardsRequest{StreamName: stream, ShardFilter: filter(atTime, none, "")}, "InvalidArgumentException"},
		{"FROM_TIMESTAMP without timestamp", &rifflev1.ListShardsRequest{StreamName: stream, ShardFilter: filter(frTime, none, "")}, "InvalidArgumentException"},
		{"AT_LATEST with a timestamp", &rifflev1.ListShardsRequest{StreamName: stream, ShardFilter: &rifflev1.ShardFilter{Type: atLast, Timestamp: ts}}, "InvalidArgumentException"},
		{"AT_TRIM_HORIZON with a timestamp", &rifflev1.ListShardsRequest{StreamName: stream, ShardFilter: &rifflev1.ShardFilter{Type: atTrim, Timestamp: ts}}, "InvalidArgumentException"},
		{"AFTER_SHARD_ID with a timestamp", &rifflev1.ListShardsRequest{StreamName: stream, ShardFilter: &rifflev1.ShardFilter{Type: afterID, ShardId: shardID(1), Timestamp: ts}}, "InvalidArgumentException"},
		{"filter with next_token", &rifflev1.ListShardsRequest{NextToken: page.NextToken, ShardFilter: filter(atLast, none, "")}, "InvalidArgumentException"},
	}
	for _, b := range bad {
		_, err := c.ListShards(ctx, b.req)
		st, _ := status.FromError(err)
		if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), b.exception) {
			t.Errorf("%s: %v, want InvalidArgument %s", b.name, err, b.exception)
		}
	}
	// The refusals changed nothing: the listing and the stream are as before.
	if got, _ := listShardIDs(t, c, &rifflev1.ListShardsRequest{StreamName: stream}); !slices.Equal(got, ids(0, 1, 2, 3, 4)) {
		t.Errorf("after the refusals: %v", got)
	}
	if s := streamStatusOf(t, c, stream); s != rifflev1.StreamStatus_STREAM_STATUS_ACTIVE {
		t.Errorf("stream %v after the refusals", s)
	}
}
