package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/riffle-streams/riffle/cluster"
)

// ReplaceAfter is how long a subscription of a consumer to a shard holds it
// before another subscription of the same consumer to the same shard may
// take over (Kinesis: 5 seconds). A subscription made sooner is refused
// with ResourceInUse; one made later replaces the running one, which ends
// with ResourceInUse.
const ReplaceAfter = 5 * time.Second

// subKey names what a subscription holds: one consumer (its ARN names the
// stream and the registration) on one shard of one stream incarnation.
type subKey struct {
	consumerARN string
	streamID    uint64
	shardIndex  uint64
}

// fanout is the gateway's enhanced fan-out state on this node: the
// registry of running subscriptions, their metrics, and the context that
// ends them all when the node shuts down.
//
// The registry is per node. Subscriptions are served on the shard leader's
// node, so it sees every subscription of a shard, except across a leader
// change: a subscription keeps running on the node that lost the
// leadership while a new one starts on the new leader's node, and both run
// until the old one ends (its lifetime, or its client leaving).
type fanout struct {
	metrics *fanoutMetrics

	ctx    context.Context // ends when the node stops serving subscriptions
	cancel context.CancelFunc

	mu     sync.Mutex
	subs   map[subKey]*registration // the running subscription per key
	active map[subKey]int           // running subscriptions per key, replaced ones included
}

// registration is a running subscription as the registry knows it.
type registration struct {
	started  time.Time
	replaced chan struct{} // closed when a newer subscription takes over
	labels   [3]string     // stream, shard, consumer: metric labels
}

func newFanout(reg prometheus.Registerer) *fanout {
	f := &fanout{metrics: newFanoutMetrics(reg), subs: map[subKey]*registration{}, active: map[subKey]int{}}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	return f
}

// claim makes r the running subscription of key, replacing one that has
// run ReplaceAfter or longer and refusing otherwise.
func (f *fanout) claim(key subKey, r *registration) *Error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if old := f.subs[key]; old != nil {
		if held := r.started.Sub(old.started); held < ReplaceAfter {
			e := inUse("consumer already has a subscription to %s, started %s ago; a new one may replace it %s after it started",
				cluster.ShardID(key.shardIndex), held.Round(time.Millisecond), ReplaceAfter)
			e.Transient, e.RetryAfter = true, ReplaceAfter-held
			return e
		}
		close(old.replaced)
	}
	f.subs[key] = r
	f.active[key]++
	f.metrics.active.WithLabelValues(r.labels[:]...).Set(float64(f.active[key]))
	return nil
}

// release forgets r when its subscription ends. consumerGone says the
// subscription ended because its consumer or stream no longer exists.
func (f *fanout) release(key subKey, r *registration, consumerGone bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs[key] == r {
		delete(f.subs, key)
	}
	f.active[key]--
	if n := f.active[key]; n > 0 {
		f.metrics.active.WithLabelValues(r.labels[:]...).Set(float64(n))
		return
	}
	delete(f.active, key)
	f.metrics.forget(r.labels[0], r.labels[1], r.labels[2], consumerGone)
}

// StopSubscriptions ends every subscription served or relayed by this node
// with a retryable ServiceUnavailable and refuses new ones, so that a node
// shutting down does not wait for subscriptions to reach their lifetime:
// clients resume on another node from their continuation number.
func (s *Server) StopSubscriptions() { s.fanout.cancel() }

// StopPrefetching waits for the batches being read ahead for GetRecords
// (prefetch.go) and starts no more; the server has stopped taking calls.
func (s *Server) StopPrefetching() { s.prefetch.close() }
