package cluster

import (
	"math/big"
	"sort"
	"time"
)

// On-demand scaling. The metadata leader polls every node for the writes
// it admitted as leader of ON_DEMAND streams' shards (ondemand_rates.go)
// and keeps, per open shard, a short history of load samples: the write
// rate over one poll interval as a fraction of the shard's write limit,
// the larger of the records and the bytes fraction. PlanOnDemand, a pure
// function of the stream, the histories and the clock, then picks at most
// one split or merge per stream (one resharding at a time):
//
//   - split the hottest open shard whose mean load over the last
//     SplitAfter (its history reaching back that far) was at or above
//     SplitThreshold, at the median hash key of its recent writes (the
//     midpoint when there is none), unless the stream has MaxShards open
//     shards. The mean rather than every sample, so that one slow poll or
//     a writer's pause does not restart the window; the limits cap a
//     sample near the limit, so a short burst cannot carry the mean;
//   - otherwise merge two adjacent open shards whose peak loads over the
//     last MergeAfter add up to less than MergeThreshold, unless the
//     stream has OnDemandInitialShards open shards or fewer or one of its
//     open shards is younger than MergeAfter (a resharding settles
//     first). Merges undo splits first: while two open neighbours
//     together make a range that was split, only such pairs merge, so a
//     hot key's children merge back once it cools, before anything else;
//     and no merge may straddle the boundary of a range that was split, so
//     the cold half of a split never joins a neighbour. Among candidates
//     the narrowest union goes first, which keeps ranges even.
//
// A shard's history starts when the controller first sees it open, so a
// new child waits a whole window before it is judged.

// OnDemandOptions tune on-demand scaling; zero fields take the defaults.
type OnDemandOptions struct {
	// SplitThreshold is the load (fraction of the per-shard write limit)
	// a shard must keep for SplitAfter to be split; default 0.5.
	SplitThreshold float64
	// SplitAfter is how long a shard must stay hot; default 1 minute.
	SplitAfter time.Duration
	// MergeThreshold is the combined load two adjacent shards must stay
	// under for MergeAfter to be merged; default 0.1.
	MergeThreshold float64
	// MergeAfter is how long a pair must stay cold; default 10 minutes.
	MergeAfter time.Duration
	// Interval is how often the metadata leader polls the write rates;
	// default 1 second (at most a tenth of the shorter window).
	Interval time.Duration
	// MaxShards caps the open shards of an ON_DEMAND stream; default 200
	// (Kinesis's default on-demand write capacity of 200 MiB/s).
	MaxShards int
}

// On-demand defaults (Kinesis's documented behaviour where it has one).
const (
	DefaultSplitThreshold    = 0.5
	DefaultSplitAfter        = time.Minute
	DefaultMergeThreshold    = 0.1
	DefaultMergeAfter        = 10 * time.Minute
	DefaultOnDemandInterval  = time.Second
	DefaultOnDemandMaxShards = 200
)

// WithDefaults fills the unset fields.
func (o OnDemandOptions) WithDefaults() OnDemandOptions {
	if o.SplitThreshold <= 0 {
		o.SplitThreshold = DefaultSplitThreshold
	}
	if o.SplitAfter <= 0 {
		o.SplitAfter = DefaultSplitAfter
	}
	if o.MergeThreshold <= 0 {
		o.MergeThreshold = DefaultMergeThreshold
	}
	if o.MergeAfter <= 0 {
		o.MergeAfter = DefaultMergeAfter
	}
	if o.Interval <= 0 {
		o.Interval = min(DefaultOnDemandInterval, min(o.SplitAfter, o.MergeAfter)/10)
	}
	if o.MaxShards <= 0 {
		o.MaxShards = DefaultOnDemandMaxShards
	}
	return o
}

// LoadSample is one shard's write load over one poll interval
// (Since, At]: the larger of its records and bytes rates as a fraction of
// the shard's write limits.
type LoadSample struct {
	Since, At time.Time
	Load      float64
}

// ShardLoad is what the controller knows of one open shard's writes.
type ShardLoad struct {
	// Samples, oldest first, each starting where the previous ended.
	Samples []LoadSample
	// Median is the median hash key of a sample of recent writes inside
	// the shard's range; nil when unknown.
	Median *big.Int
}

// window returns the samples of the last d before now, or false when the
// history does not reach back that far.
func (l *ShardLoad) window(now time.Time, d time.Duration) ([]LoadSample, bool) {
	if l == nil || len(l.Samples) == 0 {
		return nil, false
	}
	from := now.Add(-d)
	if l.Samples[0].Since.After(from) {
		return nil, false
	}
	i := sort.Search(len(l.Samples), func(i int) bool { return l.Samples[i].At.After(from) })
	if i == len(l.Samples) {
		return nil, false // nothing recent: the history stopped
	}
	return l.Samples[i:], true
}

// OnDemandAction is what PlanOnDemand decided: at most one of Split and
// Merge is set.
type OnDemandAction struct {
	Split *ScaleSplit
	Merge *ScaleMerge
	// Load is the split shard's mean load, or the merged pair's combined
	// peak, for the log.
	Load float64
}

// PlanOnDemand decides the next split or merge of an ACTIVE ON_DEMAND
// stream from the load histories of its open shards (by shard index) at
// time now; both nil means nothing to do.
func PlanOnDemand(s *Stream, loads map[uint64]*ShardLoad, now time.Time, o OnDemandOptions) OnDemandAction {
	o = o.WithDefaults()
	open := s.sortedOpenShards()
	if len(open) < o.MaxShards {
		if a, ok := planSplit(open, loads, now, o); ok {
			return a
		}
	}
	if len(open) > OnDemandInitialShards {
		if a, ok := planMerge(s, open, loads, now, o); ok {
			return a
		}
	}
	return OnDemandAction{}
}

func planSplit(open []*Shard, loads map[uint64]*ShardLoad, now time.Time, o OnDemandOptions) (OnDemandAction, bool) {
	var best OnDemandAction
	found := false
	for _, sh := range open {
		samples, ok := loads[sh.Index].window(now, o.SplitAfter)
		if !ok {
			continue
		}
		sum := 0.0
		for _, x := range samples {
			sum += x.Load
		}
		mean := sum / float64(len(samples))
		key, splittable := splitKey(sh.HashRange(), loads[sh.Index].Median)
		if mean < o.SplitThreshold || !splittable {
			continue
		}
		if !found || mean > best.Load {
			best = OnDemandAction{Split: &ScaleSplit{Shard: sh.ID(), Key: key.String()}, Load: mean}
			found = true
		}
	}
	return best, found
}

// splitKey is where to split r: the median hash key of recent writes when
// it lies strictly inside, the key after it when it is r's first key (the
// hot key then gets a shard of its own), else the midpoint. A range of one
// key cannot be split.
func splitKey(r HashRange, median *big.Int) (*big.Int, bool) {
	one := big.NewInt(1)
	if r.Start.Cmp(r.End) >= 0 {
		return nil, false
	}
	if median != nil && r.Contains(median) {
		if median.Cmp(r.Start) > 0 {
			return median, true
		}
		return new(big.Int).Add(median, one), true
	}
	width := new(big.Int).Sub(r.End, r.Start)
	width.Add(width, one)
	return width.Rsh(width, 1).Add(width, r.Start), true
}

func planMerge(s *Stream, open []*Shard, loads map[uint64]*ShardLoad, now time.Time, o OnDemandOptions) (OnDemandAction, bool) {
	former := formerSplitRanges(s)
	peak := func(sh *Shard) (float64, bool) {
		samples, ok := loads[sh.Index].window(now, o.MergeAfter)
		if !ok {
			return 0, false
		}
		p := 0.0
		for _, x := range samples {
			p = max(p, x.Load)
		}
		return p, true
	}
	for _, sh := range open {
		if _, ok := peak(sh); !ok {
			return OnDemandAction{}, false // resharded within the window: let it settle
		}
	}
	// undoes reports whether merging a and b restores a range that was
	// split; while such a pair is open, only such pairs merge.
	undoes := func(u HashRange) bool {
		for _, r := range former {
			if r.Start.Cmp(u.Start) == 0 && r.End.Cmp(u.End) == 0 {
				return true
			}
		}
		return false
	}
	undoOnly := false
	for i := 0; i+1 < len(open); i++ {
		undoOnly = undoOnly || undoes(HashRange{Start: open[i].HashRange().Start, End: open[i+1].HashRange().End})
	}
	var best OnDemandAction
	var bestWidth *big.Int
	for i := 0; i+1 < len(open); i++ {
		a, b := open[i], open[i+1]
		pa, _ := peak(a)
		pb, _ := peak(b)
		union := HashRange{Start: a.HashRange().Start, End: b.HashRange().End}
		if pa+pb >= o.MergeThreshold || straddles(union, former) || (undoOnly && !undoes(union)) {
			continue
		}
		width := new(big.Int).Sub(union.End, union.Start)
		if bestWidth == nil || width.Cmp(bestWidth) < 0 || (width.Cmp(bestWidth) == 0 && pa+pb < best.Load) {
			best = OnDemandAction{Merge: &ScaleMerge{Shard: a.ID(), Adjacent: b.ID()}, Load: pa + pb}
			bestWidth = width
		}
	}
	return best, bestWidth != nil
}

// formerSplitRanges are the ranges of the stream's shards that were split.
func formerSplitRanges(s *Stream) []HashRange {
	var out []HashRange
	seen := map[string]bool{}
	for _, sh := range s.Shards {
		if sh.Parent == "" || sh.AdjacentParent != "" || seen[sh.Parent] {
			continue
		}
		seen[sh.Parent] = true
		if p, ok := s.ShardByID(sh.Parent); ok {
			out = append(out, p.HashRange())
		}
	}
	return out
}

// straddles reports whether u overlaps one of ranges without holding it
// whole or lying inside it.
func straddles(u HashRange, ranges []HashRange) bool {
	for _, r := range ranges {
		disjoint := u.End.Cmp(r.Start) < 0 || r.End.Cmp(u.Start) < 0
		inside := r.Start.Cmp(u.Start) <= 0 && u.End.Cmp(r.End) <= 0
		holds := u.Start.Cmp(r.Start) <= 0 && r.End.Cmp(u.End) <= 0
		if !disjoint && !inside && !holds {
			return true
		}
	}
	return false
}

// shardLoadFraction turns a rate into a load: the larger of the records
// and bytes fractions of the limits, a limit of 0 (unlimited) measured
// against Kinesis's.
func shardLoadFraction(recordsPerSec, bytesPerSec float64, l Limits) float64 {
	recLimit, byteLimit := l.WriteRecords, l.WriteBytes
	if recLimit <= 0 {
		recLimit = KinesisLimits.WriteRecords
	}
	if byteLimit <= 0 {
		byteLimit = KinesisLimits.WriteBytes
	}
	return max(recordsPerSec/float64(recLimit), bytesPerSec/float64(byteLimit))
}
