package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

const (
	// maxGetRecordsLimit is the most records one GetRecords call may ask for.
	maxGetRecordsLimit = 10000
	// maxIteratorRenewals bounds the new iterators taken in a row without a
	// successful read in between.
	maxIteratorRenewals = 3
)

// iteratorTypes maps --type to the API's iterator types.
var iteratorTypes = map[string]rifflev1.ShardIteratorType{
	"trim-horizon":          rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON,
	"latest":                rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_LATEST,
	"at-sequence-number":    rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_SEQUENCE_NUMBER,
	"after-sequence-number": rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER,
	"at-timestamp":          rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_TIMESTAMP,
}

var getCommand = &command{
	path:     "get",
	synopsis: "--stream S --shard SHARD_ID [--type T] [--seq N] [--timestamp T] [--limit N] [--max N] [--follow]",
	summary:  "read the records of one shard",
	details: `
Gets a shard iterator of --type (trim-horizon, latest, at-sequence-number and
after-sequence-number with --seq, at-timestamp with --timestamp as RFC 3339
or unix milliseconds), then follows the GetRecords chain.

Each record is one line: sequence number, arrival time, partition key, data,
separated by tabs; data is printed as text when it is printable UTF-8 and as
"base64:..." otherwise. With --json each record is a JSON line
{"sequence_number","approximate_arrival_timestamp","partition_key","data"}
with data in base64.

Without --follow, get stops at the first empty answer that is not behind the
tip of the shard (millis_behind_latest 0), after --max records, or at the end
of a closed shard. With --follow it polls every --poll-interval until
interrupted (Ctrl-C exits 0), retries throttling and unavailability, and gets
a new iterator after the last record read when the old one expires. At the
end of a closed shard the child shards are printed on stderr (--json: a last
line {"child_shards":[...]} on stdout).`,
	newVerb: func() verb { return &getVerb{} },
}

type getVerb struct {
	connFlags
	stream       string
	shard        string
	iteratorType string
	seq          string
	timestamp    string
	at           time.Time
	limit        int
	max          int
	follow       bool
	pollInterval time.Duration
}

func (c *getVerb) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	fs.StringVar(&c.stream, "stream", "", "stream to read (required)")
	fs.StringVar(&c.shard, "shard", "", "shard id to read, e.g. shardId-000000000000 (required)")
	fs.StringVar(&c.iteratorType, "type", "trim-horizon", "where to start: trim-horizon, latest, at-sequence-number, after-sequence-number or at-timestamp")
	fs.StringVar(&c.seq, "seq", "", "sequence number for --type at-sequence-number and after-sequence-number")
	fs.StringVar(&c.timestamp, "timestamp", "", "start time for --type at-timestamp: RFC 3339 or unix milliseconds")
	fs.IntVar(&c.limit, "limit", 0, "records per GetRecords call, 1 to 10000; 0 lets the broker choose")
	fs.IntVar(&c.max, "max", 0, "stop after this many records; 0 means no limit")
	fs.BoolVar(&c.follow, "follow", false, "keep polling for new records until interrupted")
	fs.DurationVar(&c.pollInterval, "poll-interval", 200*time.Millisecond, "wait after an empty answer before polling again")
}

func (c *getVerb) validate(fs *flag.FlagSet, args []string) error {
	if err := noPositional(args); err != nil {
		return err
	}
	typ, ok := iteratorTypes[c.iteratorType]
	switch {
	case c.stream == "":
		return errors.New("--stream is required")
	case c.shard == "":
		return errors.New("--shard is required")
	case !ok:
		return fmt.Errorf("--type %q is not one of trim-horizon, latest, at-sequence-number, after-sequence-number, at-timestamp", c.iteratorType)
	case c.limit < 0 || c.limit > maxGetRecordsLimit:
		return fmt.Errorf("--limit must be between 1 and %d, got %d", maxGetRecordsLimit, c.limit)
	case c.max < 0:
		return fmt.Errorf("--max must not be negative, got %d", c.max)
	case c.pollInterval <= 0:
		return fmt.Errorf("--poll-interval must be positive, got %v", c.pollInterval)
	}
	needsSeq := typ == rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_SEQUENCE_NUMBER ||
		typ == rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER
	needsTime := typ == rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_TIMESTAMP
	switch {
	case needsSeq && c.seq == "":
		return fmt.Errorf("--type %s needs --seq", c.iteratorType)
	case !needsSeq && isSet(fs, "seq"):
		return fmt.Errorf("--seq applies to --type at-sequence-number and after-sequence-number, not %s", c.iteratorType)
	case needsTime && c.timestamp == "":
		return fmt.Errorf("--type %s needs --timestamp", c.iteratorType)
	case !needsTime && isSet(fs, "timestamp"):
		return fmt.Errorf("--timestamp applies to --type at-timestamp, not %s", c.iteratorType)
	}
	if needsTime {
		at, err := parseTimestamp(c.timestamp)
		if err != nil {
			return err
		}
		c.at = at
	}
	return nil
}

// parseTimestamp reads RFC 3339 or unix milliseconds.
func parseTimestamp(s string) (time.Time, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--timestamp %q is neither RFC 3339 (2006-01-02T15:04:05Z) nor unix milliseconds", s)
	}
	return t, nil
}

// startRequest is the GetShardIterator request of the flags.
func (c *getVerb) startRequest() *rifflev1.GetShardIteratorRequest {
	req := &rifflev1.GetShardIteratorRequest{
		StreamName:             c.stream,
		ShardId:                c.shard,
		ShardIteratorType:      iteratorTypes[c.iteratorType],
		StartingSequenceNumber: c.seq,
	}
	if !c.at.IsZero() {
		req.Timestamp = timestamppb.New(c.at)
	}
	return req
}

// resumeRequest continues after the last record read, or from where the
// flags said when nothing was read yet.
func (c *getVerb) resumeRequest(lastSeq string) *rifflev1.GetShardIteratorRequest {
	if lastSeq == "" {
		return c.startRequest()
	}
	return &rifflev1.GetShardIteratorRequest{
		StreamName:             c.stream,
		ShardId:                c.shard,
		ShardIteratorType:      rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER,
		StartingSequenceNumber: lastSeq,
	}
}

// readRetry is the retry policy of get. Reads change nothing, so every
// retryable error may be repeated; --follow never gives up.
func (c *getVerb) readRetry(stderr io.Writer) retryPolicy {
	p := retryPolicy{attempts: 5, base: 200 * time.Millisecond, maxDelay: 5 * time.Second, retryable: client.IsRetryable}
	if c.follow {
		p.attempts = 0
		p.onRetry = func(err error, attempt int, wait time.Duration) {
			fmt.Fprintf(stderr, "riffle: retrying in %s after %s (attempt %d)\n", wait.Round(time.Millisecond), strings.TrimPrefix(formatError(err), "riffle: "), attempt)
		}
	}
	return p
}

func (c *getVerb) run(ctx context.Context, std stdio) error {
	err := c.read(ctx, std)
	if c.follow && ctx.Err() != nil {
		return nil
	}
	return err
}

func (c *getVerb) read(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	streams := cl.Streams()
	retry := c.readRetry(std.err)
	out := bufio.NewWriter(std.out)
	defer out.Flush()

	iterator, err := c.getIterator(ctx, streams, retry, c.startRequest())
	if err != nil {
		return err
	}
	read, lastSeq, expired := 0, "", 0
	for {
		var resp *rifflev1.GetRecordsResponse
		err := retry.do(ctx, func() error {
			callCtx, cancel := c.call(ctx)
			defer cancel()
			var err error
			resp, err = streams.GetRecords(callCtx, &rifflev1.GetRecordsRequest{ShardIterator: iterator, Limit: int32(c.limit)})
			return err
		})
		// A fresh iterator that expires again at once means something other
		// than a slow reader is wrong: give up rather than spin.
		if client.ExceptionName(err) == client.ExpiredIteratorException && expired < maxIteratorRenewals {
			expired++
			if iterator, err = c.getIterator(ctx, streams, retry, c.resumeRequest(lastSeq)); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		expired = 0
		for _, r := range resp.GetRecords() {
			if err := c.writeRecord(out, r); err != nil {
				return err
			}
			read++
			lastSeq = r.GetSequenceNumber()
			if c.max > 0 && read >= c.max {
				return nil
			}
		}
		if err := out.Flush(); err != nil {
			return err
		}
		if resp.GetNextShardIterator() == "" {
			return c.writeChildShards(out, std.err, resp.GetChildShards())
		}
		iterator = resp.GetNextShardIterator()
		if len(resp.GetRecords()) > 0 {
			continue
		}
		if !c.follow && resp.GetMillisBehindLatest() == 0 {
			return nil
		}
		// Kinesis polling is client-driven: wait before asking again so an
		// idle reader does not spend the shard's five reads a second.
		if err := sleepCtx(ctx, c.pollInterval); err != nil {
			return err
		}
	}
}

func (c *getVerb) getIterator(ctx context.Context, streams rifflev1.StreamsClient, retry retryPolicy, req *rifflev1.GetShardIteratorRequest) (string, error) {
	var iterator string
	err := retry.do(ctx, func() error {
		callCtx, cancel := c.call(ctx)
		defer cancel()
		resp, err := streams.GetShardIterator(callCtx, req)
		iterator = resp.GetShardIterator()
		return err
	})
	return iterator, err
}

func (c *getVerb) writeRecord(w io.Writer, r *rifflev1.Record) error {
	if c.json {
		return writeJSON(w, toRecordJSON(r))
	}
	_, err := fmt.Fprintln(w, recordLine(r))
	return err
}

// childShardJSON names a shard that continues a closed one.
type childShardJSON struct {
	ShardID         string   `json:"shard_id"`
	ParentShards    []string `json:"parent_shards,omitempty"`
	StartingHashKey string   `json:"starting_hash_key,omitempty"`
	EndingHashKey   string   `json:"ending_hash_key,omitempty"`
}

// writeChildShards reports the end of a closed shard: on stderr for people,
// so stdout stays records only, and as a last JSON line with --json.
func (c *getVerb) writeChildShards(out, stderr io.Writer, children []*rifflev1.ChildShard) error {
	if c.json {
		list := make([]childShardJSON, 0, len(children))
		for _, ch := range children {
			list = append(list, childShardJSON{
				ShardID:         ch.GetShardId(),
				ParentShards:    ch.GetParentShards(),
				StartingHashKey: ch.GetHashKeyRange().GetStartingHashKey(),
				EndingHashKey:   ch.GetHashKeyRange().GetEndingHashKey(),
			})
		}
		return writeJSON(out, map[string][]childShardJSON{"child_shards": list})
	}
	ids := make([]string, 0, len(children))
	for _, ch := range children {
		ids = append(ids, ch.GetShardId())
	}
	if len(ids) == 0 {
		_, err := fmt.Fprintf(stderr, "riffle: shard %s is closed and has no child shards\n", c.shard)
		return err
	}
	_, err := fmt.Fprintf(stderr, "riffle: shard %s is closed; child shards: %s\n", c.shard, strings.Join(ids, ", "))
	return err
}
