package cluster

import "time"

// runRetention deletes whole segments older than each stream's retention.
func (h *Host) runRetention() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.RetentionCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.applyRetention(time.Now())
		case <-h.ctx.Done():
			return
		}
	}
}

func (h *Host) applyRetention(now time.Time) {
	st := h.meta.State()
	for _, s := range st.Streams {
		cutoff := now.Add(-time.Duration(s.RetentionHours) * time.Hour).UnixMilli()
		for _, sh := range s.Shards {
			r, err := h.Shard(s, sh)
			if err != nil {
				continue
			}
			n, err := r.Log().DeleteBefore(cutoff)
			if err != nil {
				h.logger.Error("retention", "stream", s.Name, "shard", sh.ID(), "err", err)
			} else if n > 0 {
				h.logger.Info("retention deleted segments", "stream", s.Name, "shard", sh.ID(), "segments", n)
			}
		}
	}
}
