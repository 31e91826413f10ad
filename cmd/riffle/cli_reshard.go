package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"time"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

var shardSplitCommand = &command{
	path:     "shard split",
	synopsis: "--stream S --shard ID [--key HASHKEY] [--no-wait]",
	summary:  "split an open shard in two, wait until the stream is ACTIVE again",
	details: `
Calls SplitShard. The children are [start, HASHKEY-1] and [HASHKEY, end];
without --key, HASHKEY is the middle of the shard's range. Writes go on
during the split; the parent closes and stays readable. Prints the stream
with its shards once it is ACTIVE again (--timeout bounds the wait too).`,
	newVerb: func() verb { return &shardSplit{} },
}

type shardSplit struct {
	connFlags
	stream, shard, key string
	noWait             bool
	wait               time.Duration
}

func (c *shardSplit) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	fs.StringVar(&c.stream, "stream", "", "stream name")
	fs.StringVar(&c.shard, "shard", "", "id of the shard to split")
	fs.StringVar(&c.key, "key", "", "first hash key of the upper child, decimal (default: the middle of the range)")
	fs.BoolVar(&c.noWait, "no-wait", false, "return while the stream is still UPDATING")
}

func (c *shardSplit) validate(fs *flag.FlagSet, args []string) error {
	if err := noPositional(args); err != nil {
		return err
	}
	switch {
	case c.stream == "":
		return errors.New("--stream is required")
	case c.shard == "":
		return errors.New("--shard is required")
	}
	if c.key != "" {
		if k, ok := new(big.Int).SetString(c.key, 10); !ok || k.Sign() < 0 {
			return fmt.Errorf("--key %q is not a decimal hash key", c.key)
		}
	}
	c.wait = reshardWait(fs, c.timeout)
	return nil
}

func (c *shardSplit) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	streams := cl.Streams()
	key := c.key
	if key == "" {
		shards, err := listShards(ctx, &c.connFlags, streams, c.stream)
		if err != nil {
			return err
		}
		if key, err = middleKey(shards, c.shard); err != nil {
			return err
		}
	}
	callCtx, cancel := c.call(ctx)
	_, err = streams.SplitShard(callCtx, &rifflev1.SplitShardRequest{StreamName: c.stream, ShardToSplit: c.shard, NewStartingHashKey: key})
	cancel()
	if err != nil {
		return err
	}
	return finishReshard(ctx, &c.connFlags, streams, c.stream, c.noWait, c.wait, std)
}

var shardMergeCommand = &command{
	path:     "shard merge",
	synopsis: "--stream S --shard A --adjacent B [--no-wait]",
	summary:  "merge two open adjacent shards, wait until the stream is ACTIVE again",
	details: `
Calls MergeShards. The child covers both ranges and names A as its parent and
B as its adjacent parent. Writes go on during the merge; the parents close
and stay readable. Prints the stream with its shards once it is ACTIVE
again (--timeout bounds the wait too).`,
	newVerb: func() verb { return &shardMerge{} },
}

type shardMerge struct {
	connFlags
	stream, shard, adjacent string
	noWait                  bool
	wait                    time.Duration
}

func (c *shardMerge) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	fs.StringVar(&c.stream, "stream", "", "stream name")
	fs.StringVar(&c.shard, "shard", "", "id of the shard to merge")
	fs.StringVar(&c.adjacent, "adjacent", "", "id of the shard whose range is adjacent to it")
	fs.BoolVar(&c.noWait, "no-wait", false, "return while the stream is still UPDATING")
}

func (c *shardMerge) validate(fs *flag.FlagSet, args []string) error {
	if err := noPositional(args); err != nil {
		return err
	}
	switch {
	case c.stream == "":
		return errors.New("--stream is required")
	case c.shard == "":
		return errors.New("--shard is required")
	case c.adjacent == "":
		return errors.New("--adjacent is required")
	case c.shard == c.adjacent:
		return errors.New("--shard and --adjacent must differ")
	}
	c.wait = reshardWait(fs, c.timeout)
	return nil
}

func (c *shardMerge) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	streams := cl.Streams()
	callCtx, cancel := c.call(ctx)
	_, err = streams.MergeShards(callCtx, &rifflev1.MergeShardsRequest{StreamName: c.stream, ShardToMerge: c.shard, AdjacentShardToMerge: c.adjacent})
	cancel()
	if err != nil {
		return err
	}
	return finishReshard(ctx, &c.connFlags, streams, c.stream, c.noWait, c.wait, std)
}

// reshardWait is how long a resharding verb waits for ACTIVE: a minute,
// or --timeout when given.
func reshardWait(fs *flag.FlagSet, timeout time.Duration) time.Duration {
	if isSet(fs, "timeout") {
		return timeout
	}
	return defaultActiveWait
}

// finishReshard waits until the stream is ACTIVE again (unless noWait) and
// prints it with its shards.
func finishReshard(ctx context.Context, cf *connFlags, streams rifflev1.StreamsClient, stream string, noWait bool, wait time.Duration, std stdio) error {
	var summary *rifflev1.StreamDescriptionSummary
	var err error
	if noWait {
		summary, err = describeSummary(ctx, cf, streams, stream)
	} else {
		summary, err = waitActive(ctx, cf, streams, stream, time.Now().Add(wait), std.err)
	}
	if err != nil {
		return err
	}
	shards, err := listShards(ctx, cf, streams, stream)
	if err != nil {
		return err
	}
	return printStream(std.out, cf.json, toStreamJSON(summary, shards))
}

// middleKey is the first hash key of the upper half of a shard's range.
func middleKey(shards []*rifflev1.Shard, id string) (string, error) {
	for _, sh := range shards {
		if sh.GetShardId() != id {
			continue
		}
		start, ok1 := new(big.Int).SetString(sh.GetHashKeyRange().GetStartingHashKey(), 10)
		end, ok2 := new(big.Int).SetString(sh.GetHashKeyRange().GetEndingHashKey(), 10)
		if !ok1 || !ok2 {
			return "", fmt.Errorf("shard %s has a malformed hash-key range", id)
		}
		if start.Cmp(end) >= 0 {
			return "", fmt.Errorf("shard %s covers one hash key and cannot be split", id)
		}
		// start + (end-start+1)/2 is above start and at most end.
		span := new(big.Int).Sub(end, start)
		span.Add(span, big.NewInt(1)).Rsh(span, 1)
		return span.Add(span, start).String(), nil
	}
	return "", fmt.Errorf("shard %s not found", id)
}
