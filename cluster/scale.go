package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"time"
)

// UpdateShardCount (uniform scaling) is a sequence of ordinary splits and
// merges. UpdateShardCountCmd stores the target in the stream and turns it
// UPDATING; from then on the metadata leader's controller, whenever no
// split or merge of the stream is in progress, proposes the next
// ScaleStepCmd toward the target's even ranges:
//
//  1. every open shard whose range strictly contains a target boundary is
//     split at the first such boundary (one child per side, one parent);
//  2. in the same step, the other open shards are merged pairwise where
//     two adjacent ones lie in the same target range (one child, two
//     parents);
//  3. when there is nothing to split or merge, the step is empty: the
//     target is cleared and the stream ACTIVE.
//
// Each step's children are then sealed in and switched exactly as for a
// user's SplitShard or MergeShards (advanceReshards). The plan is derived
// from the state alone, so a new metadata leader resumes where the old one
// stopped; a step proposed twice is refused the second time because its
// parents are pending or closed by then.

// ErrShardCountLimit is returned for a target shard count outside the
// range one UpdateShardCount may reach: from half (rounded up) to double
// the open shard count.
var ErrShardCountLimit = errors.New("cluster: target shard count out of range")

// UpdateShardCountCmd starts scaling a stream to Target open shards.
type UpdateShardCountCmd struct {
	Name   string `json:"name"`
	Target int    `json:"target"`
	// At is the call's time on the proposer's clock, counted against
	// DailyLimit scalings in the 24 hours before it (0: no limit).
	At         time.Time `json:"at,omitzero"`
	DailyLimit int       `json:"daily_limit,omitempty"`
}

// ScaleSplit is one split of a scaling step.
type ScaleSplit struct {
	Shard string `json:"shard"`
	Key   string `json:"key"`
}

// ScaleMerge is one merge of a scaling step: Shard holds the lower range.
type ScaleMerge struct {
	Shard    string `json:"shard"`
	Adjacent string `json:"adjacent"`
}

// ScaleStepCmd starts the splits and merges of one scaling step at once,
// or, when it carries none, finishes the scaling.
type ScaleStepCmd struct {
	StreamID uint64       `json:"stream_id"`
	Splits   []ScaleSplit `json:"splits,omitempty"`
	Merges   []ScaleMerge `json:"merges,omitempty"`
	// Placement lists the children's nodes: two per split (lower range
	// first), in order, then one per merge.
	Placement [][]string `json:"placement,omitempty"`
}

// CheckUpdateShardCount validates a scaling of stream name to target and
// returns the current open shard count; the same checks run when the
// command applies.
func (st *State) CheckUpdateShardCount(name string, target int) (int, error) {
	return st.checkUpdateShardCount(name, target, time.Time{}, 0)
}

// checkUpdateShardCount is CheckUpdateShardCount with Kinesis's limit of
// dailyLimit scalings (0: none) in the 24 hours up to at.
func (st *State) checkUpdateShardCount(name string, target int, at time.Time, dailyLimit int) (int, error) {
	s, ok := st.Streams[name]
	if !ok {
		return 0, fmt.Errorf("%w: %s", ErrStreamNotFound, name)
	}
	if s.Mode == ModeOnDemand {
		return 0, fmt.Errorf("%w: %s is ON_DEMAND; UpdateShardCount needs PROVISIONED", ErrInvalidCommand, name)
	}
	if s.Status != StreamActive {
		return 0, fmt.Errorf("%w: %s is %s", ErrStreamInUse, name, s.Status)
	}
	n := s.OpenShardCount()
	switch {
	case target == n:
		return n, fmt.Errorf("%w: %s already has %d open shards", ErrInvalidCommand, name, n)
	case target > 2*n:
		return n, fmt.Errorf("%w: %d is more than double the %d open shards of %s", ErrShardCountLimit, target, n, name)
	case target < (n+1)/2:
		return n, fmt.Errorf("%w: %d is below half the %d open shards of %s", ErrShardCountLimit, target, n, name)
	}
	_, err := opsWithin(s.ScalingOps, at, dailyLimit, "UpdateShardCount", name)
	return n, err
}

func (st *State) updateShardCount(c *UpdateShardCountCmd) (*State, error) {
	if c.Target < 1 {
		return st, fmt.Errorf("%w: target shard count %d", ErrInvalidCommand, c.Target)
	}
	if _, err := st.checkUpdateShardCount(c.Name, c.Target, c.At, c.DailyLimit); err != nil {
		return st, err
	}
	s := st.Streams[c.Name].clone()
	if !c.At.IsZero() {
		recent, _ := opsWithin(s.ScalingOps, c.At, 0, "", "")
		s.ScalingOps = append(recent, c.At)
	}
	s.ScalingTarget = c.Target
	s.Status = StreamUpdating
	return st.withStream(s.Name, s), nil
}

// sortedOpenShards lists the open shards by hash range.
func (s *Stream) sortedOpenShards() []*Shard {
	var open []*Shard
	for _, sh := range s.Shards {
		if sh.Open() {
			open = append(open, sh)
		}
	}
	sort.Slice(open, func(i, j int) bool { return open[i].hashRange.Start.Cmp(open[j].hashRange.Start) < 0 })
	return open
}

// ScalePlan is the next step toward the stream's scaling target: every
// open shard whose range strictly contains a target boundary is split at
// the first one, and the other open shards are merged pairwise where two
// adjacent ones lie in the same target range; the splits and merges touch
// distinct shards, so they run in one step. Both empty means the open
// shards are the target's even ranges.
func (s *Stream) ScalePlan() ([]ScaleSplit, []ScaleMerge, error) {
	targets, err := EvenRanges(s.ScalingTarget)
	if err != nil {
		return nil, nil, err
	}
	// rangeOf finds the target range holding a key.
	rangeOf := func(k *big.Int) int {
		return sort.Search(len(targets), func(i int) bool { return targets[i].End.Cmp(k) >= 0 })
	}
	open := s.sortedOpenShards()
	var splits []ScaleSplit
	var merges []ScaleMerge
	// within[i] is the target range holding all of open[i], or -1 when
	// open[i] is split in this step.
	within := make([]int, len(open))
	for i, sh := range open {
		lo, hi := rangeOf(sh.hashRange.Start), rangeOf(sh.hashRange.End)
		within[i] = lo
		if lo != hi {
			within[i] = -1
			splits = append(splits, ScaleSplit{Shard: sh.ID(), Key: targets[lo+1].Start.String()})
		}
	}
	for i := 0; i+1 < len(open); i++ {
		if within[i] >= 0 && within[i] == within[i+1] {
			merges = append(merges, ScaleMerge{Shard: open[i].ID(), Adjacent: open[i+1].ID()})
			i++
		}
	}
	return splits, merges, nil
}

func (st *State) scaleStep(c *ScaleStepCmd) (*State, error) {
	s, ok := st.streamByID(c.StreamID)
	if !ok {
		return st, fmt.Errorf("%w: stream id %d", ErrStreamNotFound, c.StreamID)
	}
	if s.ScalingTarget == 0 || s.Status != StreamUpdating {
		return st, fmt.Errorf("%w: %s is not scaling", ErrInvalidCommand, s.Name)
	}
	for _, sh := range s.Shards {
		if sh.Pending {
			return st, fmt.Errorf("%w: %s has a resharding in progress", ErrStreamInUse, s.Name)
		}
	}
	if len(c.Splits) == 0 && len(c.Merges) == 0 {
		splits, merges, err := s.ScalePlan()
		if err != nil {
			return st, err
		}
		if len(splits)+len(merges) > 0 {
			return st, fmt.Errorf("%w: %s has not reached its target", ErrInvalidCommand, s.Name)
		}
		s = s.clone()
		s.ScalingTarget = 0
		s.Status = StreamActive
		return st.withStream(s.Name, s), nil
	}
	if len(c.Placement) != 2*len(c.Splits)+len(c.Merges) {
		return st, fmt.Errorf("%w: placement for %d children, want %d", ErrInvalidCommand, len(c.Placement), 2*len(c.Splits)+len(c.Merges))
	}
	used := map[string]bool{}
	use := func(id string) (*Shard, error) {
		if used[id] {
			return nil, fmt.Errorf("%w: %s appears twice in one step", ErrInvalidCommand, id)
		}
		used[id] = true
		return s.openShard(id)
	}
	type child struct {
		ranges           []HashRange
		parent, adjacent string
	}
	var children []child
	for _, sp := range c.Splits {
		sh, err := use(sp.Shard)
		if err != nil {
			return st, err
		}
		lower, upper, err := splitRanges(sh, sp.Key)
		if err != nil {
			return st, err
		}
		children = append(children, child{ranges: []HashRange{lower, upper}, parent: sp.Shard})
	}
	for _, m := range c.Merges {
		a, err := use(m.Shard)
		if err != nil {
			return st, err
		}
		b, err := use(m.Adjacent)
		if err != nil {
			return st, err
		}
		r, err := mergeRange(a, b)
		if err != nil {
			return st, err
		}
		children = append(children, child{ranges: []HashRange{r}, parent: m.Shard, adjacent: m.Adjacent})
	}
	s = s.clone()
	placement := c.Placement
	for _, ch := range children {
		s.addChildren(ch.ranges, placement[:len(ch.ranges)], ch.parent, ch.adjacent)
		placement = placement[len(ch.ranges):]
	}
	return st.withStream(s.Name, s), nil
}

// UpdateShardCount starts scaling stream name to target open shards of
// even ranges and returns the open shard count it started from; the
// controller completes it.
func (h *Host) UpdateShardCount(ctx context.Context, name string, target int) (int, error) {
	at := time.Now().UTC().Truncate(time.Millisecond)
	n, err := h.meta.State().checkUpdateShardCount(name, target, at, h.opts.ScalingOpsPerDay)
	if err != nil {
		return n, err
	}
	return n, h.ProposeMeta(ctx, Command{UpdateShardCount: &UpdateShardCountCmd{
		Name: name, Target: target, At: at, DailyLimit: h.opts.ScalingOpsPerDay}})
}

// advanceScaling runs on the metadata leader: for every scaling stream with
// no split or merge in progress it proposes the next step (advanceReshards
// then completes it). A failure leaves the state as it is; the next pass
// retries.
func (h *Host) advanceScaling(ctx context.Context) {
	st := h.meta.State()
	for _, s := range st.Streams {
		if s.ScalingTarget == 0 || s.Status != StreamUpdating {
			continue
		}
		busy := false
		for _, sh := range s.Shards {
			busy = busy || sh.Pending
		}
		if busy {
			continue
		}
		splits, merges, err := s.ScalePlan()
		if err != nil {
			h.logger.Error("planning a scaling step", "stream", s.Name, "err", err)
			continue
		}
		cmd := ScaleStepCmd{StreamID: s.ID, Splits: splits, Merges: merges}
		if n := 2*len(splits) + len(merges); n > 0 {
			cmd.Placement = h.place(st, n)
		}
		pctx, cancel := context.WithTimeout(ctx, sealWait)
		err = h.ProposeMeta(pctx, Command{ScaleStep: &cmd})
		cancel()
		if err != nil {
			h.logger.Warn("a scaling step failed; will retry", "stream", s.Name, "err", err)
			continue
		}
		h.logger.Info("scaling step", "stream", s.Name, "target", s.ScalingTarget,
			"splits", len(splits), "merges", len(merges), "done", len(splits)+len(merges) == 0)
	}
}
