package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

var shardListCommand = &command{
	path:     "shard list",
	synopsis: "STREAM [--filter F] [--timestamp T] [--shard-id ID]",
	summary:  "list a stream's shards, open and closed",
	details: `
Pages through ListShards. Prints the shard table of 'stream describe'
(--json: {"shards":[{...}]}). Without --filter it lists every shard still
holding retained records; --filter picks as Kinesis's ShardFilter does:
  at-latest          the open shards
  at-trim-horizon    the oldest retained generation, where a reader from
                     the trim horizon starts
  from-trim-horizon  every retained shard (the default)
  at-timestamp       the shards open at --timestamp
  from-timestamp     the shards open at --timestamp and every later one
  after-shard-id     the shards after --shard-id
--timestamp is RFC 3339 or unix milliseconds.`,
	newVerb: func() verb { return &shardList{} },
}

// shardFilters maps --filter to the API's filter types.
var shardFilters = map[string]rifflev1.ShardFilterType{
	"after-shard-id":    rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AFTER_SHARD_ID,
	"at-trim-horizon":   rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TRIM_HORIZON,
	"from-trim-horizon": rifflev1.ShardFilterType_SHARD_FILTER_TYPE_FROM_TRIM_HORIZON,
	"at-latest":         rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_LATEST,
	"at-timestamp":      rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TIMESTAMP,
	"from-timestamp":    rifflev1.ShardFilterType_SHARD_FILTER_TYPE_FROM_TIMESTAMP,
}

type shardList struct {
	connFlags
	stream    string
	filter    string
	timestamp string
	at        time.Time
	shardID   string
}

func (c *shardList) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	fs.StringVar(&c.filter, "filter", "", "which shards: at-latest, at-trim-horizon, from-trim-horizon, at-timestamp, from-timestamp or after-shard-id")
	fs.StringVar(&c.timestamp, "timestamp", "", "time for --filter at-timestamp and from-timestamp: RFC 3339 or unix milliseconds")
	fs.StringVar(&c.shardID, "shard-id", "", "shard id for --filter after-shard-id")
}

func (c *shardList) validate(fs *flag.FlagSet, args []string) (err error) {
	if c.stream, err = exactlyOne(args, "stream name"); err != nil {
		return err
	}
	typ, ok := shardFilters[c.filter]
	if c.filter != "" && !ok {
		return fmt.Errorf("--filter %q is not one of at-latest, at-trim-horizon, from-trim-horizon, at-timestamp, from-timestamp, after-shard-id", c.filter)
	}
	needsTime := typ == rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TIMESTAMP || typ == rifflev1.ShardFilterType_SHARD_FILTER_TYPE_FROM_TIMESTAMP
	needsShard := typ == rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AFTER_SHARD_ID
	switch {
	case needsTime && c.timestamp == "":
		return fmt.Errorf("--filter %s needs --timestamp", c.filter)
	case !needsTime && isSet(fs, "timestamp"):
		return errors.New("--timestamp applies to --filter at-timestamp and from-timestamp")
	case needsShard && c.shardID == "":
		return errors.New("--filter after-shard-id needs --shard-id")
	case !needsShard && isSet(fs, "shard-id"):
		return errors.New("--shard-id applies to --filter after-shard-id")
	}
	if needsTime {
		if c.at, err = parseTimestamp(c.timestamp); err != nil {
			return err
		}
	}
	return nil
}

// shardFilter is the request's filter; nil without --filter.
func (c *shardList) shardFilter() *rifflev1.ShardFilter {
	if c.filter == "" {
		return nil
	}
	f := &rifflev1.ShardFilter{Type: shardFilters[c.filter], ShardId: c.shardID}
	if !c.at.IsZero() {
		f.Timestamp = timestamppb.New(c.at)
	}
	return f
}

func (c *shardList) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	shards, err := listShardsFiltered(ctx, &c.connFlags, cl.Streams(), c.stream, c.shardFilter())
	if err != nil {
		return err
	}
	rows := make([]shardJSON, 0, len(shards))
	for _, sh := range shards {
		rows = append(rows, toShardJSON(sh))
	}
	if c.json {
		return writeJSON(std.out, map[string][]shardJSON{"shards": rows})
	}
	return writeShardTable(std.out, rows)
}

// listShardsPage is the page size asked of ListShards.
const listShardsPage = 1000

// listShards pages through every retained shard of a stream.
func listShards(ctx context.Context, cf *connFlags, streams rifflev1.StreamsClient, stream string) ([]*rifflev1.Shard, error) {
	return listShardsFiltered(ctx, cf, streams, stream, nil)
}

// listShardsFiltered pages through ListShards with filter (nil for none);
// a continuation carries only the token, which carries the filter, as the
// API requires.
func listShardsFiltered(ctx context.Context, cf *connFlags, streams rifflev1.StreamsClient, stream string, filter *rifflev1.ShardFilter) ([]*rifflev1.Shard, error) {
	var shards []*rifflev1.Shard
	req := &rifflev1.ListShardsRequest{StreamName: stream, MaxResults: listShardsPage, ShardFilter: filter}
	for {
		callCtx, cancel := cf.call(ctx)
		resp, err := streams.ListShards(callCtx, req)
		cancel()
		if err != nil {
			return nil, err
		}
		shards = append(shards, resp.GetShards()...)
		if resp.GetNextToken() == "" {
			return shards, nil
		}
		req = &rifflev1.ListShardsRequest{NextToken: resp.GetNextToken(), MaxResults: listShardsPage}
	}
}
