package gateway

import (
	"math/big"
	"regexp"
	"unicode/utf8"

	"github.com/riffle-streams/riffle/cluster"
	"github.com/riffle-streams/riffle/shardlog"
)

// Limits of the API (DESIGN.md, Kinesis's values).
const (
	MaxRecordBytes        = 1 << 20 // data plus partition key
	MaxPartitionKeyChars  = 256
	MaxPutRecordsEntries  = 500
	MaxPutRecordsBytes    = 5 << 20
	MaxGetRecordsLimit    = 10000
	MaxGetRecordsBytes    = 10 << 20
	MaxShardsPerStream    = 1000
	DefaultDescribeLimit  = 100
	DefaultListStreams    = 100
	DefaultListShards     = 1000
	MaxListLimit          = 10000
	MaxTags               = 50
	DefaultRetentionHours = cluster.MinRetentionHours
)

var streamNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,128}$`)

var shardIDPattern = regexp.MustCompile(`^shardId-[0-9]{12}$`)

func checkStreamName(name string) *Error {
	if !streamNamePattern.MatchString(name) {
		return validation("stream name %q must match [a-zA-Z0-9_.-]{1,128}", truncate(name))
	}
	return nil
}

// streamNameOf resolves a request's stream_name and stream_arn to a name.
func streamNameOf(name, arn string) (string, *Error) {
	if arn != "" {
		const prefix = "arn:aws:kinesis:local:000000000000:stream/"
		if len(arn) <= len(prefix) || arn[:len(prefix)] != prefix {
			return "", invalidArgument("stream ARN %q is not a Riffle stream ARN (%s<name>)", truncate(arn), prefix)
		}
		fromARN := arn[len(prefix):]
		if name != "" && name != fromARN {
			return "", invalidArgument("stream_name %q and stream_arn %q name different streams", truncate(name), truncate(arn))
		}
		name = fromARN
	}
	if name == "" {
		return "", validation("stream_name or stream_arn is required")
	}
	return name, checkStreamName(name)
}

func checkShardID(id string) *Error {
	if !shardIDPattern.MatchString(id) {
		return validation("shard id %q must look like shardId-000000000000", truncate(id))
	}
	return nil
}

// record is one validated record to write, with its routing hash.
type record struct {
	key  string
	data []byte
	hash *big.Int
}

// checkRecord validates one record's key, size and explicit hash key.
func checkRecord(key string, data []byte, explicitHashKey string) (record, *Error) {
	if key == "" {
		return record{}, validation("partition key must not be empty")
	}
	if !utf8.ValidString(key) {
		return record{}, validation("partition key must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(key); n > MaxPartitionKeyChars {
		return record{}, validation("partition key has %d characters, at most %d are allowed", n, MaxPartitionKeyChars)
	}
	if size := len(key) + len(data); size > MaxRecordBytes {
		return record{}, validation("record of %d bytes (data plus partition key) exceeds the limit of %d", size, MaxRecordBytes)
	}
	r := record{key: key, data: data}
	if explicitHashKey != "" {
		h, err := cluster.ParseHashKey(explicitHashKey)
		if err != nil {
			return record{}, invalidArgument("explicit hash key %q: must be a decimal integer in [0, 2^128-1]", truncate(explicitHashKey))
		}
		r.hash = h
	} else {
		r.hash = cluster.PartitionHash(key)
	}
	return r, nil
}

// parseSequenceNumber checks a client-supplied sequence number.
func parseSequenceNumber(field, s string) (shardIndex, offset uint64, e *Error) {
	shard, off, err := shardlog.ParseSequenceNumber(s)
	if err != nil {
		return 0, 0, invalidArgument("%s %q is not a valid sequence number", field, truncate(s))
	}
	return shard, off, nil
}

func checkRetention(hours int32) *Error {
	if hours < cluster.MinRetentionHours || hours > cluster.MaxRetentionHours {
		return invalidArgument("retention period %d hours is outside [%d, %d]", hours, cluster.MinRetentionHours, cluster.MaxRetentionHours)
	}
	return nil
}

// limitOrDefault checks an optional page size.
func limitOrDefault(field string, v int32, def int) (int, *Error) {
	if v == 0 {
		return def, nil
	}
	if v < 1 || v > MaxListLimit {
		return 0, validation("%s %d is outside [1, %d]", field, v, MaxListLimit)
	}
	return int(v), nil
}

// truncate keeps error messages bounded when echoing input.
func truncate(s string) string {
	if len(s) > 140 {
		return s[:140] + "..."
	}
	return s
}
