// Package client is the Go SDK of Riffle: it connects to a cluster, writes
// records through a batching producer, reads shards by polling or by
// enhanced fan-out subscription, and says which failures are safe to retry.
//
// Dial opens one gRPC connection that spreads calls over every address it is
// given (any node accepts any call) and skips nodes that are down;
// Client.Streams is the generated riffle.v1 Streams API on that connection.
//
// RetryPolicy retries what is safe, with exponential back-off and full
// jitter, bounded attempts, and never sooner than the broker's RetryInfo
// asks. A write that may have been applied although its call failed is not
// retried by default: its error matches ErrOutcomeUnknown, and sending it
// again may store it twice (docs/sdk.md).
//
// Producer (producer.go) batches records by shard into PutRecords calls,
// keeps each partition key's records in order, retries throttled records
// before later ones of their shard, and blocks Put when its buffer is full.
// ShardReader (reader.go) polls a shard with GetRecords; Subscriber
// (subscriber.go) receives it through SubscribeToShard and subscribes again
// from the continuation number. Both go on with the child shards when a
// shard ends.
//
// ExceptionName, IsRetryable and RetryDelay read the Kinesis exception name,
// the retry verdict and the throttling back-off that the broker attaches to
// every error.
//
// The package does not balance shards between consumers (consumer groups)
// and does not deduplicate: a record put twice is read twice.
package client
