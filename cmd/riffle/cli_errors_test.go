package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/riffle-streams/riffle/client"
)

// Exit codes and messages are the CLI's contract with scripts.
func TestExitCodeAndMessage(t *testing.T) {
	throttled := brokerErr(codes.ResourceExhausted, client.ProvisionedThroughputExceededException, true, "shard over its limit")
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantMsg  string
	}{
		{"usage", usageError{errors.New("missing stream name")}, exitUsage, "riffle: missing stream name"},
		{"not found", notFound("orders"), exitNotFound, "riffle: ResourceNotFoundException: stream orders not found"},
		{"not found without details", status.Error(codes.NotFound, "no such thing"), exitNotFound, "riffle: NotFound: no such thing"},
		{"throttled", throttled, exitRetryable, "riffle: ProvisionedThroughputExceededException: shard over its limit"},
		{"wrapped throttled", fmt.Errorf("put: %w", throttled), exitRetryable, "riffle: ProvisionedThroughputExceededException: put: shard over its limit"},
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), exitRetryable, "riffle: Unavailable: connection refused"},
		{"call deadline", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), exitRetryable, "riffle: DeadlineExceeded: context deadline exceeded"},
		{"wait deadline", fmt.Errorf("stream s is still CREATING after 1m0s: %w", context.DeadlineExceeded), exitRetryable, "riffle: stream s is still CREATING after 1m0s: context deadline exceeded"},
		{"broker says not retryable", brokerErr(codes.Unavailable, client.InternalFailure, false, "state machine failed"), exitFailure, "riffle: InternalFailure: state machine failed"},
		{"in use", brokerErr(codes.FailedPrecondition, client.ResourceInUseException, false, "stream s exists"), exitFailure, "riffle: ResourceInUseException: stream s exists"},
		{"interrupted", context.Canceled, exitFailure, "riffle: interrupted"},
		{"call canceled", status.Error(codes.Canceled, "context canceled"), exitFailure, "riffle: interrupted"},
		{"records failed", &exitError{code: exitRetryable, msg: "2 of 9 records failed"}, exitRetryable, "riffle: 2 of 9 records failed"},
		{"plain", errors.New("reading stdin: broken pipe"), exitFailure, "riffle: reading stdin: broken pipe"},
		{"empty message", status.Error(codes.Internal, ""), exitFailure, "riffle: Internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.wantCode {
				t.Errorf("exitCode = %d, want %d", got, tt.wantCode)
			}
			if got := formatError(tt.err); got != tt.wantMsg {
				t.Errorf("formatError = %q, want %q", got, tt.wantMsg)
			}
		})
	}
}
