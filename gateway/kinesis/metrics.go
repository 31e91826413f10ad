package kinesis

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.HistogramVec
	errors   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "riffle_kinesis_request_duration_seconds",
			Help:    "Kinesis HTTP API calls by operation, from the request to the response (SubscribeToShard: its whole life).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"operation"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "riffle_kinesis_request_errors_total",
			Help: "Kinesis HTTP API calls that failed, by operation and exception.",
		}, []string{"operation", "exception"}),
	}
	reg.MustRegister(m.requests, m.errors)
	return m
}

func (m *metrics) observe(op, exception string, d time.Duration) {
	m.requests.WithLabelValues(op).Observe(d.Seconds())
	if exception != "" {
		m.errors.WithLabelValues(op, exception).Inc()
	}
}
