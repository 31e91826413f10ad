package client

import (
	"context"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// DefaultPollInterval is how long a ShardReader waits before polling a
// shard again once it has reached its tip. A shard serves 5 GetRecords
// calls per second, shared by every poller (Kinesis's limit), so a reader
// at its tip takes 4 of them at most.
const DefaultPollInterval = 250 * time.Millisecond

// ReaderConfig tunes a ShardReader. The zero value takes every default.
type ReaderConfig struct {
	// PollInterval is the wait between polls of a shard at its tip (the
	// API has no long poll); DefaultPollInterval when 0.
	PollInterval time.Duration
	// Limit bounds the records of one GetRecords call; the broker's
	// default (10,000) when 0.
	Limit int32
	// Retry paces polls that failed or were throttled; MaxAttempts polls in
	// a row failing make Next return the last error (the next Next goes
	// on).
	Retry RetryPolicy
}

// ShardReader reads a shard by polling (GetShardIterator, GetRecords) and,
// when the shard ends after a split or merge, goes on with its child
// shards. A merged child is read once every parent this reader has read
// has ended; a parent it was not started on is not waited for, so records
// of that other parent may be read after the child's. Shards read at the
// same time (the two children of a split) take turns.
//
// Next must be called from one goroutine at a time; Close may be called
// from any. A ShardReader runs no goroutine of its own.
type ShardReader struct {
	c      *Client
	stream string
	cfg    ReaderConfig

	ctx    context.Context // ended by Close
	cancel context.CancelFunc

	lineage *lineage
	cursors []*readCursor
	turn    int
}

// readCursor is the reader's position in one shard.
type readCursor struct {
	shard    string
	start    StartingPosition
	iterator string
	last     string // sequence number of the last record returned
	pollAt   time.Time
	failures int // polls in a row that failed
	// behind is whether the last batch returned said the shard had
	// records past it: the poll that first finds the tip is returned
	// even without records, so that the caller learns it caught up.
	behind bool
}

// NewShardReader returns a reader of shard shardID of stream, from start.
func NewShardReader(c *Client, stream, shardID string, start StartingPosition, cfg ReaderConfig) *ShardReader {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	cfg.Retry = cfg.Retry.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &ShardReader{
		c: c, stream: stream, cfg: cfg, ctx: ctx, cancel: cancel,
		lineage: newLineage(shardID),
		cursors: []*readCursor{{shard: shardID, start: start.withDefault()}},
	}
}

// Next returns the next records, waiting for some to be written. A batch
// that said the reader was behind (MillisBehindLatest > 0) is followed, once
// a poll finds the shard's tip with nothing more, by one batch without
// records and MillisBehindLatest 0: the caller learns it has caught up
// (the broker says 0 only once the end it reached is the shard's). It
// returns io.EOF when every shard it follows has ended with no child to go
// on with, ErrConsumerClosed after Close, ctx's error when ctx ends, and
// the last error once MaxAttempts polls in a row have failed (throttling
// included). After an error Next may be called again; it resumes where the
// last returned record left off.
//
// The position survives an expired iterator: the reader asks for a new one
// after the last record it returned. Before it has returned any record it
// asks again for its starting position, which for Latest means records
// written while the iterator was unused (over 5 minutes) are skipped.
func (r *ShardReader) Next(ctx context.Context) (Batch, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.ctx, cancel)
	defer stop()
	for {
		if r.ctx.Err() != nil {
			return Batch{}, ErrConsumerClosed
		}
		if len(r.cursors) == 0 {
			return Batch{}, io.EOF
		}
		cur := r.pick()
		if err := sleep(ctx, time.Until(cur.pollAt)); err != nil {
			return Batch{}, r.ctxErr(ctx)
		}
		b, err := r.poll(ctx, cur)
		if err != nil {
			if ctx.Err() != nil {
				return Batch{}, r.ctxErr(ctx)
			}
			return Batch{}, err
		}
		if len(b.Records) > 0 || b.ShardID != "" {
			return b, nil
		}
	}
}

func (r *ShardReader) ctxErr(ctx context.Context) error {
	if r.ctx.Err() != nil {
		return ErrConsumerClosed
	}
	return ctx.Err()
}

// pick returns the cursor due first; cursors due together take turns.
func (r *ShardReader) pick() *readCursor {
	n := len(r.cursors)
	best := r.cursors[r.turn%n]
	for i := 1; i < n; i++ {
		c := r.cursors[(r.turn+i)%n]
		if c.pollAt.Before(best.pollAt) {
			best = c
		}
	}
	r.turn++
	return best
}

// poll makes one GetRecords call for cur. A retryable failure postpones
// cur and returns an empty batch, until MaxAttempts in a row.
func (r *ShardReader) poll(ctx context.Context, cur *readCursor) (Batch, error) {
	if cur.iterator == "" {
		it, err := r.iterator(ctx, cur)
		if err != nil {
			return Batch{}, err
		}
		cur.iterator = it
	}
	actx, cancel := r.cfg.Retry.attemptContext(ctx)
	defer cancel()
	var pr peer.Peer
	resp, err := r.c.Streams().GetRecords(actx, &rifflev1.GetRecordsRequest{ShardIterator: cur.iterator, Limit: r.cfg.Limit}, grpc.Peer(&pr))
	if err != nil {
		if ExceptionName(err) == ExpiredIteratorException {
			cur.iterator = "" // ask again from the last record returned
			return Batch{}, nil
		}
		if classify(ctx, err, false, pr.Addr != nil) != retry {
			return Batch{}, fmt.Errorf("client: read %s: %w", cur.shard, err)
		}
		cur.failures++
		if cur.failures >= r.cfg.Retry.MaxAttempts {
			cur.failures = 0
			return Batch{}, fmt.Errorf("client: read %s: %d polls in a row failed: %w", cur.shard, r.cfg.Retry.MaxAttempts, err)
		}
		cur.pollAt = time.Now().Add(r.cfg.Retry.Delay(cur.failures-1, err))
		return Batch{}, nil
	}
	cur.failures = 0
	last, err := checkAscending(cur.shard, cur.last, resp.GetRecords())
	if err != nil {
		return Batch{}, err
	}
	cur.last = last
	cur.iterator = resp.GetNextShardIterator()
	b := Batch{ShardID: cur.shard, Records: resp.GetRecords(), MillisBehindLatest: resp.GetMillisBehindLatest()}
	if cur.iterator == "" {
		r.ended(cur, resp.GetChildShards())
		if len(b.Records) == 0 {
			return Batch{}, nil
		}
		return b, nil
	}
	cur.pollAt = time.Now()
	if resp.GetMillisBehindLatest() == 0 {
		cur.pollAt = cur.pollAt.Add(r.cfg.PollInterval)
	}
	caughtUp := len(b.Records) == 0 && b.MillisBehindLatest == 0 && cur.behind
	cur.behind = b.MillisBehindLatest > 0
	if len(b.Records) == 0 && !caughtUp {
		return Batch{}, nil // nothing to tell: Next polls on
	}
	return b, nil
}

// iterator asks for an iterator at cur's position.
func (r *ShardReader) iterator(ctx context.Context, cur *readCursor) (string, error) {
	pos := cur.start
	if cur.last != "" {
		pos = AfterSequenceNumber(cur.last)
	}
	var resp *rifflev1.GetShardIteratorResponse
	err := r.cfg.Retry.Read(ctx, func(ctx context.Context, opts ...grpc.CallOption) error {
		var err error
		resp, err = r.c.Streams().GetShardIterator(ctx, pos.iteratorRequest(r.stream, cur.shard), opts...)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("client: shard iterator for %s: %w", cur.shard, err)
	}
	return resp.GetShardIterator(), nil
}

// ended drops cur, whose shard has ended, and starts the children that
// may start.
func (r *ShardReader) ended(cur *readCursor, children []*rifflev1.ChildShard) {
	for i, c := range r.cursors {
		if c == cur {
			r.cursors = append(r.cursors[:i], r.cursors[i+1:]...)
			break
		}
	}
	for _, id := range r.lineage.end(cur.shard, children) {
		r.cursors = append(r.cursors, &readCursor{shard: id, start: TrimHorizon(), pollAt: time.Now()})
	}
}

// Close stops the reader; a Next in progress returns ErrConsumerClosed.
func (r *ShardReader) Close() error {
	r.cancel()
	return nil
}
