package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// waitActive polls a stream's summary until it is ACTIVE or deadline passes,
// and tells progress about it once a second after the first second.
//
// A stream that is not found yet is waited for: the node that answers may
// not have applied the creation to its copy of the metadata. Retryable
// errors (a leader election, say) are waited out the same way.
func waitActive(ctx context.Context, cf *connFlags, streams rifflev1.StreamsClient, name string, deadline time.Time, progress io.Writer) (*rifflev1.StreamDescriptionSummary, error) {
	waitCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	start := time.Now()
	nextReport := start.Add(time.Second)
	interval := 50 * time.Millisecond
	state := "not visible yet"
	for {
		summary, err := describeSummary(waitCtx, cf, streams, name)
		switch {
		case err == nil:
			switch summary.GetStreamStatus() {
			case rifflev1.StreamStatus_STREAM_STATUS_ACTIVE:
				return summary, nil
			case rifflev1.StreamStatus_STREAM_STATUS_DELETING:
				return nil, fmt.Errorf("stream %s is being deleted", name)
			}
			state = statusName(summary.GetStreamStatus())
		case waitCtx.Err() != nil:
		case client.ExceptionName(err) == client.ResourceNotFoundException:
		case client.IsRetryable(err):
			state = "unanswered (" + errorName(err) + ")"
		default:
			return nil, err
		}
		if now := time.Now(); now.After(nextReport) {
			fmt.Fprintf(progress, "riffle: waiting for stream %s to become ACTIVE: %s after %s\n", name, state, now.Sub(start).Round(time.Second))
			nextReport = now.Add(time.Second)
		}
		if sleepCtx(waitCtx, interval) != nil {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("stream %s is still %s after %s: %w", name, state, time.Since(start).Round(time.Second), context.DeadlineExceeded)
		}
		interval = min(2*interval, 500*time.Millisecond)
	}
}
