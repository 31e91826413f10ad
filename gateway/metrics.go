package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus series.
type metrics struct {
	recordsIn, bytesIn   *prometheus.CounterVec // by stream, shard
	recordsOut, bytesOut *prometheus.CounterVec // by stream, shard
	requests             *prometheus.HistogramVec
	commit               prometheus.Histogram
	errors               *prometheus.CounterVec // by operation, exception
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		recordsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riffle_shard_records_in_total", Help: "Records written to a shard through this node."}, []string{"stream", "shard"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riffle_shard_bytes_in_total", Help: "Bytes (data plus key) written to a shard through this node."}, []string{"stream", "shard"}),
		recordsOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riffle_shard_records_out_total", Help: "Records read from a shard through this node."}, []string{"stream", "shard"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riffle_shard_bytes_out_total", Help: "Bytes (data plus key) read from a shard through this node."}, []string{"stream", "shard"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "riffle_request_duration_seconds", Help: "Latency of API calls by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"operation"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "riffle_raft_commit_duration_seconds", Help: "Time from handing records to a shard leader until they are committed and applied.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riffle_errors_total", Help: "Failed API calls and PutRecords entries by operation and exception."}, []string{"operation", "exception"}),
	}
	reg.MustRegister(m.recordsIn, m.bytesIn, m.recordsOut, m.bytesOut, m.requests, m.commit, m.errors)
	return m
}
