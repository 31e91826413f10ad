package gateway

import (
	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// limitOverrides turns CreateStream's shard_limits (a Riffle extension)
// into the stream's overrides: an unset field keeps the cluster default, 0
// is unlimited, a negative value is refused before anything is created.
func limitOverrides(l *rifflev1.ShardLimits) (*cluster.LimitOverrides, *Error) {
	if l == nil {
		return nil, nil
	}
	fields := []struct {
		name string
		v    *int64
	}{
		{"write_bytes_per_second", l.WriteBytesPerSecond},
		{"write_records_per_second", l.WriteRecordsPerSecond},
		{"read_bytes_per_second", l.ReadBytesPerSecond},
		{"read_calls_per_second", l.ReadCallsPerSecond},
		{"fan_out_bytes_per_second", l.FanOutBytesPerSecond},
	}
	set := false
	for _, f := range fields {
		if f.v == nil {
			continue
		}
		if *f.v < 0 {
			return nil, validation("shard_limits.%s is %d; it must be 0 (unlimited) or more", f.name, *f.v)
		}
		set = true
	}
	if !set {
		return nil, nil
	}
	return &cluster.LimitOverrides{
		WriteBytes:   l.WriteBytesPerSecond,
		WriteRecords: l.WriteRecordsPerSecond,
		ReadBytes:    l.ReadBytesPerSecond,
		ReadCalls:    l.ReadCallsPerSecond,
		FanOutBytes:  l.FanOutBytesPerSecond,
	}, nil
}

// shardLimitsProto reports limits in force, every field set (0: unlimited).
func shardLimitsProto(l cluster.Limits) *rifflev1.ShardLimits {
	return &rifflev1.ShardLimits{
		WriteBytesPerSecond:   &l.WriteBytes,
		WriteRecordsPerSecond: &l.WriteRecords,
		ReadBytesPerSecond:    &l.ReadBytes,
		ReadCallsPerSecond:    &l.ReadCalls,
		FanOutBytesPerSecond:  &l.FanOutBytes,
	}
}
