package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

var consumeCommand = &command{
	path:     "consume",
	synopsis: "--stream S --group G [--worker-id ID] [--fan-out] [--lease-duration D] [--checkpoint-interval D] [--checkpoint-every N]",
	summary:  "process a stream's records as one worker of a consumer group",
	details: `
Joins consumer group G of stream S (created on first use) and prints the
records of the shards the cluster assigns to this worker, until interrupted:
Ctrl-C (or SIGTERM) checkpoints the last records printed and leaves the
group, so that the other workers take the shards over at once. A worker
that dies without leaving loses its shards after the group's lease
duration, and another worker resumes them from the last checkpoint: records
after it are printed again (at-least-once). Children of a split or merge
are processed once their parents are finished. docs/consumer-groups.md
describes the protocol.

Records are read by polling (GetRecords) or, with --fan-out, pushed through
the registered consumer --consumer (G by default; registered if missing).
Each record is one line: shard, sequence number, arrival time, partition key
and data, separated by tabs. With --json each record is a JSON line
{"shard_id", "sequence_number", "approximate_arrival_timestamp",
"partition_key", "data"} with data in base64. Lease changes are logged on
stderr.`,
	newVerb: func() verb { return &consumeVerb{} },
}

type consumeVerb struct {
	connFlags
	stream, group, workerID, consumer string
	fanOut                            bool
	leaseDuration, checkpointInterval time.Duration
	checkpointEvery                   int
}

func (c *consumeVerb) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	fs.StringVar(&c.stream, "stream", "", "stream name (required)")
	fs.StringVar(&c.group, "group", "", "consumer group name (required)")
	fs.StringVar(&c.workerID, "worker-id", "", "this worker's id in the group (default: host name and process id)")
	fs.BoolVar(&c.fanOut, "fan-out", false, "receive records by enhanced fan-out instead of polling")
	fs.StringVar(&c.consumer, "consumer", "", "registered consumer for --fan-out (default: the group name)")
	fs.DurationVar(&c.leaseDuration, "lease-duration", 0, "the group's lease duration, if this worker creates it (default 10s)")
	fs.DurationVar(&c.checkpointInterval, "checkpoint-interval", client.DefaultCheckpointInterval, "longest time between a record printed and its checkpoint")
	fs.IntVar(&c.checkpointEvery, "checkpoint-every", 0, "also checkpoint after this many records of a shard (0: by interval only)")
}

func (c *consumeVerb) validate(_ *flag.FlagSet, args []string) error {
	if err := noPositional(args); err != nil {
		return err
	}
	switch {
	case c.stream == "":
		return errors.New("--stream is required")
	case c.group == "":
		return errors.New("--group is required")
	case c.consumer != "" && !c.fanOut:
		return errors.New("--consumer applies only with --fan-out")
	case c.leaseDuration < 0 || c.checkpointInterval <= 0 || c.checkpointEvery < 0:
		return fmt.Errorf("--lease-duration, --checkpoint-interval and --checkpoint-every must not be negative (interval positive)")
	}
	return c.validateConn()
}

func (c *consumeVerb) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	out := &recordPrinter{w: std.out, json: c.json, stop: func() {}}
	handle := func(_ context.Context, shard string, records []*rifflev1.Record) error {
		return out.print(client.Batch{ShardID: shard, Records: records})
	}
	w, err := client.NewWorker(cl, client.WorkerConfig{
		Group: c.group, Stream: c.stream, WorkerID: c.workerID,
		FanOut: c.fanOut, ConsumerName: c.consumer, LeaseDuration: c.leaseDuration,
		CheckpointInterval: c.checkpointInterval, CheckpointEvery: c.checkpointEvery,
		Logger: slog.New(slog.NewTextHandler(std.err, nil)),
	}, handle)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}
