package gateway

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/riffle-streams/riffle/cluster"
)

// throttleMetrics count what the per-shard limits refused, as seen by the
// node the client called, and how far GetRecords readers are behind.
type throttleMetrics struct {
	requests *prometheus.CounterVec // by stream, shard, operation
	bytes    *prometheus.CounterVec // by stream, shard, operation
	behind   *prometheus.GaugeVec   // by stream, shard
}

func newThrottleMetrics(reg prometheus.Registerer) *throttleMetrics {
	m := &throttleMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riffle_throttled_requests_total",
			Help: "Calls (PutRecords: per shard of the call) that a shard's limits refused in whole or in part, by operation."},
			[]string{"stream", "shard", "operation"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riffle_throttled_bytes_total",
			Help: "Bytes (data plus key) of records a shard's write limits refused; reads count no bytes, since a refused read reads nothing."},
			[]string{"stream", "shard", "operation"}),
		behind: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "riffle_getrecords_millis_behind_latest",
			Help: "MillisBehindLatest of the last GetRecords served here for a shard: the age of the oldest record its reader has not read yet."},
			[]string{"stream", "shard"}),
	}
	reg.MustRegister(m.requests, m.bytes, m.behind)
	return m
}

// throttled counts one refused call and the bytes of the records it could
// not write.
func (m *throttleMetrics) throttled(op string, st *cluster.Stream, sh *cluster.Shard, refused []record) {
	m.requests.WithLabelValues(st.Name, sh.ID(), op).Inc()
	bytes := 0
	for _, r := range refused {
		bytes += len(r.key) + len(r.data)
	}
	m.bytes.WithLabelValues(st.Name, sh.ID(), op).Add(float64(bytes))
}

// millisBehind records how far the last reader of a shard was behind.
func (m *throttleMetrics) millisBehind(st *cluster.Stream, sh *cluster.Shard, millis int64) {
	m.behind.WithLabelValues(st.Name, sh.ID()).Set(float64(millis))
}
