package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// fanoutMetrics are the enhanced fan-out series, by stream, shard and
// consumer name, counted on the node that serves the subscription (a
// relaying node counts nothing, so no record is counted twice).
//
// The gauges exist only while a subscription of the consumer to the shard
// runs on this node. The counters stay after a subscription ends, so that
// rates stay continuous across resubscriptions, and are deleted when a
// subscription ends because its consumer or stream is gone: the number of
// series is bounded by registered consumers times shards.
type fanoutMetrics struct {
	records, bytes *prometheus.CounterVec
	paced          *prometheus.CounterVec
	behind         *prometheus.GaugeVec
	active         *prometheus.GaugeVec
}

var fanoutLabels = []string{"stream", "shard", "consumer"}

func newFanoutMetrics(reg prometheus.Registerer) *fanoutMetrics {
	m := &fanoutMetrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riffle_fanout_records_total", Help: "Records pushed to enhanced fan-out subscribers."}, fanoutLabels),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riffle_fanout_bytes_total", Help: "Bytes (data plus key) pushed to enhanced fan-out subscribers."}, fanoutLabels),
		paced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riffle_fanout_paced_seconds_total", Help: "Time subscriptions with records to send waited on the consumer's per-shard fan-out limit."}, fanoutLabels),
		behind: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "riffle_fanout_millis_behind_latest", Help: "Age of the oldest record a subscription has not yet been sent, as in its last event."}, fanoutLabels),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "riffle_subscriptions_active", Help: "SubscribeToShard calls served from this node's replicas."}, fanoutLabels),
	}
	reg.MustRegister(m.records, m.bytes, m.paced, m.behind, m.active)
	return m
}

// subscriptionMetrics are one subscription's series, resolved once.
type subscriptionMetrics struct {
	records, bytes, paced prometheus.Counter
	behind                prometheus.Gauge
}

func (m *fanoutMetrics) forSubscription(stream, shard, consumer string) subscriptionMetrics {
	return subscriptionMetrics{
		records: m.records.WithLabelValues(stream, shard, consumer),
		bytes:   m.bytes.WithLabelValues(stream, shard, consumer),
		paced:   m.paced.WithLabelValues(stream, shard, consumer),
		behind:  m.behind.WithLabelValues(stream, shard, consumer),
	}
}

// forget drops the gauges of a shard's consumer that has no subscription
// left here, and the counters too when the consumer is gone.
func (m *fanoutMetrics) forget(stream, shard, consumer string, consumerGone bool) {
	m.active.DeleteLabelValues(stream, shard, consumer)
	m.behind.DeleteLabelValues(stream, shard, consumer)
	if consumerGone {
		m.records.DeleteLabelValues(stream, shard, consumer)
		m.bytes.DeleteLabelValues(stream, shard, consumer)
		m.paced.DeleteLabelValues(stream, shard, consumer)
	}
}
