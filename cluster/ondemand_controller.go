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
	streamID, index uint64
	epoch           uint64
}

type meterCount struct{ records, bytes uint64 }

// shardKey names a shard across streams.
type shardKey struct{ streamID, index uint64 }

// writeRate is records and bytes per second.
type writeRate struct{ records, bytes float64 }

// nodeView is what one node last answered: its counters, when, and the
// rates they showed since its previous answer.
type nodeView struct {
	at     time.Time
	counts map[meterKey]meterCount
	rates  map[shardKey]writeRate
}

// onDemandView is the metadata leader's picture of ON_DEMAND streams'
// loads. It belongs to runOnDemand and is dropped when leadership is lost:
// a new leader starts its histories afresh.
type onDemandView struct {
	opts      OnDemandOptions
	lastRound time.Time
	nodes     map[string]*nodeView
	loads     map[uint64]map[uint64]*ShardLoad // stream id -> shard index
}

func newOnDemandView(o OnDemandOptions) *onDemandView {
	return &onDemandView{opts: o, nodes: map[string]*nodeView{}, loads: map[uint64]map[uint64]*ShardLoad{}}
}

// observe adds one round of counts taken at now. A node's rates are its
// counters' growth since its own previous answer, so a node that missed a
// round (failed) is measured over the whole time when it answers again;
// meanwhile its last rates stand in for it, for a few intervals, so that
// one slow node neither stalls every stream's decisions nor makes the
// shards it leads look idle. A counter not seen in the node's previous
// answer started after it, so all of its count is new.
func (v *onDemandView) observe(st *State, counts map[string][]*internalv1.ShardWriteCount, failed []string, now time.Time, limits func(*Stream) Limits) {
	medians := map[shardKey]string{}
	medianWeight := map[shardKey]uint64{}
	nodes := make(map[string]*nodeView, len(counts)+len(failed))
	for node, cs := range counts {
		prev := v.nodes[node]
		nv := &nodeView{at: now, counts: map[meterKey]meterCount{}, rates: map[shardKey]writeRate{}}
		for _, c := range cs {
			k := meterKey{streamID: c.StreamId, index: c.ShardIndex, epoch: c.Epoch}
			sk := shardKey{c.StreamId, c.ShardIndex}
			cur := meterCount{records: c.Records, bytes: c.Bytes}
			nv.counts[k] = cur
			if c.MedianHashKey != "" && cur.records >= medianWeight[sk] {
				medians[sk], medianWeight[sk] = c.MedianHashKey, cur.records
			}
			if prev == nil {
				continue // the node's first answer: a baseline
			}
			old := prev.counts[k] // zero when the counter is new
			elapsed := now.Sub(prev.at).Seconds()
			if elapsed <= 0 || cur.records < old.records || cur.bytes < old.bytes {
				continue
			}
			r := nv.rates[sk]
			r.records += float64(cur.records-old.records) / elapsed
			r.bytes += float64(cur.bytes-old.bytes) / elapsed
			nv.rates[sk] = r
		}
		nodes[node] = nv
	}
	stale := 5*v.opts.Interval + pollTimeout
	for _, node := range failed {
		if prev := v.nodes[node]; prev != nil && now.Sub(prev.at) < stale {
			nodes[node] = prev
		}
	}
	v.nodes = nodes
	rates := map[shardKey]writeRate{}
	for _, nv := range nodes {
		for sk, r := range nv.rates {
			sum := rates[sk]
			sum.records += r.records
			sum.bytes += r.bytes
			rates[sk] = sum
		}
	}
	first := v.lastRound.IsZero()
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
			sk := shardKey{s.ID, sh.Index}
			load := shardLoadFraction(rates[sk].records, rates[sk].bytes, limits(s))
			samples := append(l.Samples, LoadSample{Since: v.lastRound, At: now, Load: load})
			for len(samples) > 0 && now.Sub(samples[0].At) > keep {
				samples = samples[1:]
			}
			nl := &ShardLoad{Samples: samples, Median: l.Median}
			if m := medians[sk]; m != "" {
				if m, err := ParseHashKey(m); err == nil {
					nl.Median = m
				}
			}
			cur[sh.Index] = nl
		}
		loads[s.ID] = cur
	}
	v.loads, v.lastRound = loads, now
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
			h.logger.Debug("write rates unanswered; using the nodes' last rates", "nodes", failed)
		}
		now := time.Now()
		st = h.meta.State()
		view.observe(st, counts, failed, now, h.Limits)
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
			Placement: h.place(st, 2)}
	} else {
		cmd.MergeShards = &MergeShardsCmd{Name: s.Name, Shard: a.Merge.Shard, Adjacent: a.Merge.Adjacent, OnDemand: true,
			Placement: h.place(st, 1)}
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
