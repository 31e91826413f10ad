package cluster

import (
	"errors"
	"math/big"
	"testing"
	"time"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
)

// onDemandState is an ACTIVE stream "s" of n even shards in mode m.
func onDemandState(t *testing.T, n int, m StreamMode) *State {
	t.Helper()
	st := &State{Streams: map[string]*Stream{}}
	placement := make([][]string, n)
	for i := range placement {
		placement[i] = []string{"n1"}
	}
	st = applyOK(t, st, Command{CreateStream: &CreateStreamCmd{Name: "s", ShardCount: n, Mode: m, RetentionHours: 24, Placement: placement}})
	for i := range n {
		st = applyOK(t, st, Command{ShardReady: &ShardReadyCmd{StreamID: st.Streams["s"].ID, ShardIndex: uint64(i)}})
	}
	return st
}

// history is a shard's load history of constant load over the d before now,
// sampled every second.
func history(now time.Time, d time.Duration, load float64) *ShardLoad {
	l := &ShardLoad{}
	for at := now.Add(-d); at.Before(now); at = at.Add(time.Second) {
		l.Samples = append(l.Samples, LoadSample{Since: at, At: at.Add(time.Second), Load: load})
	}
	return l
}

// reshard applies an on-demand action and switches the children in, as the
// controllers do.
func reshard(t *testing.T, st *State, a OnDemandAction) *State {
	t.Helper()
	two := [][]string{{"n1"}, {"n1"}}
	switch {
	case a.Split != nil:
		st = applyOK(t, st, Command{SplitShard: &SplitShardCmd{Name: "s", Shard: a.Split.Shard, NewStartingHashKey: a.Split.Key, OnDemand: true, Placement: two}})
	case a.Merge != nil:
		st = applyOK(t, st, Command{MergeShards: &MergeShardsCmd{Name: "s", Shard: a.Merge.Shard, Adjacent: a.Merge.Adjacent, OnDemand: true, Placement: two[:1]}})
	default:
		t.Fatal("no action")
	}
	s := st.Streams["s"]
	var ends []ShardEnd
	for _, p := range s.PendingParents() {
		ends = append(ends, ShardEnd{Index: p.Index, EndOffset: 1})
	}
	st = applyOK(t, st, Command{ShardsSwitched: &ShardsSwitchedCmd{StreamID: s.ID, Ends: ends}})
	coverCheck(t, st.Streams["s"])
	return st
}

func key(t *testing.T, s string) *big.Int {
	t.Helper()
	k, err := ParseHashKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestPlanOnDemand checks the scaling decision on its own: a shard splits
// only when every sample of the whole split window is hot, at the median
// of its writes (the next key when the median is its first key, the
// midpoint without one); pairs merge only when cold for the whole merge
// window, never below the minimum of four shards, never past the maximum,
// and never across the boundary of a range that was split.
func TestPlanOnDemand(t *testing.T) {
	o := OnDemandOptions{SplitThreshold: 0.5, SplitAfter: 10 * time.Second, MergeThreshold: 0.1, MergeAfter: 20 * time.Second, Interval: time.Second, MaxShards: 6}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := onDemandState(t, 4, ModeOnDemand)
	s := st.Streams["s"]
	r1 := s.Shards[1].HashRange()
	mid1 := new(big.Int).Add(r1.Start, new(big.Int).Rsh(new(big.Int).Add(new(big.Int).Sub(r1.End, r1.Start), big.NewInt(1)), 1))
	inside := new(big.Int).Add(r1.Start, big.NewInt(12345))

	dip := history(now, 10*time.Second, 0.9)
	dip.Samples[4].Load = 0
	alternating := history(now, 10*time.Second, 0.9)
	for i := range alternating.Samples {
		if i%2 == 0 {
			alternating.Samples[i].Load = 0.05 // mean 0.475
		}
	}
	medianLoad := history(now, 10*time.Second, 0.9)
	medianLoad.Median = inside
	firstKey := history(now, 10*time.Second, 0.9)
	firstKey.Median = r1.Start
	outside := history(now, 10*time.Second, 0.9)
	outside.Median = s.Shards[0].HashRange().Start

	for _, tc := range []struct {
		name      string
		loads     map[uint64]*ShardLoad
		wantSplit string // "shard@key"
	}{
		{"all idle", map[uint64]*ShardLoad{0: history(now, time.Minute, 0), 1: history(now, time.Minute, 0)}, ""},
		{"hot long enough, midpoint", map[uint64]*ShardLoad{1: history(now, 10*time.Second, 0.6)}, "shardId-000000000001@" + mid1.String()},
		{"hot, not long enough", map[uint64]*ShardLoad{1: history(now, 9*time.Second, 0.9)}, ""},
		{"one idle sample in the window", map[uint64]*ShardLoad{1: dip}, "shardId-000000000001@" + mid1.String()},
		{"mean under the threshold", map[uint64]*ShardLoad{1: alternating}, ""},
		{"just under the threshold", map[uint64]*ShardLoad{1: history(now, time.Minute, 0.49)}, ""},
		{"median inside", map[uint64]*ShardLoad{1: medianLoad}, "shardId-000000000001@" + inside.String()},
		{"median is the first key", map[uint64]*ShardLoad{1: firstKey}, "shardId-000000000001@" + new(big.Int).Add(r1.Start, big.NewInt(1)).String()},
		{"median outside the range", map[uint64]*ShardLoad{1: outside}, "shardId-000000000001@" + mid1.String()},
		{"hottest of two", map[uint64]*ShardLoad{1: history(now, time.Minute, 0.6), 2: history(now, time.Minute, 0.8)}, "shardId-000000000002@"},
	} {
		a := PlanOnDemand(s, tc.loads, now, o)
		got := ""
		if a.Split != nil {
			got = a.Split.Shard + "@" + a.Split.Key
		}
		if a.Merge != nil {
			t.Errorf("%s: merge %v at the minimum shard count", tc.name, a.Merge)
		}
		if tc.name == "hottest of two" {
			if a.Split == nil || a.Split.Shard != "shardId-000000000002" {
				t.Errorf("%s: split %q", tc.name, got)
			}
			continue
		}
		if got != tc.wantSplit {
			t.Errorf("%s: split %q, want %q", tc.name, got, tc.wantSplit)
		}
	}

	// A hot key isolated: split at its hash, then at the next key, then
	// nothing more (a one-key range cannot split).
	hot := new(big.Int).Add(r1.Start, big.NewInt(1000))
	loads := func(st *State, hotLoad, coldLoad float64, d time.Duration) map[uint64]*ShardLoad {
		out := map[uint64]*ShardLoad{}
		for _, sh := range st.Streams["s"].Shards {
			if !sh.Open() {
				continue
			}
			l := history(now, d, coldLoad)
			if sh.HashRange().Contains(hot) {
				l = history(now, d, hotLoad)
				l.Median = hot
			}
			out[sh.Index] = l
		}
		return out
	}
	a := PlanOnDemand(st.Streams["s"], loads(st, 1, 0, time.Minute), now, o)
	if a.Split == nil || a.Split.Key != hot.String() {
		t.Fatalf("first split %+v, want at the hot key %s", a.Split, hot)
	}
	st = reshard(t, st, a)
	a = PlanOnDemand(st.Streams["s"], loads(st, 1, 0, time.Minute), now, o)
	if a.Split == nil || a.Split.Key != new(big.Int).Add(hot, big.NewInt(1)).String() {
		t.Fatalf("second split %+v, want after the hot key", a.Split)
	}
	st = reshard(t, st, a)
	if n := st.Streams["s"].OpenShardCount(); n != 6 {
		t.Fatalf("%d open shards, want 6", n)
	}
	// Hot [hot, hot] cannot split and the stream is at MaxShards anyway;
	// nothing merges while a shard is hot.
	a = PlanOnDemand(st.Streams["s"], loads(st, 1, 0, time.Minute), now, o)
	if a.Split != nil || a.Merge != nil {
		t.Fatalf("with the hot key still hot: %+v %+v, want nothing", a.Split, a.Merge)
	}
	o.MaxShards = 10
	if a = PlanOnDemand(st.Streams["s"], loads(st, 1, 0, time.Minute), now, o); a.Split != nil {
		t.Fatalf("split of a one-key shard: %+v", a.Split)
	}
	// Cooled, but not for the whole merge window: nothing.
	if a = PlanOnDemand(st.Streams["s"], loads(st, 0, 0, 19*time.Second), now, o); a.Merge != nil {
		t.Fatalf("merge before the window: %+v", a.Merge)
	}
	// Combined peak at the threshold: nothing.
	if a = PlanOnDemand(st.Streams["s"], loads(st, 0.05, 0.05, time.Minute), now, o); a.Merge != nil {
		t.Fatalf("merge at a combined load of 0.1: %+v", a.Merge)
	}
	// The hot key's shard warm (0.2), the rest idle: its sibling pair is
	// too warm to merge, and while it is open only splits are undone, so
	// nothing merges.
	if a = PlanOnDemand(st.Streams["s"], loads(st, 0.2, 0, time.Minute), now, o); a.Merge != nil {
		t.Fatalf("merge with a warm hot key: %+v, want none", a.Merge)
	}
	// Cooled for the window: the splits are undone, innermost first, and
	// the stream ends at its four even ranges.
	for i := 0; i < 2; i++ {
		a = PlanOnDemand(st.Streams["s"], loads(st, 0, 0.01, time.Minute), now, o)
		if a.Merge == nil {
			t.Fatalf("merge %d: none", i)
		}
		st = reshard(t, st, a)
	}
	checkEven(t, st.Streams["s"], 4)
	if a = PlanOnDemand(st.Streams["s"], loads(st, 0, 0, time.Minute), now, o); a.Merge != nil || a.Split != nil {
		t.Fatalf("below the minimum: %+v %+v", a.Split, a.Merge)
	}

	// Six shards never split (a PROVISIONED stream turned ON_DEMAND), at
	// MaxShards, the last one hot: two cold neighbours merge meanwhile,
	// the first pair of equal width; a shard younger than the window holds
	// every merge.
	o.MaxShards = 6
	six := onDemandState(t, 6, ModeOnDemand)
	sixLoads := map[uint64]*ShardLoad{}
	for i := range 6 {
		sixLoads[uint64(i)] = history(now, time.Minute, 0)
	}
	sixLoads[5] = history(now, time.Minute, 1)
	if a = PlanOnDemand(six.Streams["s"], sixLoads, now, o); a.Merge == nil || a.Merge.Shard != "shardId-000000000000" || a.Merge.Adjacent != "shardId-000000000001" {
		t.Fatalf("six shards, one hot: %+v, want shards 0 and 1 merged", a.Merge)
	}
	sixLoads[3] = history(now, 5*time.Second, 0)
	if a = PlanOnDemand(six.Streams["s"], sixLoads, now, o); a.Merge != nil {
		t.Fatalf("merge with a shard younger than the window: %+v", a.Merge)
	}
}

// TestStraddles checks the merge rule's range test.
func TestStraddles(t *testing.T) {
	r := func(a, b int64) HashRange { return HashRange{Start: big.NewInt(a), End: big.NewInt(b)} }
	former := []HashRange{r(10, 19)}
	for _, tc := range []struct {
		u    HashRange
		want bool
	}{
		{r(0, 9), false}, {r(20, 29), false}, {r(10, 19), false}, {r(12, 15), false},
		{r(0, 19), false}, {r(0, 12), true}, {r(15, 25), true},
	} {
		if got := straddles(tc.u, former); got != tc.want {
			t.Errorf("straddles(%v..%v) = %v, want %v", tc.u.Start, tc.u.End, got, tc.want)
		}
	}
}

// TestOnDemandReshardRules checks who may reshard what: the user's
// SplitShard, MergeShards and UpdateShardCount are refused on an ON_DEMAND
// stream (InvalidArgument), the controller's on a PROVISIONED one; nothing
// changes.
func TestOnDemandReshardRules(t *testing.T) {
	two := [][]string{{"n1"}, {"n1"}}
	od := onDemandState(t, 4, ModeOnDemand)
	for name, cmd := range map[string]Command{
		"split":        {SplitShard: &SplitShardCmd{Name: "s", Shard: "shardId-000000000000", NewStartingHashKey: "1", Placement: two}},
		"merge":        {MergeShards: &MergeShardsCmd{Name: "s", Shard: "shardId-000000000000", Adjacent: "shardId-000000000001", Placement: two[:1]}},
		"update count": {UpdateShardCount: &UpdateShardCountCmd{Name: "s", Target: 5}},
	} {
		if got, err := od.apply(&cmd); !errors.Is(err, ErrInvalidCommand) || got != od {
			t.Errorf("user %s on ON_DEMAND: %v, want ErrInvalidCommand and no change", name, err)
		}
	}
	pr := onDemandState(t, 4, ModeProvisioned)
	cmd := Command{SplitShard: &SplitShardCmd{Name: "s", Shard: "shardId-000000000000", NewStartingHashKey: "1", OnDemand: true, Placement: two}}
	if got, err := pr.apply(&cmd); !errors.Is(err, ErrInvalidCommand) || got != pr {
		t.Errorf("controller split on PROVISIONED: %v, want ErrInvalidCommand and no change", err)
	}
}

// TestUpdateStreamModeState checks mode switches on the state: UPDATING
// until confirmed, then ACTIVE with the shards kept; the same mode is
// InvalidArgument, a switch while UPDATING ResourceInUse, a third switch
// in 24 hours LimitExceeded (a fourth a day later passes); a PROVISIONED
// stream of 2 shards turning ON_DEMAND is scaled up to 4 first.
func TestUpdateStreamModeState(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := onDemandState(t, 4, ModeOnDemand)
	id := st.Streams["s"].ID
	sw := func(m StreamMode, at time.Time) *Command {
		return &Command{UpdateStreamMode: &UpdateStreamModeCmd{Name: "s", Mode: m, At: at, DailyLimit: 2}}
	}
	if got, err := st.apply(sw(ModeOnDemand, t0)); !errors.Is(err, ErrInvalidCommand) || got != st {
		t.Errorf("same mode: %v", err)
	}
	st = applyOK(t, st, *sw(ModeProvisioned, t0))
	if s := st.Streams["s"]; s.Status != StreamUpdating || s.Mode != ModeProvisioned || !s.ModeSwitching {
		t.Fatalf("after the switch: %s %s switching=%v", s.Status, s.Mode, s.ModeSwitching)
	}
	if _, err := st.apply(sw(ModeOnDemand, t0)); !errors.Is(err, ErrStreamInUse) {
		t.Errorf("switch while UPDATING: %v, want ErrStreamInUse", err)
	}
	st = applyOK(t, st, Command{StreamModeSwitched: &StreamModeSwitchedCmd{StreamID: id}})
	if s := st.Streams["s"]; s.Status != StreamActive || s.OpenShardCount() != 4 {
		t.Fatalf("after confirmation: %s, %d open shards", s.Status, s.OpenShardCount())
	}
	st = applyOK(t, st, *sw(ModeOnDemand, t0.Add(time.Hour)))
	st = applyOK(t, st, Command{StreamModeSwitched: &StreamModeSwitchedCmd{StreamID: id}})
	if got, err := st.apply(sw(ModeProvisioned, t0.Add(23*time.Hour))); !errors.Is(err, ErrDailyLimit) || got != st {
		t.Errorf("third switch in 24 h: %v, want ErrDailyLimit", err)
	}
	st = applyOK(t, st, *sw(ModeProvisioned, t0.Add(24*time.Hour)))
	if n := len(st.Streams["s"].ModeSwitches); n != 2 {
		t.Errorf("%d switches remembered, want the 2 of the last 24 hours", n)
	}

	// A stream deleted while switching stays DELETING.
	st = applyOK(t, st, Command{StreamModeSwitched: &StreamModeSwitchedCmd{StreamID: id}})
	st = applyOK(t, st, Command{UpdateStreamMode: &UpdateStreamModeCmd{Name: "s", Mode: ModeOnDemand, At: t0.Add(48 * time.Hour)}})
	st = applyOK(t, st, Command{DeleteStream: &DeleteStreamCmd{Name: "s"}})
	st = applyOK(t, st, Command{StreamModeSwitched: &StreamModeSwitchedCmd{StreamID: id}})
	if s := st.Streams["s"]; s.Status != StreamDeleting {
		t.Errorf("deleted while switching, then confirmed: %s", s.Status)
	}

	small := onDemandState(t, 2, ModeProvisioned)
	small = applyOK(t, small, *sw(ModeOnDemand, t0))
	if s := small.Streams["s"]; s.Status != StreamUpdating || s.ScalingTarget != OnDemandInitialShards || s.ModeSwitching {
		t.Fatalf("2-shard stream turning ON_DEMAND: %s target %d switching=%v", s.Status, s.ScalingTarget, s.ModeSwitching)
	}
	small, _ = runScaling(t, small, "s")
	checkEven(t, small.Streams["s"], 4)
	if s := small.Streams["s"]; s.Status != StreamActive || s.Mode != ModeOnDemand {
		t.Fatalf("after scaling up: %s %s", s.Status, s.Mode)
	}
}

// TestScalingDailyLimit checks Kinesis's limit of UpdateShardCount calls
// in a rolling 24 hours: the call past the limit is refused
// (LimitExceeded) and changes nothing; once the oldest call is 24 hours
// old, the next passes.
func TestScalingDailyLimit(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := onDemandState(t, 4, ModeProvisioned)
	scale := func(target int, at time.Time) *Command {
		return &Command{UpdateShardCount: &UpdateShardCountCmd{Name: "s", Target: target, At: at, DailyLimit: 3}}
	}
	targets := []int{5, 4, 5}
	for i, target := range targets {
		st = applyOK(t, st, *scale(target, t0.Add(time.Duration(i)*time.Hour)))
		st, _ = runScaling(t, st, "s")
	}
	if got, err := st.apply(scale(4, t0.Add(23*time.Hour))); !errors.Is(err, ErrDailyLimit) || got != st {
		t.Fatalf("fourth scaling in 24 h: %v, want ErrDailyLimit and no change", err)
	}
	st = applyOK(t, st, *scale(4, t0.Add(24*time.Hour)))
	if n := len(st.Streams["s"].ScalingOps); n != 3 {
		t.Errorf("%d scalings remembered, want 3", n)
	}
}

// TestLoadHistory checks how the controller turns polled counts into
// samples: a node's first answer is a baseline, a counter it did not have
// before counts whole, counts of two nodes add up, a node that misses a
// round is assumed to keep its last rate and is measured over the whole
// time once it answers, and the load is the larger of the records and
// bytes fractions.
func TestLoadHistory(t *testing.T) {
	st := onDemandState(t, 4, ModeOnDemand)
	s := st.Streams["s"]
	v := newOnDemandView(OnDemandOptions{SplitAfter: time.Minute, MergeAfter: time.Minute, Interval: time.Second})
	limits := func(*Stream) Limits { return Limits{WriteRecords: 100, WriteBytes: 1 << 20} }
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type counts = map[string][]*internalv1.ShardWriteCount
	count := func(epoch, records, bytes uint64) *internalv1.ShardWriteCount {
		return &internalv1.ShardWriteCount{StreamId: s.ID, ShardIndex: 0, Epoch: epoch, Records: records, Bytes: bytes}
	}
	v.observe(st, counts{"n1": {count(1, 0, 0)}, "n2": nil}, nil, t0, limits)
	if l := v.loads[s.ID][0]; l == nil || len(l.Samples) != 0 {
		t.Fatalf("first round: %+v, want an empty history", l)
	}
	withMedian := count(7, 30, 100)
	withMedian.MedianHashKey = "42"
	v.observe(st, counts{"n1": {count(1, 50, 100)}, "n2": {withMedian}}, nil, t0.Add(2*time.Second), limits)
	l := v.loads[s.ID][0]
	if len(l.Samples) != 1 || l.Samples[0].Load != 0.4 || l.Median == nil || l.Median.Int64() != 42 {
		t.Fatalf("second round: %+v median %v, want load (25+15)/100 = 0.4 and median 42", l.Samples, l.Median)
	}
	v.observe(st, counts{"n1": {count(1, 50, 100)}}, []string{"n2"}, t0.Add(3*time.Second), limits)
	if got := v.loads[s.ID][0].Samples[1].Load; got != 0.15 {
		t.Errorf("third round, n2 silent: load %v, want its last 15/s = 0.15", got)
	}
	v.observe(st, counts{"n1": {count(1, 50, 100+1<<20)}, "n2": {count(7, 60, 100)}}, nil, t0.Add(4*time.Second), limits)
	if got := v.loads[s.ID][0].Samples[2].Load; got != 1 {
		t.Errorf("fourth round load %v, want 1 (n1's bytes at the limit; n2 15/s over its 2 s)", got)
	}
	if got := v.nodes["n2"].rates[shardKey{s.ID, 0}].records; got != 15 {
		t.Errorf("n2's rate over the round it missed: %v, want 15", got)
	}
	if got := v.loads[s.ID][1].Samples[2].Load; got != 0 {
		t.Errorf("idle shard load %v, want 0", got)
	}
	// A node silent for longer than a few intervals stops counting.
	v.observe(st, counts{"n1": {count(1, 50, 100+1<<20)}}, []string{"n2"}, t0.Add(20*time.Second), limits)
	if _, ok := v.nodes["n2"]; ok {
		t.Error("a node silent for 16 s still stands in with its last rates")
	}
}
