package main

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// shard list --filter parses into the ListShards filter it names, with
// --timestamp and --shard-id only where the filter takes them.
func TestShardListFilterFlags(t *testing.T) {
	unsetEnv(t, "RIFFLE_ADDR")
	at := time.UnixMilli(1767323045000)
	tests := []struct {
		args []string
		want *rifflev1.ShardFilter
	}{
		{[]string{"orders"}, nil},
		{[]string{"orders", "--filter", "at-latest"}, &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_LATEST}},
		{[]string{"--filter", "at-trim-horizon", "orders"}, &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TRIM_HORIZON}},
		{[]string{"orders", "--filter", "from-trim-horizon"}, &rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_FROM_TRIM_HORIZON}},
		{[]string{"orders", "--filter", "at-timestamp", "--timestamp", "1767323045000"},
			&rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TIMESTAMP, Timestamp: timestamppb.New(at)}},
		{[]string{"orders", "--filter", "from-timestamp", "--timestamp", "2026-01-02T03:04:05Z"},
			&rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_FROM_TIMESTAMP, Timestamp: timestamppb.New(at)}},
		{[]string{"orders", "--filter", "after-shard-id", "--shard-id", "shardId-000000000003"},
			&rifflev1.ShardFilter{Type: rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AFTER_SHARD_ID, ShardId: "shardId-000000000003"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cmd, rest, err := findCommand(append([]string{"shard", "list"}, tt.args...))
			if err != nil {
				t.Fatal(err)
			}
			v, err := parseVerb(cmd, rest)
			if err != nil {
				t.Fatal(err)
			}
			sl, ok := v.(*shardList)
			if !ok || sl.stream != "orders" {
				t.Fatalf("parsed %#v", v)
			}
			if got := sl.shardFilter(); !proto.Equal(got, tt.want) {
				t.Errorf("filter %v, want %v", got, tt.want)
			}
		})
	}
}

// Bad --filter combinations are usage errors (exit 2) naming the problem.
func TestShardListFilterUsageErrors(t *testing.T) {
	unsetEnv(t, "RIFFLE_ADDR")
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"orders", "--filter", "latest"}, `--filter "latest" is not one of`},
		{[]string{"orders", "--filter", "at-timestamp"}, "--filter at-timestamp needs --timestamp"},
		{[]string{"orders", "--filter", "from-timestamp"}, "--filter from-timestamp needs --timestamp"},
		{[]string{"orders", "--filter", "from-timestamp", "--timestamp", "noon"}, "neither RFC 3339"},
		{[]string{"orders", "--filter", "at-latest", "--timestamp", "1000"}, "--timestamp applies to --filter at-timestamp and from-timestamp"},
		{[]string{"orders", "--timestamp", "1000"}, "--timestamp applies to"},
		{[]string{"orders", "--filter", "after-shard-id"}, "--filter after-shard-id needs --shard-id"},
		{[]string{"orders", "--filter", "at-trim-horizon", "--shard-id", "shardId-000000000001"}, "--shard-id applies to --filter after-shard-id"},
		{[]string{"--filter", "at-latest"}, "missing stream name"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", append([]string{"shard", "list"}, tt.args...)...)
			if code != exitUsage || !strings.Contains(stderr, tt.wantErr) || stdout != "" {
				t.Errorf("exit %d, stderr %q, stdout %q; want exit %d and %q", code, stderr, stdout, exitUsage, tt.wantErr)
			}
		})
	}
}
