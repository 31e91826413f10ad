package node

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// The fault clock is a test-only hook (tests/fault's clock-jump nemesis):
// built with the faultclock tag, the node reads its clock through an
// offset that POST /debug/clock?offset=<duration> on the admin server sets,
// as if the host's wall clock had stepped. Without the tag the endpoint
// does not exist and the clock is Config.Clock unchanged.
//
// What the offset moves is what reads the wall clock through Config.Clock:
// the arrival times a shard leader stamps on records, retention, the
// expiry of closed shards and shard iterators. Raft's and memberlist's
// timers, and the lease clock of consumer groups, measure elapsed time on
// Go's monotonic clock, which a wall-clock step does not move; they stay
// on it here too, so the hook fakes only what a real step can do.

// offsetClock is a clock running offset ahead of (behind, when negative)
// its base.
type offsetClock struct {
	base   func() time.Time
	offset atomic.Int64 // nanoseconds
}

// Now is the base's time plus the offset.
func (c *offsetClock) Now() time.Time {
	return c.base().Add(time.Duration(c.offset.Load()))
}

// installFaultClock puts an offset clock in front of cfg.Clock when the
// hook is built in, and returns it (nil otherwise).
func installFaultClock(cfg *Config) *offsetClock {
	if !faultClockBuilt {
		return nil
	}
	base := cfg.Clock
	if base == nil {
		base = time.Now
	}
	c := &offsetClock{base: base}
	cfg.Clock = c.Now
	return c
}

// handle sets the clock's offset (POST, ?offset=-90m; 0 restores the
// base clock) or shows it (GET).
func (c *offsetClock) handle(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		d, err := time.ParseDuration(r.URL.Query().Get("offset"))
		if err != nil {
			http.Error(w, fmt.Sprintf("offset: %v", err), http.StatusBadRequest)
			return
		}
		c.offset.Store(int64(d))
	}
	fmt.Fprintf(w, "offset %v now %s\n", time.Duration(c.offset.Load()), c.Now().UTC().Format(time.RFC3339Nano))
}
