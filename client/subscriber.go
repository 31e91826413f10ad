package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// DefaultIdleTimeout is SubscriberConfig.IdleTimeout's default, several
// times the broker's heartbeat of 5 seconds.
const DefaultIdleTimeout = 30 * time.Second

// SubscriberConfig tunes a Subscriber. The zero value takes every default.
type SubscriberConfig struct {
	// Retry paces subscribing again after a failure; MaxAttempts failures
	// in a row with no event between them end the subscriber with the last
	// error. AttemptTimeout does not apply: a subscription lasts minutes.
	Retry RetryPolicy
	// IdleTimeout is how long a subscription may go without an event before
	// it is given up as dead and taken up again (the broker sends one every
	// few seconds even on a quiet shard; a silent connection may be a
	// network partition); DefaultIdleTimeout when 0.
	IdleTimeout time.Duration
	// Logger receives the subscriber's logs; slog.Default() when nil.
	Logger *slog.Logger
}

// Subscriber receives a shard's records through an enhanced fan-out
// consumer (SubscribeToShard) and, when the shard ends after a split or
// merge, goes on with its child shards, as ShardReader does.
//
// A subscription ends after its lifetime (5 minutes) or when the node
// serving it goes away; the Subscriber then subscribes again after the
// last continuation sequence number, so that it delivers every record once
// and in order. It stops for good, returning the error from Next, when the
// subscription was taken over by a newer one for the same consumer and
// shard (ResourceInUseException), when the consumer or shard is gone
// (ResourceNotFoundException), on any other error that is not retryable,
// after MaxAttempts failed subscriptions in a row, or when the broker
// breaks the order of records (ErrOrderViolation).
//
// Next must be called from one goroutine at a time. One goroutine per
// shard being received runs until the shard ends or Close.
type Subscriber struct {
	c           *Client
	consumerARN string
	cfg         SubscriberConfig
	log         *slog.Logger

	ctx    context.Context // ended by Close or a terminal error
	cancel context.CancelFunc
	events chan subEvent

	// mu orders starting a shard goroutine before Close's wait for all.
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup

	subscriptions, failures atomic.Int64

	// Owned by Next's caller.
	lineage *lineage
	active  int // shard goroutines not yet ended
	err     error
}

// subEvent is what a shard goroutine hands to Next: records, the end of
// the shard, or the error that ends the subscriber.
type subEvent struct {
	batch    Batch
	ended    bool
	children []*rifflev1.ChildShard
	err      error
}

// NewSubscriber starts receiving shard shardID through the registered
// consumer consumerARN, from start.
func NewSubscriber(c *Client, consumerARN, shardID string, start StartingPosition, cfg SubscriberConfig) *Subscriber {
	return NewShardsSubscriber(c, consumerARN, []string{shardID}, start, cfg)
}

// NewShardsSubscriber starts receiving several shards of one stream through
// the registered consumer consumerARN, each from start, and their
// descendants: a child starts once every parent being received has ended,
// so the child of two merged shards is received once, after both. Given
// the open shards of a stream, it receives the whole stream as it splits
// and merges. shardIDs must not be empty.
func NewShardsSubscriber(c *Client, consumerARN string, shardIDs []string, start StartingPosition, cfg SubscriberConfig) *Subscriber {
	cfg.Retry = cfg.Retry.withDefaults()
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Subscriber{
		c: c, consumerARN: consumerARN, cfg: cfg,
		log:    cfg.Logger.With("consumer", consumerARN),
		ctx:    ctx,
		cancel: cancel,
		events: make(chan subEvent),
	}
	s.lineage = newLineage(shardIDs...)
	for _, id := range shardIDs {
		s.follow(id, start.withDefault())
	}
	return s
}

// Next returns the next records. It returns io.EOF when every shard
// followed has ended with no child to go on with, ErrConsumerClosed after
// Close, ctx's error when ctx ends (the subscriber goes on), and the
// subscriber's terminal error, then and ever after, when it has stopped.
func (s *Subscriber) Next(ctx context.Context) (Batch, error) {
	for {
		if s.err != nil {
			return Batch{}, s.err
		}
		if s.active == 0 {
			return Batch{}, io.EOF
		}
		select {
		case ev := <-s.events:
			switch {
			case ev.err != nil:
				s.err = ev.err
				s.cancel()
			case ev.ended:
				s.active--
				for _, id := range s.lineage.end(ev.batch.ShardID, ev.children) {
					s.follow(id, TrimHorizon())
				}
			default:
				return ev.batch, nil
			}
		case <-s.ctx.Done():
			if s.err == nil {
				return Batch{}, ErrConsumerClosed
			}
		case <-ctx.Done():
			return Batch{}, ctx.Err()
		}
	}
}

// SubscriberStats count a subscriber's subscriptions.
type SubscriberStats struct {
	// Subscriptions is the number of SubscribeToShard calls made.
	Subscriptions int64
	// Failures is the number of them that ended with an error rather than
	// at the end of their lifetime or of their shard.
	Failures int64
}

// Stats returns the subscriber's counters.
func (s *Subscriber) Stats() SubscriberStats {
	return SubscriberStats{Subscriptions: s.subscriptions.Load(), Failures: s.failures.Load()}
}

// Close stops the subscriber and waits for its goroutines.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// follow starts the goroutine that receives one shard.
func (s *Subscriber) follow(shard string, start StartingPosition) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.active++
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		sh := &shardSubscription{s: s, shard: shard, pos: start}
		ev := sh.run()
		select {
		case s.events <- ev:
		case <-s.ctx.Done():
		}
	}()
}

// shardSubscription is the state of one shard's goroutine.
type shardSubscription struct {
	s     *Subscriber
	shard string
	// pos is where the next subscription starts.
	pos StartingPosition
	// floor is the last continuation number (or record) seen: every later
	// record must be above it. "" before the first one.
	floor    string
	failures int // subscriptions in a row that failed before any event
}

// run subscribes until the shard ends or an error stops it, and returns
// the event that says which.
func (sh *shardSubscription) run() subEvent {
	s := sh.s
	for {
		end, err := sh.subscribe()
		if s.ctx.Err() != nil {
			return subEvent{err: ErrConsumerClosed}
		}
		if end != nil {
			return *end
		}
		if err == nil {
			continue // clean end of a subscription's lifetime
		}
		s.failures.Add(1)
		if errors.Is(err, ErrOrderViolation) || classify(s.ctx, err, false, true) != retry {
			return subEvent{err: fmt.Errorf("client: subscription to %s: %w", sh.shard, err)}
		}
		sh.failures++
		if sh.failures >= s.cfg.Retry.MaxAttempts {
			return subEvent{err: fmt.Errorf("client: subscription to %s: %d attempts in a row failed: %w", sh.shard, sh.failures, err)}
		}
		wait := s.cfg.Retry.Delay(sh.failures-1, err)
		s.log.Debug("subscribing again", "shard", sh.shard, "after", wait, "error", err)
		if sleep(s.ctx, wait) != nil {
			return subEvent{err: ErrConsumerClosed}
		}
	}
}

// subscribe runs one subscription. It returns the shard's end event when
// the shard ended, nil and nil when the subscription ended cleanly, or the
// error that ended it.
func (sh *shardSubscription) subscribe() (*subEvent, error) {
	s := sh.s
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	var idle atomic.Bool
	timer := time.AfterFunc(s.cfg.IdleTimeout, func() {
		idle.Store(true)
		cancel()
	})
	defer timer.Stop()
	s.subscriptions.Add(1)
	stream, err := s.c.Streams().SubscribeToShard(ctx, &rifflev1.SubscribeToShardRequest{
		ConsumerArn: s.consumerARN, ShardId: sh.shard, StartingPosition: sh.pos.proto(),
	})
	for err == nil {
		var ev *rifflev1.SubscribeToShardEvent
		ev, err = stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			break
		}
		// A consumer slow to call Next is not a dead subscription: the
		// clock runs only while waiting for the broker.
		timer.Stop()
		sh.failures = 0
		if err := sh.advance(ev); err != nil {
			return nil, err
		}
		if len(ev.GetRecords()) > 0 {
			b := Batch{ShardID: sh.shard, Records: ev.GetRecords(), MillisBehindLatest: ev.GetMillisBehindLatest()}
			select {
			case s.events <- subEvent{batch: b}:
			case <-s.ctx.Done():
				return nil, s.ctx.Err()
			}
		}
		if len(ev.GetChildShards()) > 0 && ev.GetContinuationSequenceNumber() == "" {
			return &subEvent{batch: Batch{ShardID: sh.shard}, ended: true, children: ev.GetChildShards()}, nil
		}
		timer.Reset(s.cfg.IdleTimeout)
	}
	if idle.Load() && s.ctx.Err() == nil {
		return nil, status.Errorf(codes.DeadlineExceeded, "no event for %v", s.cfg.IdleTimeout)
	}
	return nil, err
}

// advance checks an event against what came before and moves the position
// where a new subscription would start.
//
// The broker's continuation number is the sequence number of the last
// record sent, or of the record before the starting position when none
// has been. It is empty only in the last event of a closed shard, or when
// the subscription started at the shard's first offset and has sent
// nothing: then TRIM_HORIZON resumes exactly, since nothing precedes
// offset 0.
func (sh *shardSubscription) advance(ev *rifflev1.SubscribeToShardEvent) error {
	recs := ev.GetRecords()
	last, err := checkAscending(sh.shard, sh.floor, recs)
	if err != nil {
		return err
	}
	cont := ev.GetContinuationSequenceNumber()
	switch {
	case cont == "" && len(ev.GetChildShards()) > 0:
		// The shard's last event.
	case cont == "" && last != "":
		// Resuming at TRIM_HORIZON would deliver these records again.
		return fmt.Errorf("%w: %s: no continuation number after record %s", ErrOrderViolation, sh.shard, last)
	case cont == "":
		sh.pos = TrimHorizon()
	case len(recs) > 0 && cont != last:
		return fmt.Errorf("%w: %s: continuation %s is not the last record sent (%s)", ErrOrderViolation, sh.shard, cont, last)
	case len(recs) == 0 && sh.floor != "" && cont != sh.floor:
		return fmt.Errorf("%w: %s: continuation moved from %s to %s with no record sent", ErrOrderViolation, sh.shard, sh.floor, cont)
	default:
		sh.pos, sh.floor = AfterSequenceNumber(cont), cont
	}
	return nil
}
