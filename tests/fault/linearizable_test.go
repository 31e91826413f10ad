package fault

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// A correct concurrent history passes: overlapping puts committed in the
// other order than they began, an unknown outcome that landed after a put
// that began later (it never returned, so it may take effect any time
// after its invocation) and one that did not land, a failed put, a reader
// that raced a put (it returned the record before the ack), a stale read
// (a follower behind, returning an old record after newer ones were
// acknowledged) and a subscription event.
func TestLinearizableConcurrentHistory(t *testing.T) {
	b := newBuilder()
	b.invokePut("w0", "a")
	b.invokePut("w1", "b")
	b.completePut("w1", "b", OK, "s0", "1") // began after a, committed first
	b.invokePut("w2", "c")                  // unknown outcome, lands last
	b.completePut("w0", "a", OK, "s0", "2")
	b.invokePut("w0", "d")
	b.read(FRead, "r0", "s0", rec("1", "b"), rec("2", "a"), rec("3", "d"))
	b.completePut("w0", "d", OK, "s0", "3") // acknowledged after r0 read it
	b.completePut("w2", "c", Info, "", "")
	b.put("w1", "e", Info, "", "") // unknown outcome, not applied
	b.put("w1", "f", Fail, "", "")
	b.read(FRead, "r1", "s0", rec("1", "b")) // stale: two more were acknowledged
	b.read(FSub, "s-s0", "s0", rec("1", "b"), rec("2", "a"), rec("3", "d"), rec("4", "c"))
	final := sameOnEveryNode(map[string][]Rec{"s0": {rec("1", "b"), rec("2", "a"), rec("3", "d"), rec("4", "c")}})
	if got := CheckAll(b.h, final); len(got) > 0 {
		t.Fatalf("anomalies: %v", got)
	}
	lin := CheckLinearizability(b.h, final, DefaultLinearizabilityBudget)
	if !slices.Equal(lin.Linearizable, []string{"s0"}) {
		t.Fatalf("report %+v", lin)
	}
	// The reads that raced a put (r0's, before d's ack; the event, with c
	// never acknowledged) are modelled; r1 was served a record certainly
	// appended, and is left out.
	if ops := shardOperations(b.h, b.h.Pairs(), putsByValue(b.h, b.h.Pairs()), "s0", final["n1"]["s0"]); len(ops) != 6 {
		t.Errorf("%d operations modelled, want the 4 puts, r0's read and the event", len(ops))
	}
}

// The model's sequential steps: puts append the log's records in order,
// at the sequence number their ack named; a read may lag behind the
// log's tip but not run ahead of it.
func TestLogModel(t *testing.T) {
	m := logModel([]Rec{rec("1", "a"), rec("2", "b")})
	for _, tc := range []struct {
		name  string
		state int
		input any
		ok    bool
	}{
		{"put in order", 0, putInput{"a", "1"}, true},
		{"unacknowledged put in order", 1, putInput{"b", ""}, true},
		{"put out of order", 0, putInput{"b", "2"}, false},
		{"put at another seq", 1, putInput{"b", "7"}, false},
		{"put past the end", 2, putInput{"c", ""}, false},
		{"read of the tip", 2, readInput{1}, true},
		{"stale read", 2, readInput{0}, true},
		{"read ahead", 1, readInput{1}, false},
	} {
		ok, next := m.Step(tc.state, tc.input, nil)
		if ok != tc.ok {
			t.Errorf("%s: legal %v, want %v", tc.name, ok, tc.ok)
		}
		want := tc.state
		if _, put := tc.input.(putInput); put {
			want++
		}
		if ok && next != want {
			t.Errorf("%s: state %v, want %d", tc.name, next, want)
		}
	}
}

// Each crafted anomaly is a history no append-only log can produce.
func TestCheckLinearizable(t *testing.T) {
	log := map[string][]Rec{"s0": {rec("1", "a"), rec("2", "b")}}
	for _, tc := range []struct {
		name    string
		history func(b *historyBuilder)
		final   map[string][]Rec
		want    map[string]string
	}{
		{
			// b's put was acknowledged before a's began, yet a is first.
			name: "real-time order",
			history: func(b *historyBuilder) {
				b.put("w1", "b", OK, "s0", "2")
				b.put("w0", "a", OK, "s0", "1")
			},
			final: log,
			want: map[string]string{
				KindLinearizable: "s0: no order of its operations fits an append-only log; the longest appends 0 of 2 records, " +
					"then put b (invoked at 00:00:00.001, op 0; acknowledged at 00:00:00.002 as s0/2) cannot take effect; " +
					"next in the log is s0/1 = put a (invoked at 00:00:00.003, op 2; acknowledged at 00:00:00.004 as s0/1)",
				KindRealTimeOrder: "s0: b was acknowledged at 2",
			},
		},
		{
			// r0 returned b before b's put began.
			name: "read from the future",
			history: func(b *historyBuilder) {
				b.put("w0", "a", OK, "s0", "1")
				b.read(FRead, "r0", "s0", rec("1", "a"), rec("2", "b"))
				b.put("w1", "b", OK, "s0", "2")
			},
			final: log,
			want: map[string]string{KindLinearizable: "the longest appends 1 of 2 records, then read op 3 by r0 via n2 (returned at 00:00:00.004, up to s0/2) cannot take effect; " +
				"next in the log is s0/2 = put b (invoked at 00:00:00.005, op 4; acknowledged at 00:00:00.006 as s0/2)"},
		},
		{
			// The same with b's outcome unknown: no other checker sees it.
			name: "read from the future, unknown outcome",
			history: func(b *historyBuilder) {
				b.put("w0", "a", OK, "s0", "1")
				b.read(FSub, "s-s0", "s0", rec("1", "a"), rec("2", "b"))
				b.put("w1", "b", Info, "", "")
			},
			final: log,
			want:  map[string]string{KindLinearizable: "then sub op 3 by s-s0 via n2 (returned at 00:00:00.004, up to s0/2) cannot take effect; next in the log is s0/2 = put b (invoked at 00:00:00.005, op 4; not acknowledged)"},
		},
		{
			// b was acknowledged as s0/3, but the log holds it second, at s0/2.
			name: "acknowledged elsewhere",
			history: func(b *historyBuilder) {
				b.put("w0", "a", OK, "s0", "1")
				b.put("w1", "b", OK, "s0", "3")
			},
			final: log,
			want: map[string]string{
				KindLinearizable: "the longest appends 1 of 2 records, then put b (invoked at 00:00:00.003, op 2; acknowledged at 00:00:00.004 as s0/3) cannot take effect; next in the log is s0/2 = put b",
				KindDuplicate:    "value b at 2 positions",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder()
			tc.history(b)
			wantOnly(t, b.h, sameOnEveryNode(tc.final), tc.want)
		})
	}
}

// Shards over the budget's size are not checked, nor decided when the
// check runs out of time; either is said, neither is an anomaly.
func TestLinearizabilityBudget(t *testing.T) {
	h, final := syntheticHistory(rand.New(rand.NewPCG(1, 2)), 20000, 2, 6)
	lin := CheckLinearizability(h, final, LinearizabilityBudget{MaxOps: 100, Timeout: time.Minute})
	if len(lin.TooLarge) != 2 || len(lin.Linearizable)+len(lin.TimedOut)+len(lin.Anomalies) > 0 {
		t.Errorf("over MaxOps: %+v", lin)
	}
	// A nanosecond runs out long before 10^4 puts are searched.
	lin = CheckLinearizability(h, final, LinearizabilityBudget{MaxOps: 1 << 30, Timeout: time.Nanosecond})
	if len(lin.TimedOut) != 2 || len(lin.Linearizable)+len(lin.TooLarge)+len(lin.Anomalies) > 0 {
		t.Errorf("over Timeout: %+v", lin)
	}
	if !strings.Contains(lin.String(), "2 undecided after 1ns each: s0, s1") {
		t.Errorf("report line %q", lin.String())
	}
}

// Random correct histories (as many writers as a fault run, reads that
// race puts and lag behind) pass every checker, and the linearizability
// check decides every shard.
func TestCheckersPassSyntheticHistories(t *testing.T) {
	for seed := range uint64(4) {
		h, final := syntheticHistory(rand.New(rand.NewPCG(seed, 7)), 3000, 3, 6)
		anomalies, lin := CheckRun(h, final, DefaultLinearizabilityBudget)
		if len(anomalies) > 0 {
			t.Fatalf("seed %d: anomalies in a correct history: %v", seed, anomalies)
		}
		if len(lin.Linearizable) != 3 {
			t.Fatalf("seed %d: %v", seed, lin)
		}
	}
}

// Two puts swapped deep in a large history: the check finds it within
// the default budget, and names them.
func TestLinearizableFindsSwapInSyntheticHistory(t *testing.T) {
	h, final := syntheticHistory(rand.New(rand.NewPCG(3, 7)), 6000, 2, 6)
	h, final, x, y := swapPuts(h, final, "s0", 0.8)
	lin := CheckLinearizability(h, final, DefaultLinearizabilityBudget)
	if len(lin.Anomalies) != 1 || !slices.Equal(lin.Linearizable, []string{"s1"}) {
		t.Fatalf("report %v: %v", lin, lin.Anomalies)
	}
	if d := lin.Anomalies[0].Detail; !strings.Contains(d, "then put "+y+" ") || !strings.Contains(d, "= put "+x+" ") {
		t.Errorf("detail %q does not name %s and %s", d, y, x)
	}
}

// BenchmarkCheckLinearizability checks a soak-sized history: 10^5 puts
// over 8 shards from 6 writers, with three readers and a subscriber per
// shard; and the same puts over 2 shards with two puts swapped 90% into
// one, which has to be found and explained.
func BenchmarkCheckLinearizability(b *testing.B) {
	budget := LinearizabilityBudget{MaxOps: 1 << 30, Timeout: 10 * time.Minute}
	b.Run("correct-8-shards", func(b *testing.B) {
		h, final := syntheticHistory(rand.New(rand.NewPCG(1, 1)), 100_000, 8, 6)
		for b.Loop() {
			if lin := CheckLinearizability(h, final, budget); len(lin.Linearizable) != 8 {
				b.Fatal(lin)
			}
		}
	})
	b.Run("swapped-2-shards", func(b *testing.B) {
		h, final := syntheticHistory(rand.New(rand.NewPCG(1, 1)), 100_000, 2, 6)
		h, final, _, _ = swapPuts(h, final, "s0", 0.9)
		for b.Loop() {
			if lin := CheckLinearizability(h, final, budget); len(lin.Anomalies) != 1 {
				b.Fatal(lin)
			}
		}
	})
}

// swapPuts exchanges two neighbouring records of shard, from the given
// fraction of its log on, whose puts were acknowledged one before the
// other began, and their acks' sequence numbers with them: the log then
// contradicts real time. It returns the changed history and final reads
// and the two values, in their new order.
func swapPuts(h History, final FinalReads, shard string, from float64) (History, FinalReads, string, string) {
	acks, invokes := map[string]int{}, map[string]int{}
	for i, op := range h {
		switch {
		case op.F == FPut && op.Type == OK:
			acks[op.Value] = i
		case op.F == FPut && op.Type == Invoke:
			invokes[op.Value] = i
		}
	}
	log := final["n1"][shard]
	for i := int(float64(len(log)) * from); i+1 < len(log); i++ {
		x, y := log[i], log[i+1]
		ax, okx := acks[x.Value]
		ay, oky := acks[y.Value]
		if !okx || !oky || ax > invokes[y.Value] {
			continue
		}
		h = slices.Clone(h)
		h[ax].Seq, h[ay].Seq = y.Seq, x.Seq
		log = slices.Clone(log)
		log[i], log[i+1] = Rec{Seq: x.Seq, Value: y.Value}, Rec{Seq: y.Seq, Value: x.Value}
		shards := maps.Clone(final["n1"])
		shards[shard] = log
		return h, sameOnEveryNode(shards), y.Value, x.Value
	}
	panic("no two neighbouring puts one after the other")
}

// syntheticHistory is a correct history of puts puts over shards shards by
// writers writers, and the final reads. Each put takes effect at a random
// instant inside its interval (or not at all: failed, or an unknown
// outcome that was lost); each shard's log is its puts in that order.
// The mix is a soak's: about 10% failed puts and 0.5% unknown outcomes
// (2 s each), 30 ms between a writer's puts; three readers per shard poll
// GetRecords through followers that lag up to 50 ms, a subscriber gets
// events up to 20 ms late.
func syntheticHistory(rng *rand.Rand, puts, shards, writers int) (History, FinalReads) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	var ops []Op
	type landed struct {
		value string
		at    time.Duration
		done  int // index in ops of its completion
	}
	logs := make([][]landed, shards)
	shardID := func(s int) string { return fmt.Sprintf("s%d", s) }
	var end time.Duration
	for w := range writers {
		proc := fmt.Sprintf("w%d", w)
		now := between(0, 30*time.Millisecond)
		for i := range puts / writers {
			value := fmt.Sprintf("%s-%d", proc, i)
			latency := between(500*time.Microsecond, 10*time.Millisecond)
			typ := OK
			switch r := rng.IntN(100); {
			case r < 1:
				typ, latency = Info, 2*time.Second // half of them land
			case r < 11:
				typ = Fail
			}
			ops = append(ops, Op{Type: Invoke, F: FPut, Process: proc, Node: "n1", Value: value, Key: "k", Time: start.Add(now)})
			done := Op{Type: typ, F: FPut, Process: proc, Node: "n1", Value: value, Key: "k", Time: start.Add(now + latency)}
			if typ == OK || typ == Info && rng.IntN(2) == 0 {
				s := rng.IntN(shards)
				done.Shard = shardID(s)
				logs[s] = append(logs[s], landed{value, now + between(0, latency), len(ops)})
			}
			ops = append(ops, done)
			now += latency + between(0, 40*time.Millisecond)
		}
		end = max(end, now)
	}
	final := map[string][]Rec{}
	for s, log := range logs {
		slices.SortFunc(log, func(a, b landed) int { return int(a.at - b.at) })
		var recs []Rec
		for i, l := range log {
			r := rec(fmt.Sprint(i+1), l.value)
			recs = append(recs, r)
			if ops[l.done].Type == OK {
				ops[l.done].Seq = r.Seq
			} else {
				ops[l.done].Shard = "" // an unknown outcome names no shard
			}
		}
		final[shardID(s)] = recs
		// appended returns how many records were in the log at t.
		appended := func(t time.Duration) int {
			n, _ := slices.BinarySearchFunc(log, t, func(l landed, t time.Duration) int { return int(l.at - t) })
			return n
		}
		readers := []string{"r-n1-", "r-n2-", "r-n3-", "s-"}
		for ri, reader := range readers {
			f, poll, lag := FRead, 130*time.Millisecond, 50*time.Millisecond
			if ri == len(readers)-1 {
				f, poll, lag = FSub, 100*time.Millisecond, 20*time.Millisecond
			}
			proc := reader + shardID(s)
			next := 0
			for now := between(0, poll); now < end; {
				latency := between(200*time.Microsecond, 5*time.Millisecond)
				served := now + between(0, latency) - between(0, lag)
				upto := max(next, min(appended(served), next+1000))
				ops = append(ops,
					Op{Type: Invoke, F: f, Process: proc, Node: "n2", Shard: shardID(s), Time: start.Add(now)},
					Op{Type: OK, F: f, Process: proc, Node: "n2", Shard: shardID(s), Records: recs[next:upto], Time: start.Add(now + latency)})
				next = upto
				now += latency + between(0, poll)
			}
		}
	}
	slices.SortStableFunc(ops, func(a, b Op) int { return a.Time.Compare(b.Time) })
	for i := range ops {
		ops[i].Index = i
	}
	return ops, sameOnEveryNode(final)
}
