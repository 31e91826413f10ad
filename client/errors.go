package client

import (
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exception names the broker puts in ErrorInfo.Reason, at the start of the
// status message and, for PutRecords, in a result entry's error_code. They
// are Kinesis's, so code written against Kinesis branches the same way.
const (
	// ResourceNotFoundException: the stream, shard or consumer does not exist.
	ResourceNotFoundException = "ResourceNotFoundException"
	// ResourceInUseException: the stream is not in a state that allows the
	// operation (creating, deleting, or already existing).
	ResourceInUseException = "ResourceInUseException"
	// InvalidArgumentException: a value is out of range or inconsistent.
	InvalidArgumentException = "InvalidArgumentException"
	// ValidationException: a request field fails its constraints.
	ValidationException = "ValidationException"
	// ExpiredIteratorException: the shard iterator is older than five
	// minutes; get a new one.
	ExpiredIteratorException = "ExpiredIteratorException"
	// ProvisionedThroughputExceededException: a shard's read or write limit
	// was hit; retry after the delay RetryDelay reports.
	ProvisionedThroughputExceededException = "ProvisionedThroughputExceededException"
	// LimitExceededException: a limit on resources or control-plane calls
	// was reached.
	LimitExceededException = "LimitExceededException"
	// InternalFailure: the broker failed; whether a retry is safe is in the
	// error's retryable metadata.
	InternalFailure = "InternalFailure"
	// ServiceUnavailable: the broker cannot serve the call now (no shard
	// leader, no quorum); a retry is safe.
	ServiceUnavailable = "ServiceUnavailable"
)

// ErrorDomain is the ErrorInfo domain of the broker's errors. Details from
// other domains (a proxy, say) are ignored.
const ErrorDomain = "riffle.v1"

// ExceptionName returns the Kinesis exception name of a broker error, from
// its ErrorInfo detail, or of a *RecordError in err's chain, or "" when err
// carries none (client-side failures such as an unreachable node or an
// expired deadline).
func ExceptionName(err error) string {
	if info := errorInfo(err); info != nil {
		return info.GetReason()
	}
	var re *RecordError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

// RecordError is the failure of one record: the error of a PutRecords
// result entry, or a record the SDK refused before sending it (with the
// exception the broker would have answered, ValidationException or
// InvalidArgumentException). ExceptionName returns its Code.
type RecordError struct {
	// Code is the Kinesis exception name.
	Code string
	// Message says what went wrong.
	Message string
}

func (e *RecordError) Error() string { return e.Code + ": " + e.Message }

// IsRetryable reports whether the failed call may be sent again unchanged.
//
// For a broker error the broker decides, through ErrorInfo's "retryable"
// metadata. An error without it comes from the client side: Unavailable,
// ResourceExhausted and DeadlineExceeded count as retryable. For a write,
// those can also mean the outcome is unknown (the request may have been
// applied before the connection or the deadline gave out), so retrying it
// may store the records twice.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	if info := errorInfo(err); info != nil {
		return info.GetMetadata()["retryable"] == "true"
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded:
		return true
	}
	return false
}

// IsRetryableRecordError reports whether a PutRecords result entry that
// failed with errorCode may be put again: throttling and transient broker
// failures, never a rejected record.
//
// InternalFailure counts, as in Kinesis, but the broker also reports a
// record whose write may have been applied that way, so putting it again
// may store it twice. The Producer does not: it reports such a record with
// an error matching ErrOutcomeUnknown.
func IsRetryableRecordError(errorCode string) bool {
	switch errorCode {
	case ProvisionedThroughputExceededException, InternalFailure, ServiceUnavailable:
		return true
	}
	return false
}

// RetryDelay returns how long the broker asked the caller to wait before
// retrying (the RetryInfo detail of a throttling error), and false when it
// did not say.
func RetryDelay(err error) (time.Duration, bool) {
	st, ok := grpcStatus(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.RetryInfo); ok && info.GetRetryDelay() != nil {
			return info.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

func errorInfo(err error) *errdetails.ErrorInfo {
	st, ok := grpcStatus(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info
		}
	}
	return nil
}

// grpcStatus finds the gRPC status in err's chain, if there is one.
func grpcStatus(err error) (*status.Status, bool) {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return nil, false
	}
	st := se.GRPCStatus()
	return st, st != nil
}
