package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

var subscribeCommand = &command{
	path:     "subscribe",
	synopsis: "--stream S --consumer NAME (--shard SHARD_ID | --all) [--type T] [--seq N] [--timestamp T] [--max N]",
	summary:  "receive a stream's records through an enhanced fan-out consumer",
	details: `
Subscribes registered consumer NAME ('riffle consumer register') to one shard
or, with --all, to every shard (open shards for --type latest and
at-timestamp; the oldest retained generation for trim-horizon), and prints
records as they are pushed, until interrupted (Ctrl-C exits 0) or --max
records. Subscriptions are renewed from their continuation number when they
end (every 5 minutes) or when a node goes away, with nothing skipped or
repeated; a shard that ends after a split or merge is followed by its
children.

Each record is one line: shard, sequence number, arrival time, partition key
and data, separated by tabs (data as text when printable UTF-8, else
"base64:..."). With --json each record is a JSON line {"shard_id",
"sequence_number", "approximate_arrival_timestamp", "partition_key", "data"}
with data in base64.`,
	newVerb: func() verb { return &subscribeVerb{} },
}

type subscribeVerb struct {
	connFlags
	stream, consumer, shard string
	all                     bool
	start                   startFlags
	max                     int
}

// startFlags are the --type, --seq and --timestamp flags of a starting
// position, as `riffle get` takes them.
type startFlags struct {
	iteratorType, seq, timestamp string
	position                     client.StartingPosition
}

func (f *startFlags) bind(fs *flag.FlagSet, def string) {
	fs.StringVar(&f.iteratorType, "type", def, "starting position: trim-horizon, latest, at-sequence-number, after-sequence-number or at-timestamp")
	fs.StringVar(&f.seq, "seq", "", "sequence number for at-sequence-number and after-sequence-number")
	fs.StringVar(&f.timestamp, "timestamp", "", "RFC 3339 time or unix milliseconds for at-timestamp")
}

func (f *startFlags) validate() error {
	if _, ok := iteratorTypes[f.iteratorType]; !ok {
		return fmt.Errorf("--type %q: want trim-horizon, latest, at-sequence-number, after-sequence-number or at-timestamp", f.iteratorType)
	}
	needSeq := f.iteratorType == "at-sequence-number" || f.iteratorType == "after-sequence-number"
	switch {
	case needSeq && f.seq == "":
		return fmt.Errorf("--type %s needs --seq", f.iteratorType)
	case !needSeq && f.seq != "":
		return fmt.Errorf("--seq applies only to at-sequence-number and after-sequence-number")
	case f.iteratorType == "at-timestamp" && f.timestamp == "":
		return errors.New("--type at-timestamp needs --timestamp")
	case f.iteratorType != "at-timestamp" && f.timestamp != "":
		return errors.New("--timestamp applies only to at-timestamp")
	}
	switch f.iteratorType {
	case "trim-horizon":
		f.position = client.TrimHorizon()
	case "latest":
		f.position = client.Latest()
	case "at-sequence-number":
		f.position = client.AtSequenceNumber(f.seq)
	case "after-sequence-number":
		f.position = client.AfterSequenceNumber(f.seq)
	case "at-timestamp":
		at, err := parseTimestamp(f.timestamp)
		if err != nil {
			return err
		}
		f.position = client.AtTimestamp(at)
	}
	return nil
}

func (c *subscribeVerb) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	fs.StringVar(&c.stream, "stream", "", "stream name (required)")
	fs.StringVar(&c.consumer, "consumer", "", "registered consumer name (required)")
	fs.StringVar(&c.shard, "shard", "", "shard id to receive")
	fs.BoolVar(&c.all, "all", false, "receive every shard")
	fs.IntVar(&c.max, "max", 0, "stop after this many records (0: until interrupted)")
	c.start.bind(fs, "latest")
}

func (c *subscribeVerb) validate(_ *flag.FlagSet, args []string) error {
	if err := noPositional(args); err != nil {
		return err
	}
	switch {
	case c.stream == "":
		return errors.New("--stream is required")
	case c.consumer == "":
		return errors.New("--consumer is required")
	case c.shard == "" && !c.all:
		return errors.New("--shard SHARD_ID or --all is required")
	case c.shard != "" && c.all:
		return errors.New("--shard and --all do not go together")
	case c.max < 0:
		return fmt.Errorf("--max must not be negative, got %d", c.max)
	case c.all && (c.start.iteratorType == "at-sequence-number" || c.start.iteratorType == "after-sequence-number"):
		return errors.New("a sequence number belongs to one shard: use --shard with --type " + c.start.iteratorType)
	}
	return c.start.validate()
}

func (c *subscribeVerb) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	callCtx, cancel := c.call(ctx)
	d, err := cl.Streams().DescribeStreamConsumer(callCtx, &rifflev1.DescribeStreamConsumerRequest{StreamName: c.stream, ConsumerName: c.consumer})
	cancel()
	if err != nil {
		return err
	}
	arn := d.GetConsumerDescription().GetConsumerArn()
	shards := []string{c.shard}
	if c.all {
		if shards, err = c.startShards(ctx, cl.Streams()); err != nil {
			return err
		}
	}

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	out := &recordPrinter{w: std.out, json: c.json, max: c.max, stop: stop}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var wg sync.WaitGroup
	errs := make([]error, len(shards))
	for i, shard := range shards {
		sub := client.NewSubscriber(cl, arn, shard, c.start.position, client.SubscriberConfig{Logger: quiet})
		wg.Go(func() {
			defer sub.Close()
			for {
				b, err := sub.Next(ctx)
				if err != nil {
					if !errors.Is(err, io.EOF) && ctx.Err() == nil {
						errs[i] = fmt.Errorf("%s: %w", shard, err)
						stop()
					}
					return
				}
				if werr := out.print(b); werr != nil {
					errs[i] = werr
					stop()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startShards picks the shards --all starts from: the open ones for a
// position in the present, the oldest retained generation (shards whose
// parents are gone) for trim-horizon. Subscribers follow children
// themselves.
func (c *subscribeVerb) startShards(ctx context.Context, streams rifflev1.StreamsClient) ([]string, error) {
	var all []*rifflev1.Shard
	req := &rifflev1.ListShardsRequest{StreamName: c.stream}
	for {
		callCtx, cancel := c.call(ctx)
		resp, err := streams.ListShards(callCtx, req)
		cancel()
		if err != nil {
			return nil, err
		}
		all = append(all, resp.GetShards()...)
		if resp.GetNextToken() == "" {
			break
		}
		req = &rifflev1.ListShardsRequest{NextToken: resp.GetNextToken()}
	}
	present := map[string]bool{}
	for _, sh := range all {
		present[sh.GetShardId()] = true
	}
	var out []string
	for _, sh := range all {
		open := sh.GetSequenceNumberRange().GetEndingSequenceNumber() == ""
		root := !present[sh.GetParentShardId()] && !present[sh.GetAdjacentParentShardId()]
		if (c.start.iteratorType == "trim-horizon" && root) || (c.start.iteratorType != "trim-horizon" && open) {
			out = append(out, sh.GetShardId())
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("stream %s has no shard to subscribe to", c.stream)
	}
	return out, nil
}

// recordPrinter writes records from several shards' goroutines, a line
// each, and stops everything after max records.
type recordPrinter struct {
	w       io.Writer
	json    bool
	max     int
	stop    context.CancelFunc
	mu      sync.Mutex
	printed int
}

func (p *recordPrinter) print(b client.Batch) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range b.Records {
		if p.max > 0 && p.printed >= p.max {
			p.stop()
			return nil
		}
		var err error
		if p.json {
			err = writeJSON(p.w, shardRecordJSON{ShardID: b.ShardID, recordJSON: toRecordJSON(r)})
		} else {
			_, err = fmt.Fprintf(p.w, "%s\t%s\n", b.ShardID, recordLine(r))
		}
		if err != nil {
			return err
		}
		p.printed++
	}
	if p.max > 0 && p.printed >= p.max {
		p.stop()
	}
	return nil
}

// shardRecordJSON is a record with the shard it came from.
type shardRecordJSON struct {
	ShardID string `json:"shard_id"`
	recordJSON
}
