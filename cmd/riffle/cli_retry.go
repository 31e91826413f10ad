package main

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/riffle-streams/riffle/client"
)

// retryPolicy says how often and how long a verb retries a call that failed
// with an error it may repeat.
type retryPolicy struct {
	// attempts bounds the calls, the first included; 0 means no bound.
	attempts int
	// base is the first back-off; it doubles per attempt up to maxDelay.
	base, maxDelay time.Duration
	// retryable picks the errors worth another attempt.
	retryable func(error) bool
	// onRetry, when set, hears about each retry before the wait.
	onRetry func(err error, attempt int, wait time.Duration)
}

// do calls call until it succeeds, fails with an error the policy does not
// retry, runs out of attempts, or ctx ends.
func (p retryPolicy) do(ctx context.Context, call func() error) error {
	for attempt := 1; ; attempt++ {
		err := call()
		if err == nil || ctx.Err() != nil || !p.retryable(err) || (p.attempts > 0 && attempt >= p.attempts) {
			return err
		}
		wait := p.delay(err, attempt)
		if p.onRetry != nil {
			p.onRetry(err, attempt, wait)
		}
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
	}
}

// delay is the wait after the given failed attempt: what the broker asked
// for, if it said, else an exponential back-off with jitter so that many
// clients throttled together do not come back together.
func (p retryPolicy) delay(err error, attempt int) time.Duration {
	if d, ok := client.RetryDelay(err); ok && d > 0 {
		return d
	}
	return p.backoff(attempt)
}

func (p retryPolicy) backoff(attempt int) time.Duration {
	d := p.base
	for i := 1; i < attempt && d < p.maxDelay; i++ {
		d *= 2
	}
	d = min(d, p.maxDelay)
	return d/2 + rand.N(d/2+1)
}

// sleepCtx waits for d or until ctx ends, whichever is first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
