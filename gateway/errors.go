package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/riffle-streams/riffle/cluster"
	"github.com/riffle-streams/riffle/shardlog"
)

// Kinesis exception names, as clients see them in ErrorInfo.Reason and
// in PutRecords' per-record error_code.
const (
	ResourceNotFound              = "ResourceNotFoundException"
	ResourceInUse                 = "ResourceInUseException"
	InvalidArgument               = "InvalidArgumentException"
	Validation                    = "ValidationException"
	ExpiredIterator               = "ExpiredIteratorException"
	ProvisionedThroughputExceeded = "ProvisionedThroughputExceededException"
	LimitExceeded                 = "LimitExceededException"
	InternalFailure               = "InternalFailure"
	ServiceUnavailable            = "ServiceUnavailable"
)

// ErrorDomain is ErrorInfo.Domain on every error the API returns.
const ErrorDomain = "riffle.v1"

// Outcome says whether a failed request may have changed anything.
type Outcome string

// Outcomes, reported in ErrorInfo.Metadata["outcome"].
const (
	// NotApplied: nothing was written; the same request may be sent again.
	NotApplied Outcome = "not_applied"
	// Unknown: the request may or may not have taken effect; a retry of a
	// write may duplicate it.
	Unknown Outcome = "unknown"
)

// Error is a Kinesis exception.
type Error struct {
	Exception string
	Message   string
	Outcome   Outcome
	// RetryAfter, when set, is sent as a RetryInfo delay.
	RetryAfter time.Duration
	// Transient: the same request can succeed later (throttling, no leader).
	Transient bool
}

func (e *Error) Error() string { return e.Exception + ": " + e.Message }

func newError(exception string, format string, args ...any) *Error {
	return &Error{Exception: exception, Message: fmt.Sprintf(format, args...), Outcome: NotApplied}
}

func invalidArgument(format string, args ...any) *Error {
	return newError(InvalidArgument, format, args...)
}

func validation(format string, args ...any) *Error { return newError(Validation, format, args...) }

func notFound(format string, args ...any) *Error { return newError(ResourceNotFound, format, args...) }

func inUse(format string, args ...any) *Error { return newError(ResourceInUse, format, args...) }

func unavailable(format string, args ...any) *Error {
	e := newError(ServiceUnavailable, format, args...)
	e.Transient = true
	e.RetryAfter = 100 * time.Millisecond
	return e
}

// Retryable reports whether sending the same request again is safe and may
// succeed.
func (e *Error) Retryable() bool { return e.Transient && e.Outcome == NotApplied }

// AsError turns any error an operation returns into the Kinesis exception
// a client sees. Front ends other than gRPC (the Kinesis HTTP API) use it.
func AsError(err error) *Error { return asError(err) }

// asError turns any error from the layers below into a Kinesis exception.
func asError(err error) *Error {
	var ke *Error
	var unknown *shardlog.OutcomeUnknownError
	var throttled *cluster.ThrottledError
	switch {
	case errors.As(err, &ke):
		return ke
	case isStatus(err):
		// A call passed on to a peer failed there: its status carries the
		// peer's exception.
		return fromStatus(status.Convert(err))
	case errors.As(err, &throttled):
		// Only what was refused is reported here: nothing of it was applied.
		retry := throttled.RetryAfter
		if retry <= 0 {
			retry = 100 * time.Millisecond
		}
		return &Error{Exception: ProvisionedThroughputExceeded, Message: throttled.Reason, Outcome: NotApplied,
			Transient: true, RetryAfter: retry}
	case errors.Is(err, cluster.ErrLeaseLost):
		return newError(LeaseLost, "%v", err)
	case errors.Is(err, cluster.ErrGroupNotFound):
		return notFound("%v", err)
	case errors.Is(err, cluster.ErrGroupExists):
		return inUse("%v", err)
	case errors.Is(err, cluster.ErrStreamNotFound), errors.Is(err, cluster.ErrConsumerNotFound),
		errors.Is(err, cluster.ErrNodeNotFound):
		return notFound("%v", err)
	case errors.Is(err, cluster.ErrStreamExists), errors.Is(err, cluster.ErrStreamInUse),
		errors.Is(err, cluster.ErrConsumerExists), errors.Is(err, cluster.ErrStreamHasConsumers):
		return inUse("%v", err)
	case errors.Is(err, cluster.ErrConsumerLimit), errors.Is(err, cluster.ErrShardCountLimit), errors.Is(err, cluster.ErrTagLimit),
		errors.Is(err, cluster.ErrDailyLimit):
		return newError(LimitExceeded, "%v", err)
	case errors.Is(err, cluster.ErrInvalidCommand):
		return invalidArgument("%v", err)
	case errors.Is(err, cluster.ErrReplicaOpening):
		e := unavailable("%v: retry", err)
		e.Transient, e.RetryAfter = true, 200*time.Millisecond
		return e
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, shardlog.ErrNotLeader),
		errors.Is(err, cluster.ErrNoReplica), errors.Is(err, shardlog.ErrShardClosed),
		errors.Is(err, shardlog.ErrShardSealed):
		return unavailable("%v", err)
	case errors.As(err, &unknown), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &Error{Exception: InternalFailure, Message: err.Error(), Outcome: Unknown, Transient: true}
	}
	return &Error{Exception: InternalFailure, Message: err.Error(), Outcome: Unknown}
}

func isStatus(err error) bool {
	_, ok := err.(interface{ GRPCStatus() *status.Status })
	return ok
}

// fromStatus reads back what toStatus wrote, on a peer or here.
func fromStatus(st *status.Status) *Error {
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.Domain != ErrorDomain {
			continue
		}
		e := &Error{Exception: info.Reason, Message: strings.TrimPrefix(st.Message(), info.Reason+": "),
			Outcome: Outcome(info.Metadata["outcome"]), Transient: info.Metadata["retryable"] == "true"}
		if e.Outcome == "" {
			e.Outcome = Unknown
		}
		for _, d := range st.Details() {
			if r, ok := d.(*errdetails.RetryInfo); ok {
				e.RetryAfter = r.RetryDelay.AsDuration()
			}
		}
		return e
	}
	// gRPC's own statuses: the connection to the peer, not the operation.
	switch st.Code() {
	case codes.Unavailable:
		return &Error{Exception: ServiceUnavailable, Message: st.Message(), Outcome: Unknown, Transient: true}
	case codes.Canceled, codes.DeadlineExceeded:
		return &Error{Exception: InternalFailure, Message: st.Message(), Outcome: Unknown, Transient: true}
	}
	return &Error{Exception: InternalFailure, Message: st.Message(), Outcome: Unknown}
}

// grpcCode maps an exception to its gRPC code.
func grpcCode(exception string) codes.Code {
	switch exception {
	case ResourceNotFound:
		return codes.NotFound
	case InvalidArgument, Validation:
		return codes.InvalidArgument
	case ResourceInUse, ExpiredIterator, LeaseLost:
		return codes.FailedPrecondition
	case ProvisionedThroughputExceeded, LimitExceeded:
		return codes.ResourceExhausted
	case ServiceUnavailable:
		return codes.Unavailable
	}
	return codes.Internal
}

// toStatus is the one place errors become gRPC statuses.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	// Only an error that is itself a status passes through: status.FromError
	// also finds one wrapped inside (a forward to a peer that failed) and
	// would keep its code, e.g. Unavailable for a write of unknown outcome,
	// which a client would then retry into a duplicate.
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return err // already a status, from gRPC itself
	}
	e := asError(err)
	code := grpcCode(e.Exception)
	if e.Outcome == Unknown {
		code = codes.Unknown
	}
	st := status.New(code, e.Error())
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{
		Reason: e.Exception,
		Domain: ErrorDomain,
		Metadata: map[string]string{
			"retryable": fmt.Sprint(e.Retryable()),
			"outcome":   string(e.Outcome),
		},
	}}
	if e.RetryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)})
	}
	if withDetails, derr := st.WithDetails(details...); derr == nil {
		st = withDetails
	}
	return st.Err()
}
