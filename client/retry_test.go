package client

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Back-off: the ceiling doubles from BaseDelay up to MaxDelay, and each
// wait is a uniform draw below it (full jitter), so throttled clients
// spread out instead of coming back together.
func TestBackoffGrowsWithFullJitter(t *testing.T) {
	p := RetryPolicy{BaseDelay: 10 * time.Millisecond, MaxDelay: 200 * time.Millisecond}
	wantCeilings := []time.Duration{10, 20, 40, 80, 160, 200, 200, 200}
	for n, want := range wantCeilings {
		if got := p.Ceiling(n); got != want*time.Millisecond {
			t.Errorf("Ceiling(%d) = %v, want %v", n, got, want*time.Millisecond)
		}
	}
	if got := p.Ceiling(1000); got != 200*time.Millisecond {
		t.Errorf("Ceiling(1000) = %v: overflow?", got)
	}
	for n := range 6 {
		ceiling := p.Ceiling(n)
		distinct := map[time.Duration]bool{}
		var sum time.Duration
		const draws = 2000
		for range draws {
			d := p.Delay(n, errors.New("no RetryInfo"))
			if d < 0 || d > ceiling {
				t.Fatalf("Delay(%d) = %v outside [0, %v]", n, d, ceiling)
			}
			distinct[d] = true
			sum += d
		}
		if len(distinct) < draws/2 {
			t.Errorf("Delay(%d): only %d distinct values in %d draws: not jittered", n, len(distinct), draws)
		}
		// The mean of a uniform draw is half the ceiling.
		if mean := sum / draws; mean < ceiling*4/10 || mean > ceiling*6/10 {
			t.Errorf("Delay(%d): mean %v, want about %v", n, mean, ceiling/2)
		}
	}
	if d := DefaultRetryPolicy(); d.MaxAttempts != 8 || d.BaseDelay != 50*time.Millisecond || d.MaxDelay != 5*time.Second {
		t.Errorf("defaults = %+v", d)
	}
}

// The broker's RetryInfo is a floor: a client never comes back sooner than
// the broker asked, even when its own draw is shorter.
func TestDelayHonoursRetryInfo(t *testing.T) {
	p := RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}
	throttled := throttledError(300 * time.Millisecond)
	for range 100 {
		if d := p.Delay(0, throttled); d < 300*time.Millisecond {
			t.Fatalf("Delay = %v, below the broker's 300ms", d)
		}
	}
	// A longer draw of our own stays.
	p = RetryPolicy{BaseDelay: time.Second, MaxDelay: time.Second}
	longer := false
	for range 100 {
		d := p.Delay(0, throttledError(time.Millisecond))
		if d < time.Millisecond {
			t.Fatalf("Delay = %v, below the broker's 1ms", d)
		}
		longer = longer || d > 10*time.Millisecond
	}
	if !longer {
		t.Error("the broker's short delay replaced the jittered one")
	}
}

// fastPolicy retries quickly, for tests.
func fastPolicy(attempts int) RetryPolicy {
	return RetryPolicy{MaxAttempts: attempts, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
}

// Attempts are bounded: a call that keeps failing retryably is made
// MaxAttempts times, then its last error is returned.
func TestRetryAttemptsBounded(t *testing.T) {
	var calls int
	unavailable := status.Error(codes.Unavailable, "connection refused")
	err := fastPolicy(5).Read(context.Background(), func(context.Context, ...grpc.CallOption) error {
		calls++
		return unavailable
	})
	if calls != 5 {
		t.Errorf("calls = %d, want 5", calls)
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("err = %v, want the last Unavailable", err)
	}
	// A non-retryable error is returned at once.
	calls = 0
	err = fastPolicy(5).Read(context.Background(), func(context.Context, ...grpc.CallOption) error {
		calls++
		return testBrokerError(codes.NotFound, ResourceNotFoundException, "false", "")
	})
	if calls != 1 || ExceptionName(err) != ResourceNotFoundException {
		t.Errorf("calls = %d, err = %v; want 1 call and the ResourceNotFoundException", calls, err)
	}
}

// ctx bounds the whole retry loop, waits included.
func TestRetryStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := RetryPolicy{MaxAttempts: 100, BaseDelay: time.Hour, MaxDelay: time.Hour}.Read(ctx, func(context.Context, ...grpc.CallOption) error {
		return status.Error(codes.Unavailable, "down")
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
}

// scriptedServer answers PutRecord and GetRecords from scripts of errors
// and counts the calls.
type scriptedServer struct {
	rifflev1.UnimplementedStreamsServer
	puts, gets atomic.Int32
	putErr     func(n int) error // n from 1; nil for success
	getErr     func(n int) error
	// block, when set, makes PutRecord wait for it to close.
	block chan struct{}
	// arrived is signalled when a blocked PutRecord is in the handler.
	arrived chan struct{}
}

func (s *scriptedServer) PutRecord(ctx context.Context, _ *rifflev1.PutRecordRequest) (*rifflev1.PutRecordResponse, error) {
	n := int(s.puts.Add(1))
	if s.block != nil {
		s.arrived <- struct{}{}
		select {
		case <-s.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if s.putErr != nil {
		if err := s.putErr(n); err != nil {
			return nil, err
		}
	}
	return &rifflev1.PutRecordResponse{ShardId: "shardId-000000000000", SequenceNumber: "1"}, nil
}

func (s *scriptedServer) GetRecords(context.Context, *rifflev1.GetRecordsRequest) (*rifflev1.GetRecordsResponse, error) {
	n := int(s.gets.Add(1))
	if s.getErr != nil {
		if err := s.getErr(n); err != nil {
			return nil, err
		}
	}
	return &rifflev1.GetRecordsResponse{NextShardIterator: "next"}, nil
}

func dialScripted(t *testing.T, s rifflev1.StreamsServer) *Client {
	t.Helper()
	addr := startServer(t, s)
	c, err := Dial(context.Background(), []string{addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func putRecord(c *Client, p RetryPolicy) error {
	return p.Write(context.Background(), func(ctx context.Context, opts ...grpc.CallOption) error {
		_, err := c.Streams().PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "s", PartitionKey: "k"}, opts...)
		return err
	})
}

func getRecords(c *Client, p RetryPolicy) error {
	return p.Read(context.Background(), func(ctx context.Context, opts ...grpc.CallOption) error {
		_, err := c.Streams().GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: "x"}, opts...)
		return err
	})
}

// Contract 4 and 6: a write the broker says may have been applied is not
// sent again by default (that could store it twice); the caller gets
// ErrOutcomeUnknown. RetryUnknownOutcome opts into sending it again.
func TestWriteWithUnknownOutcomeIsNotRetried(t *testing.T) {
	s := &scriptedServer{putErr: func(int) error {
		return testBrokerError(codes.Unknown, InternalFailure, "false", "unknown")
	}}
	c := dialScripted(t, s)
	err := putRecord(c, fastPolicy(5))
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("err = %v, want ErrOutcomeUnknown", err)
	}
	var oue *OutcomeUnknownError
	if !errors.As(err, &oue) || ExceptionName(err) != InternalFailure {
		t.Errorf("err = %v: want an *OutcomeUnknownError carrying the broker's InternalFailure", err)
	}
	if n := s.puts.Load(); n != 1 {
		t.Errorf("PutRecord called %d times, want 1", n)
	}

	p := fastPolicy(3)
	p.RetryUnknownOutcome = true
	s.puts.Store(0)
	s.putErr = func(n int) error {
		if n < 3 {
			return testBrokerError(codes.Unknown, InternalFailure, "false", "unknown")
		}
		return nil
	}
	if err := putRecord(c, p); err != nil {
		t.Fatalf("with RetryUnknownOutcome: %v", err)
	}
	if n := s.puts.Load(); n != 3 {
		t.Errorf("with RetryUnknownOutcome: %d calls, want 3", n)
	}
}

// A write the broker refused as not applied and retryable (throttled, no
// leader) is sent again until it succeeds.
func TestWriteNotAppliedIsRetried(t *testing.T) {
	s := &scriptedServer{putErr: func(n int) error {
		switch n {
		case 1:
			return throttledError(time.Millisecond)
		case 2:
			return testBrokerError(codes.Unavailable, ServiceUnavailable, "true", "")
		}
		return nil
	}}
	c := dialScripted(t, s)
	if err := putRecord(c, fastPolicy(5)); err != nil {
		t.Fatal(err)
	}
	if n := s.puts.Load(); n != 3 {
		t.Errorf("PutRecord called %d times, want 3", n)
	}
}

// A write whose connection fails after the request was sent may have been
// applied: ErrOutcomeUnknown, one attempt. The same failure of a read is
// retried.
func TestTransportFailureAfterSend(t *testing.T) {
	s := &scriptedServer{
		putErr: func(int) error { return status.Error(codes.Unavailable, "transport is closing") },
		getErr: func(n int) error {
			if n < 3 {
				return status.Error(codes.Unavailable, "transport is closing")
			}
			return nil
		},
	}
	c := dialScripted(t, s)
	if err := putRecord(c, fastPolicy(5)); !errors.Is(err, ErrOutcomeUnknown) || status.Code(err) != codes.Unavailable {
		t.Errorf("write: err = %v, want ErrOutcomeUnknown wrapping Unavailable", err)
	}
	if n := s.puts.Load(); n != 1 {
		t.Errorf("write: %d calls, want 1", n)
	}
	if err := getRecords(c, fastPolicy(5)); err != nil {
		t.Errorf("read: %v", err)
	}
	if n := s.gets.Load(); n != 3 {
		t.Errorf("read: %d calls, want 3", n)
	}
}

// A node that dies while it holds a write: the connection breaks after the
// request reached it, so the write's outcome is unknown.
func TestWriteInFlightWhenNodeDies(t *testing.T) {
	s := &scriptedServer{block: make(chan struct{}), arrived: make(chan struct{}, 1)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rifflev1.RegisterStreamsServer(srv, s)
	go srv.Serve(lis)
	defer srv.Stop()
	c, err := Dial(context.Background(), []string{lis.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() { done <- putRecord(c, fastPolicy(5)) }()
	<-s.arrived
	srv.Stop() // closes the connection under the call
	err = <-done
	if !errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("err = %v, want ErrOutcomeUnknown", err)
	}
	if n := s.puts.Load(); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}

// A write that never reached a node (none is reachable) is safe to send
// again: it is retried, and never reported as of unknown outcome.
func TestWriteNeverSentIsRetried(t *testing.T) {
	s := &scriptedServer{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rifflev1.RegisterStreamsServer(srv, s)
	go srv.Serve(lis)
	c, err := Dial(context.Background(), []string{lis.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv.Stop()
	// Wait until the channel knows the node is gone.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for st := c.Conn().GetState(); st != connectivity.TransientFailure; st = c.Conn().GetState() {
		if !c.Conn().WaitForStateChange(ctx, st) {
			t.Fatalf("channel still %v", st)
		}
	}
	var calls int
	err = fastPolicy(4).Write(context.Background(), func(ctx context.Context, opts ...grpc.CallOption) error {
		calls++
		_, err := c.Streams().PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "s", PartitionKey: "k"}, opts...)
		return err
	})
	if errors.Is(err, ErrOutcomeUnknown) || status.Code(err) != codes.Unavailable {
		t.Errorf("err = %v, want Unavailable and not ErrOutcomeUnknown", err)
	}
	if calls != 4 {
		t.Errorf("%d attempts, want 4", calls)
	}
}

// An attempt that hangs is cut by AttemptTimeout: a read is tried again,
// a write is reported as of unknown outcome.
func TestAttemptTimeout(t *testing.T) {
	s := &scriptedServer{block: make(chan struct{}), arrived: make(chan struct{}, 10)}
	c := dialScripted(t, s)
	p := fastPolicy(3)
	p.AttemptTimeout = 50 * time.Millisecond
	err := putRecord(c, p)
	close(s.block)
	if !errors.Is(err, ErrOutcomeUnknown) || status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("write: err = %v, want ErrOutcomeUnknown wrapping DeadlineExceeded", err)
	}

	slow := &slowGetServer{}
	c2 := dialScripted(t, slow)
	if err := getRecords(c2, p); err != nil {
		t.Errorf("read: %v", err)
	}
	if n := slow.calls.Load(); n != 2 {
		t.Errorf("read: %d calls, want 2 (the first timed out)", n)
	}
}

// slowGetServer hangs on its first GetRecords.
type slowGetServer struct {
	rifflev1.UnimplementedStreamsServer
	calls atomic.Int32
}

func (s *slowGetServer) GetRecords(ctx context.Context, _ *rifflev1.GetRecordsRequest) (*rifflev1.GetRecordsResponse, error) {
	if s.calls.Add(1) == 1 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &rifflev1.GetRecordsResponse{}, nil
}

// Reads are retried on a broker's retryable error and on Unavailable, and
// honour the broker's RetryInfo between attempts.
func TestReadRetriedOnUnavailableAndThrottling(t *testing.T) {
	s := &scriptedServer{getErr: func(n int) error {
		switch n {
		case 1:
			return status.Error(codes.Unavailable, "connection refused")
		case 2:
			return testBrokerError(codes.Unavailable, ServiceUnavailable, "true", "")
		case 3:
			return throttledError(100 * time.Millisecond)
		}
		return nil
	}}
	c := dialScripted(t, s)
	start := time.Now()
	if err := getRecords(c, fastPolicy(8)); err != nil {
		t.Fatal(err)
	}
	if n := s.gets.Load(); n != 4 {
		t.Errorf("%d calls, want 4", n)
	}
	if elapsed := time.Since(start); elapsed < 100*time.Millisecond {
		t.Errorf("retried after %v, before the broker's 100ms", elapsed)
	}
}
