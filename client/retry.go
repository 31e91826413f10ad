package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Defaults of RetryPolicy.
const (
	DefaultMaxAttempts    = 8
	DefaultBaseDelay      = 50 * time.Millisecond
	DefaultMaxDelay       = 5 * time.Second
	DefaultAttemptTimeout = 10 * time.Second
)

// RetryPolicy says which failed calls are sent again and how long to wait
// between attempts. The zero value takes every default.
//
// The wait before retry n (n = 0 after the first failure) is drawn uniformly
// from [0, min(MaxDelay, BaseDelay*2^n)] ("full jitter", so that clients
// throttled together do not come back together), and is never shorter than
// the delay the broker asked for in a RetryInfo detail.
//
// Only calls that are safe to repeat are retried: a failure the broker marks
// retryable (which it does only when nothing was applied), a read that failed
// on the way (node unreachable, attempt timed out), and a write that never
// left the client. A write that may have been applied (the broker says its
// outcome is unknown, or the connection failed after the request was sent)
// is returned as an *OutcomeUnknownError unless RetryUnknownOutcome is set.
type RetryPolicy struct {
	// MaxAttempts bounds the calls, the first included; DefaultMaxAttempts
	// when 0; 1 disables retries.
	MaxAttempts int
	// BaseDelay is the ceiling of the first wait; DefaultBaseDelay when 0.
	BaseDelay time.Duration
	// MaxDelay caps the ceiling of every wait (not the broker's
	// RetryInfo); DefaultMaxDelay when 0.
	MaxDelay time.Duration
	// AttemptTimeout bounds each attempt, so that a node that stops
	// answering costs one attempt rather than the caller's whole deadline;
	// DefaultAttemptTimeout when 0, negative for none.
	AttemptTimeout time.Duration
	// RetryUnknownOutcome retries writes whose outcome is unknown too.
	// Delivery becomes at-least-once: a record may then be stored twice.
	RetryUnknownOutcome bool
}

// DefaultRetryPolicy returns the policy that the zero value stands for,
// with every field filled in.
func DefaultRetryPolicy() RetryPolicy { return RetryPolicy{}.withDefaults() }

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = DefaultBaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = DefaultMaxDelay
	}
	p.MaxDelay = max(p.MaxDelay, p.BaseDelay)
	if p.AttemptTimeout == 0 {
		p.AttemptTimeout = DefaultAttemptTimeout
	}
	return p
}

// Ceiling is the longest back-off before retry n (0 after the first
// failure): min(MaxDelay, BaseDelay*2^n).
func (p RetryPolicy) Ceiling(n int) time.Duration {
	p = p.withDefaults()
	d := p.BaseDelay
	for i := 0; i < n && d < p.MaxDelay; i++ {
		d *= 2
	}
	return min(d, p.MaxDelay)
}

// Delay is the wait before retry n after err: a uniform draw from
// [0, Ceiling(n)], raised to the broker's RetryInfo delay when err carries
// a longer one.
func (p RetryPolicy) Delay(n int, err error) time.Duration {
	d := time.Duration(rand.Int64N(int64(p.Ceiling(n)) + 1))
	if asked, ok := RetryDelay(err); ok && asked > d {
		d = asked
	}
	return d
}

// Call is one attempt of a gRPC call. It must pass opts to the RPC: the
// policy learns through them whether the request reached a node.
type Call func(ctx context.Context, opts ...grpc.CallOption) error

// Read runs call, which must change nothing on the broker (Describe, List,
// GetShardIterator, GetRecords), until it succeeds, fails for good, runs
// out of attempts or ctx ends.
func (p RetryPolicy) Read(ctx context.Context, call Call) error {
	return p.run(ctx, false, call)
}

// Write runs call, a write, until it succeeds, fails for good, runs out of
// attempts or ctx ends. It retries only failures that applied nothing;
// when the write may have been applied it returns an *OutcomeUnknownError
// (errors.Is(err, ErrOutcomeUnknown)), unless RetryUnknownOutcome is set.
func (p RetryPolicy) Write(ctx context.Context, call Call) error {
	return p.run(ctx, true, call)
}

func (p RetryPolicy) run(ctx context.Context, write bool, call Call) error {
	p = p.withDefaults()
	for attempt := 1; ; attempt++ {
		err, sent := p.attempt(ctx, call)
		if err == nil {
			return nil
		}
		v := classify(ctx, err, write, sent)
		if v == outcomeUnknown && p.RetryUnknownOutcome && ctx.Err() == nil {
			v = retry
		}
		switch {
		case v == outcomeUnknown:
			return &OutcomeUnknownError{Cause: err}
		case v == fail:
			return err
		case attempt >= p.MaxAttempts:
			return fmt.Errorf("client: gave up after %d attempts: %w", attempt, err)
		}
		if serr := sleep(ctx, p.Delay(attempt-1, err)); serr != nil {
			return fmt.Errorf("client: %w while waiting to retry after: %w", serr, err)
		}
	}
}

// attempt makes one call under the attempt timeout and reports whether the
// request was handed to a connection (after which a write may have been
// applied even though the call failed).
func (p RetryPolicy) attempt(ctx context.Context, call Call) (err error, sent bool) {
	actx, cancel := p.attemptContext(ctx)
	defer cancel()
	var pr peer.Peer
	err = call(actx, grpc.Peer(&pr))
	return err, pr.Addr != nil
}

func (p RetryPolicy) attemptContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if p.AttemptTimeout > 0 {
		return context.WithTimeout(ctx, p.AttemptTimeout)
	}
	return context.WithCancel(ctx)
}

// verdict is what to do about a failed call.
type verdict int

const (
	fail           verdict = iota // return the error
	retry                         // safe to send again
	outcomeUnknown                // a write that may have been applied
)

// classify decides about err, the failure of a call made under ctx; sent
// says whether the request reached a connection.
func classify(ctx context.Context, err error, write, sent bool) verdict {
	if ctx.Err() != nil {
		// The caller gave up. A write already on the wire may still land.
		if write && sent {
			return outcomeUnknown
		}
		return fail
	}
	if info := errorInfo(err); info != nil {
		unknown := info.GetMetadata()["outcome"] == "unknown"
		switch {
		case info.GetMetadata()["retryable"] == "true":
			return retry
		case unknown && write:
			return outcomeUnknown
		case unknown, status.Code(err) == codes.Unavailable:
			// A read changes nothing, so a read whose outcome the broker
			// could not know is as safe to repeat as one not applied.
			return retry
		}
		return fail
	}
	// An error without the broker's ErrorInfo comes from the client side or
	// the transport.
	code := status.Code(err)
	if !write {
		if IsRetryable(err) {
			return retry
		}
		return fail
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded:
		if !sent {
			return retry // never reached a node
		}
		return outcomeUnknown
	case codes.Canceled, codes.Unknown, codes.Internal, codes.Aborted, codes.DataLoss:
		if sent {
			return outcomeUnknown
		}
	}
	return fail
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrOutcomeUnknown matches (with errors.Is) every error of a write that
// may or may not have been applied: the connection failed after the request
// was sent, the attempt timed out, or the broker could not tell. Sending the
// write again may store its records twice.
var ErrOutcomeUnknown = errors.New("client: outcome unknown: the write may or may not have been applied")

// OutcomeUnknownError is a write that may or may not have been applied,
// with the failure that left it so.
type OutcomeUnknownError struct {
	// Cause is the failure of the last attempt.
	Cause error
}

func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("%v: %v", ErrOutcomeUnknown, e.Cause)
}

// Unwrap returns the cause, so that ExceptionName, status.Code and
// errors.Is(err, context.Canceled) see through it.
func (e *OutcomeUnknownError) Unwrap() error { return e.Cause }

// Is makes errors.Is(err, ErrOutcomeUnknown) true.
func (e *OutcomeUnknownError) Is(target error) bool { return target == ErrOutcomeUnknown }
