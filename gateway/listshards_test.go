package gateway

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// lineage is a stream created at t0 whose shard 0 split at t1 into 1 and
// 2, which merged at t2 into 3, now being split into the pending 4 and 5.
func lineage(t0, t1, t2 time.Time) *cluster.Stream {
	id := cluster.ShardID
	return &cluster.Stream{Name: "s", CreatedAt: t0, RetentionHours: 24, Shards: []*cluster.Shard{
		{Index: 0, OpenedAt: t0, ClosedAt: t1, EndingSequence: "9"},
		{Index: 1, Parent: id(0), OpenedAt: t1, ClosedAt: t2, EndingSequence: "9"},
		{Index: 2, Parent: id(0), OpenedAt: t1, ClosedAt: t2, EndingSequence: "9"},
		{Index: 3, Parent: id(1), AdjacentParent: id(2), OpenedAt: t2},
		{Index: 4, Parent: id(3), Pending: true},
		{Index: 5, Parent: id(3), Pending: true},
	}}
}

// Each filter selects the shards Kinesis's ShardFilter documents, pending
// children never appear, and shards closed longer ago than the retention
// are gone (which moves the trim horizon to their children).
func TestFilterShards(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000).UTC()
	t1, t2 := t0.Add(time.Hour), t0.Add(2*time.Hour)
	st := lineage(t0, t1, t2)
	soon := t2.Add(time.Minute)                 // nothing expired
	later := t1.Add(24*time.Hour + time.Second) // shard 0 expired
	latest := t2.Add(25 * time.Hour)            // 0, 1 and 2 expired
	type F = rifflev1.ShardFilterType
	const (
		after  = rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AFTER_SHARD_ID
		atTrim = rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TRIM_HORIZON
		frTrim = rifflev1.ShardFilterType_SHARD_FILTER_TYPE_FROM_TRIM_HORIZON
		atLast = rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_LATEST
		atTime = rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TIMESTAMP
		frTime = rifflev1.ShardFilterType_SHARD_FILTER_TYPE_FROM_TIMESTAMP
	)
	tests := []struct {
		name string
		typ  F
		at   time.Time
		now  time.Time
		want []uint64
	}{
		{"no filter", 0, time.Time{}, soon, []uint64{0, 1, 2, 3}},
		{"from trim horizon", frTrim, time.Time{}, soon, []uint64{0, 1, 2, 3}},
		{"after shard id (bound applied when paging)", after, time.Time{}, soon, []uint64{0, 1, 2, 3}},
		{"at trim horizon", atTrim, time.Time{}, soon, []uint64{0}},
		{"at latest", atLast, time.Time{}, soon, []uint64{3}},
		{"at timestamp before the stream", atTime, t0.Add(-time.Second), soon, nil},
		{"at timestamp of creation", atTime, t0, soon, []uint64{0}},
		{"at timestamp before the split", atTime, t1.Add(-time.Millisecond), soon, []uint64{0}},
		{"at timestamp of the split: both sides, as Kinesis's inclusive bounds", atTime, t1, soon, []uint64{0, 1, 2}},
		{"at timestamp between", atTime, t1.Add(30 * time.Minute), soon, []uint64{1, 2}},
		{"at timestamp after the merge", atTime, t2.Add(time.Millisecond), soon, []uint64{3}},
		{"from timestamp before the split", frTime, t1.Add(-time.Millisecond), soon, []uint64{0, 1, 2, 3}},
		{"from timestamp between", frTime, t1.Add(30 * time.Minute), soon, []uint64{1, 2, 3}},
		{"from timestamp after the merge", frTime, t2.Add(time.Millisecond), soon, []uint64{3}},
		{"from trim horizon, root expired", frTrim, time.Time{}, later, []uint64{1, 2, 3}},
		{"at trim horizon, root expired", atTrim, time.Time{}, later, []uint64{1, 2}},
		{"from timestamp before the trim horizon", frTime, t0, later, []uint64{1, 2, 3}},
		{"at timestamp in expired history", atTime, t0, later, nil},
		{"at trim horizon, all closed expired", atTrim, time.Time{}, latest, []uint64{3}},
		{"from trim horizon, all closed expired", frTrim, time.Time{}, latest, []uint64{3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint64
			for _, sh := range filterShards(st, shardFilter{typ: tt.typ, at: tt.at}, tt.now) {
				got = append(got, sh.Index)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got shards %v, want %v", got, tt.want)
			}
		})
	}
}

// A filter is refused as Kinesis refuses it: a type is required, shard_id
// goes with AFTER_SHARD_ID only, timestamp with the timestamp types only.
func TestParseShardFilter(t *testing.T) {
	ts := timestamppb.New(time.UnixMilli(1_700_000_000_000))
	tests := []struct {
		name      string
		f         *rifflev1.ShardFilter
		exception string // empty: accepted
	}{
		{"absent", nil, ""},
		{"no type", &rifflev1.ShardFilter{}, Validation},
		{"unknown type", &rifflev1.ShardFilter{Type: 42}, Validation},
		{"after shard id", &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AFTER_SHARD_ID, ShardId: "shardId-000000000001"}, ""},
		{"after shard id without one", &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AFTER_SHARD_ID}, InvalidArgument},
		{"after a malformed shard id", &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AFTER_SHARD_ID, ShardId: "7"}, Validation},
		{"after shard id with a timestamp", &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AFTER_SHARD_ID, ShardId: "shardId-000000000001", Timestamp: ts}, InvalidArgument},
		{"at latest", &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_LATEST}, ""},
		{"at latest with a shard id", &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_LATEST, ShardId: "shardId-000000000001"}, InvalidArgument},
		{"at trim horizon with a timestamp", &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TRIM_HORIZON, Timestamp: ts}, InvalidArgument},
		{"from trim horizon with a timestamp", &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_FROM_TRIM_HORIZON, Timestamp: ts}, InvalidArgument},
		{"at timestamp", &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TIMESTAMP, Timestamp: ts}, ""},
		{"at timestamp without one", &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TIMESTAMP}, InvalidArgument},
		{"from timestamp without one", &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_FROM_TIMESTAMP}, InvalidArgument},
		{"from timestamp out of range", &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_FROM_TIMESTAMP, Timestamp: &timestamppb.Timestamp{Nanos: -1}}, Validation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, verr := parseShardFilter(tt.f)
			got := ""
			if verr != nil {
				got = verr.Exception
			}
			if got != tt.exception {
				t.Errorf("got %q (%v), want %q", got, verr, tt.exception)
			}
		})
	}
}
