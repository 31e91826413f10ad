package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Limits of one PutRecords call and one record (DESIGN.md).
const (
	maxPutRecordsCount = 500
	maxPutRecordsBytes = 5 << 20
	maxRecordBytes     = 1 << 20
)

// putRetry retries what the broker said is safe to retry: throttling and
// transient failures. A client-side failure (connection lost, deadline)
// leaves the outcome unknown, and repeating it could store records twice,
// so it ends the put instead.
var putRetry = retryPolicy{
	attempts:  5,
	base:      100 * time.Millisecond,
	maxDelay:  2 * time.Second,
	retryable: func(err error) bool { return client.ExceptionName(err) != "" && client.IsRetryable(err) },
}

var putCommand = &command{
	path:     "put",
	synopsis: "--stream S (--key K | --random-keys) [--explicit-hash-key H] [--data D] [--batch N]",
	summary:  "write one record, or one record per line of stdin",
	details: `
With --data, writes one record with PutRecord and prints "SHARD_ID SEQUENCE".

Without --data, reads stdin and writes one record per line (the line without
its newline) with PutRecords, in batches of up to --batch records and 5 MiB,
sending whatever has been read as soon as the previous batch is answered.
It prints one line per input line, in input order: "SHARD_ID SEQUENCE", or
"FAILED ErrorCode: message". With --json each is a JSON line:
{"line":N,"shard_id":...,"sequence_number":...} or
{"line":N,"error_code":...,"error_message":...}.

Records that fail with ProvisionedThroughputExceededException or
InternalFailure, and calls the broker says may be retried, are retried with
back-off, up to 5 attempts; nothing else is. If any record finally failed
the exit code is 4 when every failure was throttling or a transient failure,
1 otherwise. A call that fails on the client side (node unreachable,
timeout) ends the put: its records may or may not have been stored.`,
	newVerb: func() verb { return &putVerb{} },
}

type putVerb struct {
	connFlags
	stream          string
	key             string
	randomKeys      bool
	explicitHashKey string
	data            string
	hasData         bool
	batch           int
}

func (c *putVerb) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	fs.StringVar(&c.stream, "stream", "", "stream to write to (required)")
	fs.StringVar(&c.key, "key", "", "partition key of every record")
	fs.BoolVar(&c.randomKeys, "random-keys", false, "a new random partition key for each record")
	fs.StringVar(&c.explicitHashKey, "explicit-hash-key", "", "decimal hash key that picks the shard instead of the partition key")
	fs.StringVar(&c.data, "data", "", "data of the one record to write; without it, stdin is read")
	fs.IntVar(&c.batch, "batch", maxPutRecordsCount, "records per PutRecords call when reading stdin, at most 500")
}

func (c *putVerb) validate(fs *flag.FlagSet, args []string) error {
	if err := noPositional(args); err != nil {
		return err
	}
	c.hasData = isSet(fs, "data")
	switch {
	case c.stream == "":
		return errors.New("--stream is required")
	case isSet(fs, "key") && c.randomKeys:
		return errors.New("--key and --random-keys exclude each other")
	case !isSet(fs, "key") && !c.randomKeys:
		return errors.New("--key K or --random-keys is required")
	case isSet(fs, "key") && c.key == "":
		return errors.New("--key must not be empty")
	case c.batch < 1 || c.batch > maxPutRecordsCount:
		return fmt.Errorf("--batch must be between 1 and %d, got %d", maxPutRecordsCount, c.batch)
	case c.hasData && isSet(fs, "batch"):
		return errors.New("--batch applies to records read from stdin, not to --data")
	}
	return nil
}

// partitionKey is the key of the next record.
func (c *putVerb) partitionKey() string {
	if c.randomKeys {
		return fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
	}
	return c.key
}

// putResult is the outcome of one record; Line is its stdin line number.
type putResult struct {
	Line           int    `json:"line,omitempty"`
	ShardID        string `json:"shard_id,omitempty"`
	SequenceNumber string `json:"sequence_number,omitempty"`
	ErrorCode      string `json:"error_code,omitempty"`
	ErrorMessage   string `json:"error_message,omitempty"`
}

func (c *putVerb) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	if c.hasData {
		return c.putOne(ctx, cl.Streams(), std.out)
	}
	return c.putLines(ctx, cl.Streams(), std)
}

func (c *putVerb) putOne(ctx context.Context, streams rifflev1.StreamsClient, out io.Writer) error {
	req := &rifflev1.PutRecordRequest{
		StreamName:      c.stream,
		Data:            []byte(c.data),
		PartitionKey:    c.partitionKey(),
		ExplicitHashKey: c.explicitHashKey,
	}
	var resp *rifflev1.PutRecordResponse
	err := putRetry.do(ctx, func() error {
		callCtx, cancel := c.call(ctx)
		defer cancel()
		var err error
		resp, err = streams.PutRecord(callCtx, req)
		return err
	})
	if err != nil {
		return err
	}
	return writePutResult(out, c.json, putResult{ShardID: resp.GetShardId(), SequenceNumber: resp.GetSequenceNumber()})
}

// inputLine is one record read from stdin, its partition key fixed when
// read so that a retry sends the same key.
type inputLine struct {
	n    int
	data []byte
	key  string
}

func (l inputLine) size() int { return len(l.data) + len(l.key) }

func (c *putVerb) putLines(ctx context.Context, streams rifflev1.StreamsClient, std stdio) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lines := make(chan inputLine, 2*c.batch)
	readErr := make(chan error, 1)
	// A read of stdin cannot be interrupted: if the put ends early this
	// goroutine stays blocked until the process exits, which is soon.
	go func() { readErr <- c.readLines(ctx, std.in, lines) }()

	out := bufio.NewWriter(std.out)
	defer out.Flush()
	b := &batcher{lines: lines, maxCount: c.batch}
	total, failed, permanent := 0, 0, 0
	for {
		batch, err := b.next(ctx)
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			break
		}
		results, err := c.putBatch(ctx, streams, batch)
		if err != nil {
			return err
		}
		for _, r := range results {
			total++
			if r.ErrorCode != "" {
				failed++
				if !client.IsRetryableRecordError(r.ErrorCode) {
					permanent++
				}
			}
			if err := writePutResult(out, c.json, r); err != nil {
				return err
			}
		}
		if err := out.Flush(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if err := <-readErr; err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	if failed == 0 {
		return nil
	}
	code := exitRetryable
	if permanent > 0 {
		code = exitFailure
	}
	return &exitError{code: code, msg: fmt.Sprintf("%d of %d records failed", failed, total)}
}

// readLines sends stdin's lines, newline (and a CR before it) removed,
// until EOF or ctx ends, then closes lines.
func (c *putVerb) readLines(ctx context.Context, in io.Reader, lines chan<- inputLine) error {
	defer close(lines)
	r := bufio.NewReaderSize(in, 64<<10)
	for n := 1; ; n++ {
		data, err := r.ReadBytes('\n')
		if len(data) > 0 {
			data = bytes.TrimSuffix(bytes.TrimSuffix(data, []byte("\n")), []byte("\r"))
			select {
			case lines <- inputLine{n: n, data: data, key: c.partitionKey()}:
			case <-ctx.Done():
				return nil
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// batcher groups stdin lines into PutRecords calls.
type batcher struct {
	lines    <-chan inputLine
	maxCount int
	carry    *inputLine
}

// next waits for one line, then takes the lines already waiting, up to the
// count and byte limits of one call, so that a slow stdin (tail -f) is sent
// line by line and a fast one in full batches. It returns an empty batch at
// the end of the input.
func (b *batcher) next(ctx context.Context) ([]inputLine, error) {
	var batch []inputLine
	size := 0
	// add reports whether the batch can take more.
	add := func(l inputLine) bool {
		if len(batch) > 0 && size+l.size() > maxPutRecordsBytes {
			b.carry = &l
			return false
		}
		batch = append(batch, l)
		size += l.size()
		return len(batch) < b.maxCount
	}
	if b.carry != nil {
		l := *b.carry
		b.carry = nil
		if !add(l) {
			return batch, nil
		}
	} else {
		select {
		case l, ok := <-b.lines:
			if !ok || !add(l) {
				return batch, nil
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for {
		select {
		case l, ok := <-b.lines:
			if !ok || !add(l) {
				return batch, nil
			}
		default:
			return batch, nil
		}
	}
}

// putBatch writes lines with PutRecords, retrying the records that failed
// with a retryable error, and returns one result per line. A record over
// the 1 MiB limit fails here without being sent, so it does not fail the
// whole call.
func (c *putVerb) putBatch(ctx context.Context, streams rifflev1.StreamsClient, lines []inputLine) ([]putResult, error) {
	results := make([]putResult, len(lines))
	var todo []int
	for i, l := range lines {
		results[i].Line = l.n
		if l.size() > maxRecordBytes {
			results[i].ErrorCode = client.ValidationException
			results[i].ErrorMessage = fmt.Sprintf("record of %d bytes with its partition key is over the limit of %d", l.size(), maxRecordBytes)
			continue
		}
		todo = append(todo, i)
	}
	for attempt := 1; len(todo) > 0; attempt++ {
		req := &rifflev1.PutRecordsRequest{StreamName: c.stream, Records: make([]*rifflev1.PutRecordsRequestEntry, len(todo))}
		for j, i := range todo {
			req.Records[j] = &rifflev1.PutRecordsRequestEntry{Data: lines[i].data, PartitionKey: lines[i].key, ExplicitHashKey: c.explicitHashKey}
		}
		var resp *rifflev1.PutRecordsResponse
		err := putRetry.do(ctx, func() error {
			callCtx, cancel := c.call(ctx)
			defer cancel()
			var err error
			resp, err = streams.PutRecords(callCtx, req)
			return err
		})
		if err != nil {
			return nil, err
		}
		if got := len(resp.GetRecords()); got != len(todo) {
			return nil, fmt.Errorf("broker answered %d results for %d records", got, len(todo))
		}
		var retry []int
		for j, entry := range resp.GetRecords() {
			i := todo[j]
			results[i] = putResult{
				Line:           lines[i].n,
				ShardID:        entry.GetShardId(),
				SequenceNumber: entry.GetSequenceNumber(),
				ErrorCode:      entry.GetErrorCode(),
				ErrorMessage:   entry.GetErrorMessage(),
			}
			if client.IsRetryableRecordError(entry.GetErrorCode()) {
				retry = append(retry, i)
			}
		}
		if len(retry) == 0 || attempt >= putRetry.attempts || sleepCtx(ctx, putRetry.backoff(attempt)) != nil {
			break
		}
		todo = retry
	}
	return results, nil
}

func writePutResult(w io.Writer, asJSON bool, r putResult) error {
	if asJSON {
		return writeJSON(w, r)
	}
	var err error
	if r.ErrorCode != "" {
		_, err = fmt.Fprintf(w, "FAILED %s: %s\n", r.ErrorCode, r.ErrorMessage)
	} else {
		_, err = fmt.Fprintf(w, "%s %s\n", r.ShardID, r.SequenceNumber)
	}
	return err
}
