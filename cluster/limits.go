package cluster

// Limits are per-shard throughput limits; 0 means unlimited (DESIGN.md).
type Limits struct {
	WriteBytes   int64 `json:"write_bytes"`   // per second
	WriteRecords int64 `json:"write_records"` // per second
	ReadBytes    int64 `json:"read_bytes"`    // per second, all pollers
	ReadCalls    int64 `json:"read_calls"`    // GetRecords calls per second
	FanOutBytes  int64 `json:"fan_out_bytes"` // per second per consumer
}

// KinesisLimits are Kinesis's per-shard limits, the default of `riffle serve`.
var KinesisLimits = Limits{
	WriteBytes:   1 << 20,
	WriteRecords: 1000,
	ReadBytes:    2 << 20,
	ReadCalls:    5,
	FanOutBytes:  2 << 20,
}

// LimitOverrides are a stream's own limits; a nil field takes the cluster
// default.
type LimitOverrides struct {
	WriteBytes   *int64 `json:"write_bytes,omitempty"`
	WriteRecords *int64 `json:"write_records,omitempty"`
	ReadBytes    *int64 `json:"read_bytes,omitempty"`
	ReadCalls    *int64 `json:"read_calls,omitempty"`
	FanOutBytes  *int64 `json:"fan_out_bytes,omitempty"`
}

// Apply returns defaults with the set overrides in place.
func (o *LimitOverrides) Apply(defaults Limits) Limits {
	if o == nil {
		return defaults
	}
	pick := func(v *int64, d int64) int64 {
		if v != nil {
			return *v
		}
		return d
	}
	return Limits{
		WriteBytes:   pick(o.WriteBytes, defaults.WriteBytes),
		WriteRecords: pick(o.WriteRecords, defaults.WriteRecords),
		ReadBytes:    pick(o.ReadBytes, defaults.ReadBytes),
		ReadCalls:    pick(o.ReadCalls, defaults.ReadCalls),
		FanOutBytes:  pick(o.FanOutBytes, defaults.FanOutBytes),
	}
}
