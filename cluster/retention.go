package cluster

import "time"

// runRetention deletes whole segments older than each stream's retention,
// and on the metadata leader removes closed shards whose records have all
// expired.
func (h *Host) runRetention() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.RetentionCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			now := h.now()
			h.applyRetention(now)
			if h.meta.IsLeader() && h.caughtUp.Load() {
				h.expireClosedShards(h.ctx, now)
			}
		case <-h.ctx.Done():
			return
		}
	}
}

// now is the clock retention and expiry read (HostOptions.Now).
func (h *Host) now() time.Time { return h.opts.Now() }

func (h *Host) applyRetention(now time.Time) {
	st := h.meta.State()
	for _, s := range st.Streams {
		cutoff := now.Add(-time.Duration(s.RetentionHours) * time.Hour).UnixMilli()
		for _, sh := range s.Shards {
			r, err := h.runningShard(s, sh)
			if err != nil && h.expiresAsleep(s.GroupID(sh), cutoff) {
				// A hibernating replica wakes once it holds a segment
				// retention may delete.
				r, err = h.wake(s, sh, false)
			}
			if err != nil {
				continue
			}
			// Frozen replicas are in h.shards too; a sealed one loses its
			// last segment as well once every record in it has expired.
			n, err := r.ExpireBefore(cutoff)
			if err != nil {
				h.logger.Error("retention", "stream", s.Name, "shard", sh.ID(), "err", err)
			} else if n > 0 {
				h.logger.Info("retention deleted segments", "stream", s.Name, "shard", sh.ID(), "segments", n)
			}
		}
	}
}

// expiresAsleep reports whether gid hibernates with a segment whose
// records are all older than cutoff.
func (h *Host) expiresAsleep(gid string, cutoff int64) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	z := h.hib.asleep[gid]
	return z != nil && z.expires != 0 && z.expires < cutoff
}
