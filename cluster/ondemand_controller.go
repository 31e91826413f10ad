package cluster

import (
	"context"
	"time"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
)

// pollTimeout is the least time a node gets to answer a poll.
const pollTimeout = 2 * time.Second

// meterKey names one node's counter of one shard; a new epoch is a new
// counter.
type meterKey struct {
	node            string
	streamID, index uint64
	epoch           uint64
}

type meterCount struct{ records, bytes uint64 }

// onDemandView is the metadata leader's picture of ON_DEMAND streams'
// loads. It belongs to runOnDemand and is dropped when leadership is lost:
// a new leader starts its histories afresh.
type onDemandView struct {
	opts      OnDemandOptions
	lastRound time.Time
	last      map[meterKey]meterCount
	loads     map[uint64]map[uint64]*ShardLoad // stream id -> shard index
}

func newOnDemandView(o OnDemandOptions) *onDemandView {
	return &onDemandView{opts: o, last: map[meterKey]meterCount{}, loads: map[uint64]map[uint64]*ShardLoad{}}
}

// observe adds one round of counts taken at now. Every live node answered
// (a round with a missing node is skipped, so that the next one measures
// the whole time since the last complete round). A counter not seen in the
// previous round started after it, so all of its count is new.
func (v *onDemandView) observe(st *State, counts map[string][]*internalv1.ShardWriteCount, now time.Time, limits func(*Stream) Limits) {
	type delta struct {
		records, bytes float64
		median         string
		medianWeight   uint64
	}
	deltas := map[[2]uint64]*delta{}
	next := make(map[meterKey]meterCount, len(v.last))
	for node, cs := range counts {
		for _, c := range cs {
			k := meterKey{node: node, streamID: c.StreamId, index: c.ShardIndex, epoch: c.Epoch}
			cur := meterCount{records: c.Records, bytes: c.Bytes}
			next[k] = cur
			prev := v.last[k] // zero when the counter is new
			d := deltas[[2]uint64{c.StreamId, c.ShardIndex}]
			if d == nil {
				d = &delta{}
				deltas[[2]uint64{c.StreamId, c.ShardIndex}] = d
			}
			if cur.records >= prev.records && cur.bytes >= prev.bytes {
				d.records += float64(cur.records - prev.records)
				d.bytes += float64(cur.bytes - prev.bytes)
			}
			if c.MedianHashKey != "" && cur.records >= d.medianWeight {
				d.median, d.medianWeight = c.MedianHashKey, cur.records
			}
		}
	}
	first := v.lastRound.IsZero()
	elapsed := now.Sub(v.lastRound).Seconds()
	loads := map[uint64]map[uint64]*ShardLoad{}
	keep := max(v.opts.SplitAfter, v.opts.MergeAfter) + 2*v.opts.Interval
	for _, s := range st.Streams {
		if s.Mode != ModeOnDemand || s.Status == StreamDeleting {
			continue
		}
		old := v.loads[s.ID]
		cur := map[uint64]*ShardLoad{}
		for _, sh := range s.Shards {
			if !sh.Open() {
				continue
			}
			l := old[sh.Index]
			if l == nil || first {
				// The history starts now: the next round is its first sample.
				cur[sh.Index] = &ShardLoad{}
				continue
			}
			d := deltas[[2]uint64{s.ID, sh.Index}]
			if d == nil {
				d = &delta{}
			}
			load := 0.0
			if elapsed > 0 {
				load = shardLoadFraction(d.records/elapsed, d.bytes/elapsed, limits(s))
			}
			samples := append(l.Samples, LoadSample{Since: v.lastRound, At: now, Load: load})
			for len(samples) > 0 && now.Sub(samples[0].At) > keep {
				samples = samples[1:]
			}
			nl := &ShardLoad{Samples: samples, Median: l.Median}
			if d.median != "" {
				if m, err := ParseHashKey(d.median); err == nil {
					nl.Median = m
				}
			}
			cur[sh.Index] = nl
		}
		loads[s.ID] = cur
	}
	v.loads, v.last, v.lastRound = loads, next, now
}

// hasOnDemand reports whether st holds any ON_DEMAND stream.
func hasOnDemand(st *State) bool {
	for _, s := range st.Streams {
		if s.Mode == ModeOnDemand && s.Status != StreamDeleting {
			return true
		}
	}
	return false
}

// runOnDemand is the on-demand controller: on the metadata leader, while
// some stream is ON_DEMAND, it polls the write counts every interval,
// keeps the load histories and starts the splits and merges PlanOnDemand
// decides.
func (h *Host) runOnDemand() {
	defer h.wg.Done()
	o := h.opts.OnDemand
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	var view *onDemandView
	for {
		select {
		case <-tick.C:
		case <-h.ctx.Done():
			return
		}
		st := h.meta.State()
		if !h.meta.IsLeader() || !h.caughtUp.Load() || !hasOnDemand(st) {
			view = nil
			continue
		}
		if view == nil {
			view = newOnDemandView(o)
		}
		// A poll may take longer than the interval on a loaded node; the
		// ticker drops the ticks it misses.
		counts, failed := h.pollWriteCounts(h.ctx, max(o.Interval, pollTimeout))
		if len(failed) > 0 {
			h.logger.Info("write rates unanswered; skipping a round", "nodes", failed)
			continue
		}
		now := time.Now()
		st = h.meta.State()
		view.observe(st, counts, now, h.Limits)
		for _, s := range st.Streams {
			if s.Mode != ModeOnDemand || s.Status != StreamActive {
				continue
			}
			h.startOnDemandAction(s, PlanOnDemand(s, view.loads[s.ID], now, o))
		}
	}
}

// startOnDemandAction proposes a planned split or merge; the resharding
// controller completes it. A refusal (the stream changed meanwhile) is
// logged and the next round decides again.
func (h *Host) startOnDemandAction(s *Stream, a OnDemandAction) {
	if a.Split == nil && a.Merge == nil {
		return
	}
	st := h.meta.State()
	var cmd Command
	if a.Split != nil {
		cmd.SplitShard = &SplitShardCmd{Name: s.Name, Shard: a.Split.Shard, NewStartingHashKey: a.Split.Key, OnDemand: true,
			Placement: PlaceReplicas(h.opts.Membership.Alive(), st.Load(), 2, 3)}
	} else {
		cmd.MergeShards = &MergeShardsCmd{Name: s.Name, Shard: a.Merge.Shard, Adjacent: a.Merge.Adjacent, OnDemand: true,
			Placement: PlaceReplicas(h.opts.Membership.Alive(), st.Load(), 1, 3)}
	}
	ctx, cancel := context.WithTimeout(h.ctx, sealWait)
	err := h.ProposeMeta(ctx, cmd)
	cancel()
	switch {
	case err != nil:
		h.logger.Warn("on-demand resharding not started", "stream", s.Name, "err", err)
	case a.Split != nil:
		h.logger.Info("on-demand split", "stream", s.Name, "shard", a.Split.Shard, "key", a.Split.Key,
			"load", a.Load, "threshold", h.opts.OnDemand.SplitThreshold, "after", h.opts.OnDemand.SplitAfter)
	default:
		h.logger.Info("on-demand merge", "stream", s.Name, "shard", a.Merge.Shard, "adjacent", a.Merge.Adjacent,
			"load", a.Load, "threshold", h.opts.OnDemand.MergeThreshold, "after", h.opts.OnDemand.MergeAfter)
	}
}
