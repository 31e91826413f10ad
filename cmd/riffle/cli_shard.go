package main

import (
	"context"
	"flag"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

var shardListCommand = &command{
	path:     "shard list",
	synopsis: "STREAM",
	summary:  "list a stream's shards, open and closed",
	details: `
Pages through ListShards. Prints the shard table of 'stream describe'
(--json: {"shards":[{...}]}).`,
	newVerb: func() verb { return &shardList{} },
}

type shardList struct {
	connFlags
	stream string
}

func (c *shardList) validate(_ *flag.FlagSet, args []string) (err error) {
	c.stream, err = exactlyOne(args, "stream name")
	return err
}

func (c *shardList) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	shards, err := listShards(ctx, &c.connFlags, cl.Streams(), c.stream)
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

// listShards pages through ListShards; a continuation carries only the
// token, as the API requires.
func listShards(ctx context.Context, cf *connFlags, streams rifflev1.StreamsClient, stream string) ([]*rifflev1.Shard, error) {
	var shards []*rifflev1.Shard
	req := &rifflev1.ListShardsRequest{StreamName: stream, MaxResults: listShardsPage}
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
