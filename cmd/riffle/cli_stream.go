package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Retention bounds of DESIGN.md, checked here so that a typo is a usage
// error rather than a round trip.
const (
	defaultRetentionHours = 24
	minRetentionHours     = 24
	maxRetentionHours     = 8760
	// defaultActiveWait bounds the wait for ACTIVE when --timeout is not
	// given: creating shard groups takes longer than one call.
	defaultActiveWait = 60 * time.Second
)

func checkRetention(flagName string, hours int) error {
	if hours < minRetentionHours || hours > maxRetentionHours {
		return fmt.Errorf("--%s must be between %d and %d, got %d", flagName, minRetentionHours, maxRetentionHours, hours)
	}
	return nil
}

var streamCreateCommand = &command{
	path:     "stream create",
	synopsis: "NAME (--shards N | --on-demand) [--retention-hours H] [--no-wait] [--unlimited] [--write-bytes-per-sec N] ...",
	summary:  "create a stream, wait until it is ACTIVE, print its summary",
	details: `
Creates a PROVISIONED stream of N shards, or an ON_DEMAND stream with
--on-demand, then polls it until it is ACTIVE (progress on stderr after a
second) for up to --timeout if given, else 60s. A retention other than 24
hours is set once the stream is ACTIVE, so --retention-hours and --no-wait do
not go together. Prints the summary (--json: one object, as
'stream describe' without shards).

Per-shard limits: a stream takes the cluster's (riffle serve --shard-limits)
unless it sets its own. --unlimited sets every limit of the stream to 0
(unlimited); --write-bytes-per-sec, --write-records-per-sec,
--read-bytes-per-sec, --read-calls-per-sec and --fan-out-bytes-per-sec set
one each (0: unlimited), and win over --unlimited.`,
	newVerb: func() verb { return &streamCreate{} },
}

type streamCreate struct {
	connFlags
	name           string
	shards         int
	onDemand       bool
	retentionHours int
	noWait         bool
	wait           time.Duration
	unlimited      bool
	limitFlags     [5]int64
	limits         *rifflev1.ShardLimits // nil: the cluster's
}

// limitFlagNames are stream create's per-limit flags, in limitFlags order.
var limitFlagNames = [5]string{"write-bytes-per-sec", "write-records-per-sec", "read-bytes-per-sec", "read-calls-per-sec", "fan-out-bytes-per-sec"}

func (c *streamCreate) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	fs.IntVar(&c.shards, "shards", 0, "number of shards of a provisioned stream")
	fs.BoolVar(&c.onDemand, "on-demand", false, "create an ON_DEMAND stream, scaled by the cluster")
	fs.IntVar(&c.retentionHours, "retention-hours", defaultRetentionHours, "retention period in hours, 24 to 8760")
	fs.BoolVar(&c.noWait, "no-wait", false, "return while the stream is still CREATING")
	fs.BoolVar(&c.unlimited, "unlimited", false, "no per-shard limits for this stream, whatever the cluster's")
	usage := [5]string{"per-shard write bytes per second", "per-shard write records per second",
		"per-shard GetRecords bytes per second", "per-shard GetRecords calls per second", "per-shard fan-out bytes per second per consumer"}
	for i, name := range limitFlagNames {
		fs.Int64Var(&c.limitFlags[i], name, 0, usage[i]+" (0: unlimited; default: the cluster's)")
	}
}

func (c *streamCreate) validate(fs *flag.FlagSet, args []string) error {
	var err error
	if c.name, err = exactlyOne(args, "stream name"); err != nil {
		return err
	}
	switch {
	case c.onDemand && isSet(fs, "shards"):
		return errors.New("--shards does not apply to an --on-demand stream")
	case !c.onDemand && !isSet(fs, "shards"):
		return errors.New("--shards N or --on-demand is required")
	case !c.onDemand && (c.shards < 1 || c.shards > math.MaxInt32):
		return fmt.Errorf("--shards must be a positive number, got %d", c.shards)
	}
	if err := checkRetention("retention-hours", c.retentionHours); err != nil {
		return err
	}
	if c.noWait && c.retentionHours != defaultRetentionHours {
		return errors.New("--retention-hours needs the stream ACTIVE and cannot be combined with --no-wait")
	}
	var fields [5]*int64
	set := c.unlimited
	for i, name := range limitFlagNames {
		switch {
		case isSet(fs, name) && c.limitFlags[i] < 0:
			return fmt.Errorf("--%s must be 0 (unlimited) or more, got %d", name, c.limitFlags[i])
		case isSet(fs, name):
			fields[i], set = &c.limitFlags[i], true
		case c.unlimited:
			fields[i] = new(int64)
		}
	}
	if set {
		c.limits = &rifflev1.ShardLimits{WriteBytesPerSecond: fields[0], WriteRecordsPerSecond: fields[1],
			ReadBytesPerSecond: fields[2], ReadCallsPerSecond: fields[3], FanOutBytesPerSecond: fields[4]}
	}
	c.wait = defaultActiveWait
	if isSet(fs, "timeout") {
		c.wait = c.timeout
	}
	return nil
}

func (c *streamCreate) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	streams := cl.Streams()

	req := &rifflev1.CreateStreamRequest{
		StreamName:        c.name,
		ShardCount:        int32(c.shards),
		StreamModeDetails: &rifflev1.StreamModeDetails{StreamMode: rifflev1.StreamMode_STREAM_MODE_PROVISIONED},
		ShardLimits:       c.limits,
	}
	if c.onDemand {
		req.StreamModeDetails.StreamMode = rifflev1.StreamMode_STREAM_MODE_ON_DEMAND
	}
	callCtx, cancel := c.call(ctx)
	_, err = streams.CreateStream(callCtx, req)
	cancel()
	if err != nil {
		return err
	}

	var summary *rifflev1.StreamDescriptionSummary
	if c.noWait {
		summary, err = describeSummary(ctx, &c.connFlags, streams, c.name)
	} else {
		deadline := time.Now().Add(c.wait)
		summary, err = waitActive(ctx, &c.connFlags, streams, c.name, deadline, std.err)
		if err == nil && c.retentionHours != defaultRetentionHours {
			callCtx, cancel := c.call(ctx)
			_, err = streams.IncreaseStreamRetentionPeriod(callCtx, &rifflev1.IncreaseStreamRetentionPeriodRequest{
				StreamName: c.name, RetentionPeriodHours: int32(c.retentionHours),
			})
			cancel()
			if err == nil {
				summary, err = waitActive(ctx, &c.connFlags, streams, c.name, deadline, std.err)
			}
		}
	}
	if err != nil {
		return err
	}
	return printStream(std.out, c.json, toStreamJSON(summary, nil))
}

var streamDeleteCommand = &command{
	path:     "stream delete",
	synopsis: "NAME",
	summary:  "delete a stream",
	details: `
Deletion is asynchronous: the stream is DELETING when the command returns.
Prints "deleting stream NAME" (--json: {"stream_name":...,"stream_status":"DELETING"}).`,
	newVerb: func() verb { return &streamDelete{} },
}

type streamDelete struct {
	connFlags
	name string
}

func (c *streamDelete) validate(_ *flag.FlagSet, args []string) (err error) {
	c.name, err = exactlyOne(args, "stream name")
	return err
}

func (c *streamDelete) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	callCtx, cancel := c.call(ctx)
	defer cancel()
	if _, err := cl.Streams().DeleteStream(callCtx, &rifflev1.DeleteStreamRequest{StreamName: c.name}); err != nil {
		return err
	}
	if c.json {
		return writeJSON(std.out, map[string]string{"stream_name": c.name, "stream_status": "DELETING"})
	}
	_, err = fmt.Fprintf(std.out, "deleting stream %s\n", c.name)
	return err
}

var streamDescribeCommand = &command{
	path:     "stream describe",
	synopsis: "NAME",
	summary:  "show a stream's summary and its shards",
	details: `
Prints the summary (status, mode, open shards, retention, consumers, the
per-shard limits in force) and a table of every shard: id, parent ("A+B"
after a merge), hash key range, sequence number range, OPEN or CLOSED. --json prints one object with a
"shards" array.`,
	newVerb: func() verb { return &streamDescribe{} },
}

type streamDescribe struct {
	connFlags
	name string
}

func (c *streamDescribe) validate(_ *flag.FlagSet, args []string) (err error) {
	c.name, err = exactlyOne(args, "stream name")
	return err
}

func (c *streamDescribe) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	summary, err := describeSummary(ctx, &c.connFlags, cl.Streams(), c.name)
	if err != nil {
		return err
	}
	shards, err := listShards(ctx, &c.connFlags, cl.Streams(), c.name)
	if err != nil {
		return err
	}
	return printStream(std.out, c.json, toStreamJSON(summary, shards))
}

// printStream prints a summary, and the shard table when there are shards.
func printStream(w io.Writer, asJSON bool, s streamJSON) error {
	if asJSON {
		return writeJSON(w, s)
	}
	if err := writeStreamSummary(w, s); err != nil {
		return err
	}
	if len(s.Shards) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	return writeShardTable(w, s.Shards)
}

var streamListCommand = &command{
	path:     "stream list",
	synopsis: "",
	summary:  "list every stream",
	details: `
Pages through ListStreams. Prints a table of name, status, mode and creation
time (--json: {"streams":[{...}]}).`,
	newVerb: func() verb { return &streamList{} },
}

type streamList struct{ connFlags }

// streamListJSON is one entry of `stream list --json`.
type streamListJSON struct {
	StreamName        string    `json:"stream_name"`
	StreamARN         string    `json:"stream_arn,omitempty"`
	StreamStatus      string    `json:"stream_status,omitempty"`
	StreamMode        string    `json:"stream_mode,omitempty"`
	CreationTimestamp time.Time `json:"stream_creation_timestamp,omitzero"`
}

func (c *streamList) validate(_ *flag.FlagSet, args []string) error { return noPositional(args) }

func (c *streamList) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	streams, err := listStreams(ctx, &c.connFlags, cl.Streams())
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(std.out, map[string][]streamListJSON{"streams": streams})
	}
	tw := tabwriter.NewWriter(std.out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tMODE\tCREATED")
	for _, s := range streams {
		created := "-"
		if !s.CreationTimestamp.IsZero() {
			created = s.CreationTimestamp.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.StreamName, dash(s.StreamStatus), dash(s.StreamMode), created)
	}
	return tw.Flush()
}

// listStreams pages through ListStreams. The names are the listing; the
// summaries, when the broker sends them, fill in the details.
func listStreams(ctx context.Context, cf *connFlags, streams rifflev1.StreamsClient) ([]streamListJSON, error) {
	var out []streamListJSON
	req := &rifflev1.ListStreamsRequest{Limit: 1000}
	for {
		callCtx, cancel := cf.call(ctx)
		resp, err := streams.ListStreams(callCtx, req)
		cancel()
		if err != nil {
			return nil, err
		}
		details := make(map[string]*rifflev1.StreamSummary, len(resp.GetStreamSummaries()))
		for _, s := range resp.GetStreamSummaries() {
			details[s.GetStreamName()] = s
		}
		for _, name := range resp.GetStreamNames() {
			entry := streamListJSON{StreamName: name}
			if s, ok := details[name]; ok {
				entry.StreamARN = s.GetStreamArn()
				entry.StreamStatus = statusName(s.GetStreamStatus())
				entry.StreamMode = modeName(s.GetStreamModeDetails().GetStreamMode())
				entry.CreationTimestamp = timeOf(s.GetStreamCreationTimestamp())
			}
			out = append(out, entry)
		}
		switch {
		case !resp.GetHasMoreStreams() || len(resp.GetStreamNames()) == 0 && resp.GetNextToken() == "":
			return out, nil
		case resp.GetNextToken() != "":
			req = &rifflev1.ListStreamsRequest{Limit: 1000, NextToken: resp.GetNextToken()}
		default:
			req = &rifflev1.ListStreamsRequest{Limit: 1000, ExclusiveStartStreamName: out[len(out)-1].StreamName}
		}
	}
}

var streamRetentionCommand = &command{
	path:     "stream retention",
	synopsis: "NAME --hours H",
	summary:  "set a stream's retention period",
	details: `
Reads the current retention and calls IncreaseStreamRetentionPeriod or
DecreaseStreamRetentionPeriod (nothing when it is already H). Prints
"stream NAME: retention OLD -> H hours" (--json: {"stream_name":...,
"previous_retention_period_hours":OLD,"retention_period_hours":H}).`,
	newVerb: func() verb { return &streamRetention{} },
}

type streamRetention struct {
	connFlags
	name  string
	hours int
}

func (c *streamRetention) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	fs.IntVar(&c.hours, "hours", 0, "new retention period in hours, 24 to 8760")
}

func (c *streamRetention) validate(fs *flag.FlagSet, args []string) error {
	var err error
	if c.name, err = exactlyOne(args, "stream name"); err != nil {
		return err
	}
	if !isSet(fs, "hours") {
		return errors.New("--hours is required")
	}
	return checkRetention("hours", c.hours)
}

func (c *streamRetention) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	streams := cl.Streams()
	summary, err := describeSummary(ctx, &c.connFlags, streams, c.name)
	if err != nil {
		return err
	}
	previous := int(summary.GetRetentionPeriodHours())
	callCtx, cancel := c.call(ctx)
	defer cancel()
	switch {
	case c.hours > previous:
		_, err = streams.IncreaseStreamRetentionPeriod(callCtx, &rifflev1.IncreaseStreamRetentionPeriodRequest{
			StreamName: c.name, RetentionPeriodHours: int32(c.hours),
		})
	case c.hours < previous:
		_, err = streams.DecreaseStreamRetentionPeriod(callCtx, &rifflev1.DecreaseStreamRetentionPeriodRequest{
			StreamName: c.name, RetentionPeriodHours: int32(c.hours),
		})
	}
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(std.out, map[string]any{
			"stream_name":                     c.name,
			"previous_retention_period_hours": previous,
			"retention_period_hours":          c.hours,
		})
	}
	_, err = fmt.Fprintf(std.out, "stream %s: retention %d -> %d hours\n", c.name, previous, c.hours)
	return err
}

func describeSummary(ctx context.Context, cf *connFlags, streams rifflev1.StreamsClient, name string) (*rifflev1.StreamDescriptionSummary, error) {
	callCtx, cancel := cf.call(ctx)
	defer cancel()
	resp, err := streams.DescribeStreamSummary(callCtx, &rifflev1.DescribeStreamSummaryRequest{StreamName: name})
	if err != nil {
		return nil, err
	}
	return resp.GetStreamDescriptionSummary(), nil
}
