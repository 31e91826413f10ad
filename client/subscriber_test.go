package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

const consumerARN = "arn:aws:kinesis:local:000000000000:stream/s/consumer/c:1"

// fakeEvent builds an event with records at the given offsets of shard,
// and continuation cont ("" for none).
func fakeEvent(shard int, cont string, offsets ...int) *rifflev1.SubscribeToShardEvent {
	ev := &rifflev1.SubscribeToShardEvent{ContinuationSequenceNumber: cont}
	for _, off := range offsets {
		ev.Records = append(ev.Records, &rifflev1.Record{SequenceNumber: fakeSeq(shard, off), Data: []byte(fmt.Sprintf("%d/%d", shard, off))})
	}
	return ev
}

// script is a fake subscription: the events to send, then how it ends
// (nil for the clean end of its lifetime, block for never).
type script struct {
	events []*rifflev1.SubscribeToShardEvent
	end    error
	block  bool
}

// scripted serves the i-th subscription from scripts[i-1]; later ones
// block.
func scripted(scripts ...script) func(context.Context, int, *rifflev1.SubscribeToShardRequest, func(*rifflev1.SubscribeToShardEvent) error) error {
	return func(ctx context.Context, call int, _ *rifflev1.SubscribeToShardRequest, send func(*rifflev1.SubscribeToShardEvent) error) error {
		if call > len(scripts) {
			<-ctx.Done()
			return ctx.Err()
		}
		s := scripts[call-1]
		for _, ev := range s.events {
			if err := send(ev); err != nil {
				return err
			}
		}
		if s.block {
			<-ctx.Done()
			return ctx.Err()
		}
		return s.end
	}
}

func positions(reqs []*rifflev1.SubscribeToShardRequest) []string {
	var out []string
	for _, r := range reqs {
		p := r.GetStartingPosition()
		s := p.GetType().String()
		if p.GetSequenceNumber() != "" {
			s += " " + p.GetSequenceNumber()
		}
		out = append(out, r.GetShardId()+" "+s)
	}
	return out
}

func newTestSubscriber(t *testing.T, f *fakeStreams, start StartingPosition, attempts int) *Subscriber {
	t.Helper()
	s := NewSubscriber(f.start(t), consumerARN, "shardId-000000000000", start, SubscriberConfig{Retry: fastPolicy(attempts)})
	t.Cleanup(func() { s.Close() })
	return s
}

const (
	trim  = "shardId-000000000000 SHARD_ITERATOR_TYPE_TRIM_HORIZON"
	after = "shardId-000000000000 SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER "
)

// A subscription that ends cleanly (its lifetime) or fails retryably
// (node gone: Unavailable; broker: ServiceUnavailable) is taken up again
// after the last continuation number: every record once, in order.
func TestSubscriberResubscribesAfterEndAndFailures(t *testing.T) {
	f := newFakeStreams(1)
	f.subscribe = scripted(
		script{events: []*rifflev1.SubscribeToShardEvent{fakeEvent(0, fakeSeq(0, 2), 0, 1, 2), fakeEvent(0, fakeSeq(0, 2))}},
		script{events: []*rifflev1.SubscribeToShardEvent{fakeEvent(0, fakeSeq(0, 4), 3, 4)}, end: status.Error(codes.Unavailable, "error reading from server: EOF")},
		script{events: []*rifflev1.SubscribeToShardEvent{fakeEvent(0, fakeSeq(0, 5), 5)}, end: testBrokerError(codes.Unavailable, ServiceUnavailable, "true", "")},
		script{end: status.Error(codes.Unavailable, "connection refused")},
		script{events: []*rifflev1.SubscribeToShardEvent{fakeEvent(0, fakeSeq(0, 9), 6, 7, 8, 9)}, block: true},
	)
	s := newTestSubscriber(t, f, TrimHorizon(), 5)
	got, _ := readN(t, s.Next, 10)
	want := []string{"0/0", "0/1", "0/2", "0/3", "0/4", "0/5", "0/6", "0/7", "0/8", "0/9"}
	if !slices.Equal(got, want) {
		t.Fatalf("received %v", got)
	}
	wantPos := []string{trim, after + fakeSeq(0, 2), after + fakeSeq(0, 4), after + fakeSeq(0, 5), after + fakeSeq(0, 5)}
	if got := positions(f.subscribeRequests()); !slices.Equal(got[:5], wantPos) {
		t.Errorf("subscriptions started at\n%v\nwant\n%v", got, wantPos)
	}
	if st := s.Stats(); st.Subscriptions != 5 || st.Failures != 3 {
		t.Errorf("stats %+v, want 5 subscriptions of which 3 failed", st)
	}
}

// Taken over by a newer subscription (ResourceInUseException) or with the
// consumer gone (ResourceNotFoundException), the subscriber stops for good
// and says why; it does not subscribe again.
func TestSubscriberStopsOnTerminalErrors(t *testing.T) {
	for _, exc := range []struct {
		code codes.Code
		name string
	}{{codes.FailedPrecondition, ResourceInUseException}, {codes.NotFound, ResourceNotFoundException}} {
		t.Run(exc.name, func(t *testing.T) {
			f := newFakeStreams(1)
			f.subscribe = scripted(script{
				events: []*rifflev1.SubscribeToShardEvent{fakeEvent(0, fakeSeq(0, 0), 0)},
				end:    testBrokerError(exc.code, exc.name, "false", ""),
			})
			s := newTestSubscriber(t, f, TrimHorizon(), 5)
			readN(t, s.Next, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for range 2 {
				if _, err := s.Next(ctx); ExceptionName(err) != exc.name {
					t.Fatalf("err = %v, want %s", err, exc.name)
				}
			}
			s.Close()
			if n := f.count("SubscribeToShard"); n != 1 {
				t.Errorf("%d subscriptions, want 1", n)
			}
		})
	}
}

// Failing subscriptions are retried with back-off, at most MaxAttempts in
// a row.
func TestSubscriberBoundsRetries(t *testing.T) {
	f := newFakeStreams(1)
	f.subscribe = func(context.Context, int, *rifflev1.SubscribeToShardRequest, func(*rifflev1.SubscribeToShardEvent) error) error {
		return status.Error(codes.Unavailable, "connection refused")
	}
	s := newTestSubscriber(t, f, TrimHorizon(), 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Next(ctx); status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	s.Close()
	if n := f.count("SubscribeToShard"); n != 4 {
		t.Errorf("%d subscriptions, want 4", n)
	}
}

// An empty continuation number with no child shards means the
// subscription sits at offset 0 and has sent nothing: TRIM_HORIZON resumes
// exactly. After records were sent, an empty one would repeat them: that
// is reported as an order violation, as is a record sent twice.
func TestSubscriberEmptyContinuation(t *testing.T) {
	f := newFakeStreams(1)
	f.subscribe = scripted(
		script{events: []*rifflev1.SubscribeToShardEvent{fakeEvent(0, "")}},
		script{events: []*rifflev1.SubscribeToShardEvent{fakeEvent(0, ""), fakeEvent(0, fakeSeq(0, 1), 0, 1)}},
		script{block: true},
	)
	s := newTestSubscriber(t, f, Latest(), 5)
	got, _ := readN(t, s.Next, 2)
	if !slices.Equal(got, []string{"0/0", "0/1"}) {
		t.Fatalf("received %v", got)
	}
	waitUntil(t, 10*time.Second, "the third subscription", func() bool { return f.count("SubscribeToShard") == 3 })
	wantPos := []string{
		"shardId-000000000000 SHARD_ITERATOR_TYPE_LATEST",
		trim,
		after + fakeSeq(0, 1),
	}
	if got := positions(f.subscribeRequests()); !slices.Equal(got, wantPos) {
		t.Errorf("subscriptions started at\n%v\nwant\n%v", got, wantPos)
	}

	for name, events := range map[string][]*rifflev1.SubscribeToShardEvent{
		"empty after records":      {fakeEvent(0, fakeSeq(0, 0), 0), fakeEvent(0, "")},
		"record twice":             {fakeEvent(0, fakeSeq(0, 1), 0, 1), fakeEvent(0, fakeSeq(0, 1), 1)},
		"continuation past record": {fakeEvent(0, fakeSeq(0, 5), 0)},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeStreams(1)
			f.subscribe = scripted(script{events: events, block: true})
			s := newTestSubscriber(t, f, TrimHorizon(), 5)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for {
				_, err := s.Next(ctx)
				if errors.Is(err, ErrOrderViolation) {
					return
				}
				if err != nil {
					t.Fatalf("err = %v, want ErrOrderViolation", err)
				}
			}
		})
	}
}

// At the end of a closed shard (child shards, no continuation) the
// subscriber goes on with the children from their start, and says which
// shard each record came from.
func TestSubscriberFollowsChildShards(t *testing.T) {
	f := newFakeStreams(1)
	final := fakeEvent(0, "", 2)
	final.ChildShards = []*rifflev1.ChildShard{{ShardId: "shardId-000000000001", ParentShards: []string{"shardId-000000000000"}}}
	f.subscribe = func(ctx context.Context, call int, req *rifflev1.SubscribeToShardRequest, send func(*rifflev1.SubscribeToShardEvent) error) error {
		var events []*rifflev1.SubscribeToShardEvent
		switch req.ShardId {
		case "shardId-000000000000":
			events = []*rifflev1.SubscribeToShardEvent{fakeEvent(0, fakeSeq(0, 1), 0, 1), final}
		case "shardId-000000000001":
			events = []*rifflev1.SubscribeToShardEvent{fakeEvent(1, fakeSeq(1, 0), 0)}
		}
		for _, ev := range events {
			if err := send(ev); err != nil {
				return err
			}
		}
		if req.ShardId == "shardId-000000000000" {
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	}
	s := newTestSubscriber(t, f, TrimHorizon(), 5)
	got, shards := readN(t, s.Next, 4)
	if !slices.Equal(got, []string{"0/0", "0/1", "0/2", "1/0"}) {
		t.Fatalf("received %v", got)
	}
	if shards[2] != "shardId-000000000000" || shards[3] != "shardId-000000000001" {
		t.Errorf("shards %v", shards)
	}
	wantPos := []string{trim, "shardId-000000000001 SHARD_ITERATOR_TYPE_TRIM_HORIZON"}
	if got := positions(f.subscribeRequests()); !slices.Equal(got, wantPos) {
		t.Errorf("subscriptions started at %v, want %v", got, wantPos)
	}
}

// Close stops the subscriber's goroutines, and Next says it is closed.
func TestSubscriberClose(t *testing.T) {
	f := newFakeStreams(1)
	f.subscribe = scripted(script{block: true})
	s := newTestSubscriber(t, f, TrimHorizon(), 5)
	waitUntil(t, 10*time.Second, "a subscription", func() bool { return f.count("SubscribeToShard") == 1 })
	s.Close()
	if _, err := s.Next(context.Background()); !errors.Is(err, ErrConsumerClosed) {
		t.Errorf("err = %v, want ErrConsumerClosed", err)
	}
}

// A subscription that goes silent (no event, not even the broker's
// heartbeat, for IdleTimeout) is given up and taken up again from the
// last continuation number.
func TestSubscriberResubscribesWhenIdle(t *testing.T) {
	f := newFakeStreams(1)
	f.subscribe = scripted(
		script{events: []*rifflev1.SubscribeToShardEvent{fakeEvent(0, fakeSeq(0, 0), 0)}, block: true},
		script{events: []*rifflev1.SubscribeToShardEvent{fakeEvent(0, fakeSeq(0, 1), 1)}, block: true},
	)
	s := NewSubscriber(f.start(t), consumerARN, "shardId-000000000000", TrimHorizon(),
		SubscriberConfig{Retry: fastPolicy(5), IdleTimeout: 100 * time.Millisecond})
	defer s.Close()
	if got, _ := readN(t, s.Next, 2); !slices.Equal(got, []string{"0/0", "0/1"}) {
		t.Fatalf("received %v", got)
	}
	if got := positions(f.subscribeRequests()); got[1] != after+fakeSeq(0, 0) {
		t.Errorf("subscriptions started at %v", got)
	}
}
