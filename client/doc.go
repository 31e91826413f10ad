// Package client is the Go SDK of Riffle: it connects to a cluster and
// interprets the errors the broker returns.
//
// Dial opens one gRPC connection that spreads calls over every address it is
// given (any node accepts any call); Client.Streams is the generated
// riffle.v1 Streams API on that connection. ExceptionName, IsRetryable and
// RetryDelay read the Kinesis exception name, the retry verdict and the
// throttling back-off that the broker attaches to every error.
//
// The package does not retry on its own and does not batch: callers decide,
// using IsRetryable, whether a failed call may be sent again.
package client
