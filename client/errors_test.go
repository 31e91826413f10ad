package client

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
)

// brokerError builds an error the way the broker does: the exception name
// at the start of the message, an ErrorInfo, and optional extra details.
func brokerError(t *testing.T, code codes.Code, exception, retryable string, extra ...protoadapt.MessageV1) error {
	t.Helper()
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{
		Reason:   exception,
		Domain:   ErrorDomain,
		Metadata: map[string]string{"retryable": retryable},
	}}
	st, err := status.New(code, exception+": something happened").WithDetails(append(details, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

// The helpers must read the broker's verdict, not guess from the code, and
// fall back on the code only for errors the broker did not produce.
func TestErrorHelpers(t *testing.T) {
	throttled := brokerError(t, codes.ResourceExhausted, ProvisionedThroughputExceededException, "true",
		&errdetails.RetryInfo{RetryDelay: durationpb.New(250 * time.Millisecond)})
	foreign, err := status.New(codes.NotFound, "not ours").WithDetails(&errdetails.ErrorInfo{
		Reason: "SomethingElse", Domain: "example.com", Metadata: map[string]string{"retryable": "true"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		err           error
		wantException string
		wantRetryable bool
		wantDelay     time.Duration
		wantHasDelay  bool
	}{
		{name: "nil", err: nil},
		{name: "plain error", err: errors.New("boom")},
		{name: "context deadline", err: context.DeadlineExceeded},
		{name: "not found", err: brokerError(t, codes.NotFound, ResourceNotFoundException, "false"),
			wantException: ResourceNotFoundException},
		{name: "throttled with delay", err: throttled,
			wantException: ProvisionedThroughputExceededException, wantRetryable: true,
			wantDelay: 250 * time.Millisecond, wantHasDelay: true},
		{name: "wrapped throttled", err: fmt.Errorf("put: %w", throttled),
			wantException: ProvisionedThroughputExceededException, wantRetryable: true,
			wantDelay: 250 * time.Millisecond, wantHasDelay: true},
		{name: "broker says unavailable is not retryable", err: brokerError(t, codes.Unavailable, InternalFailure, "false"),
			wantException: InternalFailure},
		{name: "broker says internal failure is retryable", err: brokerError(t, codes.Internal, InternalFailure, "true"),
			wantException: InternalFailure, wantRetryable: true},
		{name: "in use", err: brokerError(t, codes.FailedPrecondition, ResourceInUseException, "false"),
			wantException: ResourceInUseException},
		{name: "client-side unavailable", err: status.Error(codes.Unavailable, "connection refused"), wantRetryable: true},
		{name: "client-side deadline", err: status.Error(codes.DeadlineExceeded, "deadline"), wantRetryable: true},
		{name: "client-side canceled", err: status.Error(codes.Canceled, "canceled")},
		{name: "client-side invalid argument", err: status.Error(codes.InvalidArgument, "bad")},
		{name: "foreign ErrorInfo is ignored", err: foreign.Err()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExceptionName(tt.err); got != tt.wantException {
				t.Errorf("ExceptionName = %q, want %q", got, tt.wantException)
			}
			if got := IsRetryable(tt.err); got != tt.wantRetryable {
				t.Errorf("IsRetryable = %v, want %v", got, tt.wantRetryable)
			}
			delay, ok := RetryDelay(tt.err)
			if delay != tt.wantDelay || ok != tt.wantHasDelay {
				t.Errorf("RetryDelay = %v, %v, want %v, %v", delay, ok, tt.wantDelay, tt.wantHasDelay)
			}
		})
	}
}

// Only throttling and transient failures make a PutRecords entry worth retrying.
func TestIsRetryableRecordError(t *testing.T) {
	for code, want := range map[string]bool{
		ProvisionedThroughputExceededException: true,
		InternalFailure:                        true,
		ServiceUnavailable:                     true,
		ValidationException:                    false,
		InvalidArgumentException:               false,
		ResourceNotFoundException:              false,
		"":                                     false,
	} {
		if got := IsRetryableRecordError(code); got != want {
			t.Errorf("IsRetryableRecordError(%q) = %v, want %v", code, got, want)
		}
	}
}
