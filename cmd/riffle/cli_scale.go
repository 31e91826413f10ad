package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"time"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

var streamScaleCommand = &command{
	path:     "stream scale",
	synopsis: "NAME --count N [--no-wait]",
	summary:  "change a stream's open shard count, wait until it is ACTIVE again",
	details: `
Calls UpdateShardCount with uniform scaling: the open shards end with equal
hash ranges, reached by splits and merges (short-lived shards appear in
between). N must lie between half (rounded up) and double the current
open shard count. Writes go on while the stream is UPDATING; closed shards
stay readable. Prints the stream with its shards once it is ACTIVE again
(--timeout bounds the wait too).`,
	newVerb: func() verb { return &streamScale{} },
}

type streamScale struct {
	connFlags
	name   string
	count  int
	noWait bool
	wait   time.Duration
}

func (c *streamScale) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	fs.IntVar(&c.count, "count", 0, "the open shard count to reach")
	fs.BoolVar(&c.noWait, "no-wait", false, "return while the stream is still UPDATING")
}

func (c *streamScale) validate(fs *flag.FlagSet, args []string) error {
	var err error
	if c.name, err = exactlyOne(args, "stream name"); err != nil {
		return err
	}
	if !isSet(fs, "count") {
		return fmt.Errorf("--count is required")
	}
	if c.count < 1 || c.count > math.MaxInt32 {
		return fmt.Errorf("--count must be a positive number, got %d", c.count)
	}
	c.wait = reshardWait(fs, c.timeout)
	return nil
}

func (c *streamScale) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	streams := cl.Streams()
	callCtx, cancel := c.call(ctx)
	out, err := streams.UpdateShardCount(callCtx, &rifflev1.UpdateShardCountRequest{StreamName: c.name,
		TargetShardCount: int32(c.count), ScalingType: rifflev1.ScalingType_SCALING_TYPE_UNIFORM_SCALING})
	cancel()
	if err != nil {
		return err
	}
	if !c.json {
		scaleNote(std.err, out)
	}
	return finishReshard(ctx, &c.connFlags, streams, c.name, c.noWait, c.wait, std)
}

// scaleNote tells on stderr what the scaling started from, keeping stdout
// for the stream.
func scaleNote(w io.Writer, out *rifflev1.UpdateShardCountResponse) {
	fmt.Fprintf(w, "scaling %s from %d to %d open shards\n", out.GetStreamName(), out.GetCurrentShardCount(), out.GetTargetShardCount())
}
