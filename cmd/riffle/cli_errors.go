package main

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/riffle-streams/riffle/client"
)

// Exit codes, as `riffle help` documents them.
const (
	exitOK        = 0
	exitFailure   = 1
	exitUsage     = 2
	exitNotFound  = 3
	exitRetryable = 4
)

// exitError is a failure whose exit code the verb chose itself, such as a
// put in which some records failed.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	var ue usageError
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ee):
		return ee.code
	case isNotFound(err):
		return exitNotFound
	case client.IsRetryable(err), errors.Is(err, context.DeadlineExceeded):
		return exitRetryable
	}
	return exitFailure
}

// formatError renders err as "riffle: <ExceptionName>: message". An error
// without an exception name shows its gRPC code instead ("Unavailable"),
// and one that is not a gRPC status shows just its text.
func formatError(err error) string {
	if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		return "riffle: interrupted"
	}
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) || se.GRPCStatus() == nil {
		return "riffle: " + err.Error()
	}
	st := se.GRPCStatus()
	name := errorName(err)
	// The broker already starts its messages with the exception name.
	msg := strings.TrimLeft(strings.TrimPrefix(st.Message(), name), ": ")
	// Keep the context an error was wrapped in ("put: ...").
	if wrapping, ok := strings.CutSuffix(err.Error(), st.Err().Error()); ok {
		msg = wrapping + msg
	}
	if msg == "" {
		return "riffle: " + name
	}
	return "riffle: " + name + ": " + msg
}

// errorName names a call's failure: the broker's exception name, else the
// gRPC code ("Unavailable", "DeadlineExceeded") of a client-side failure.
func errorName(err error) string {
	if name := client.ExceptionName(err); name != "" {
		return name
	}
	return status.Code(err).String()
}

// isNotFound reports a missing stream or shard, named by the broker or,
// from a server without error details, by the gRPC code.
func isNotFound(err error) bool {
	if name := client.ExceptionName(err); name != "" {
		return name == client.ResourceNotFoundException
	}
	return status.Code(err) == codes.NotFound
}
