package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

var streamModeCommand = &command{
	path:     "stream mode",
	synopsis: "NAME on-demand|provisioned [--no-wait]",
	summary:  "switch a stream's capacity mode, wait until it is ACTIVE again",
	details: `
Calls UpdateStreamMode. ON_DEMAND: the cluster splits shards that stay hot
and merges pairs that stay cold (riffle serve --ondemand-* flags); a stream
with fewer than 4 open shards is first scaled up to 4. PROVISIONED: the
stream keeps its current open shards, and SplitShard, MergeShards and
UpdateShardCount work on it again. A stream may switch twice in a rolling
24 hours. Writes go on while the stream is UPDATING. Prints the stream with
its shards once it is ACTIVE again (--timeout bounds the wait too).`,
	newVerb: func() verb { return &streamMode{} },
}

type streamMode struct {
	connFlags
	name   string
	mode   rifflev1.StreamMode
	noWait bool
	wait   time.Duration
}

func (c *streamMode) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	fs.BoolVar(&c.noWait, "no-wait", false, "return while the stream is still UPDATING")
}

func (c *streamMode) validate(fs *flag.FlagSet, args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("want a stream name and a mode (on-demand or provisioned), got %d arguments", len(args))
	}
	c.name = args[0]
	switch args[1] {
	case "on-demand":
		c.mode = rifflev1.StreamMode_STREAM_MODE_ON_DEMAND
	case "provisioned":
		c.mode = rifflev1.StreamMode_STREAM_MODE_PROVISIONED
	default:
		return fmt.Errorf("mode must be on-demand or provisioned, got %q", args[1])
	}
	c.wait = reshardWait(fs, c.timeout)
	return nil
}

func (c *streamMode) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	streams := cl.Streams()
	// UpdateStreamMode names the stream by its ARN, as Kinesis does.
	summary, err := describeSummary(ctx, &c.connFlags, streams, c.name)
	if err != nil {
		return err
	}
	callCtx, cancel := c.call(ctx)
	_, err = streams.UpdateStreamMode(callCtx, &rifflev1.UpdateStreamModeRequest{StreamArn: summary.GetStreamArn(),
		StreamModeDetails: &rifflev1.StreamModeDetails{StreamMode: c.mode}})
	cancel()
	if err != nil {
		return err
	}
	if !c.json {
		fmt.Fprintf(std.err, "switching %s from %s to %s\n", c.name,
			modeName(summary.GetStreamModeDetails().GetStreamMode()), modeName(c.mode))
	}
	return finishReshard(ctx, &c.connFlags, streams, c.name, c.noWait, c.wait, std)
}
