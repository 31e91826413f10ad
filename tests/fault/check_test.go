package fault

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// historyBuilder crafts histories for the checkers' tests: a clock that
// moves a millisecond per entry and helpers for whole operations.
type historyBuilder struct {
	h   History
	now time.Time
}

func newBuilder() *historyBuilder {
	return &historyBuilder{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (b *historyBuilder) add(op Op) Op {
	b.now = b.now.Add(time.Millisecond)
	op.Index, op.Time = len(b.h), b.now
	b.h = append(b.h, op)
	return op
}

func (b *historyBuilder) invokePut(proc, value string) {
	b.add(Op{Type: Invoke, F: FPut, Process: proc, Node: "n1", Value: value, Key: "k"})
}

func (b *historyBuilder) completePut(proc, value string, typ OpType, shard, seq string) {
	b.add(Op{Type: typ, F: FPut, Process: proc, Node: "n1", Value: value, Shard: shard, Seq: seq})
}

// put is a whole put: invoke then its outcome.
func (b *historyBuilder) put(proc, value string, typ OpType, shard, seq string) {
	b.invokePut(proc, value)
	b.completePut(proc, value, typ, shard, seq)
}

// read is a whole read (or subscription event) returning recs.
func (b *historyBuilder) read(f, proc, shard string, recs ...Rec) {
	b.add(Op{Type: Invoke, F: f, Process: proc, Node: "n2", Shard: shard})
	b.add(Op{Type: OK, F: f, Process: proc, Node: "n2", Shard: shard, Records: recs})
}

func rec(seq, value string) Rec { return Rec{Seq: seq, Value: value} }

// sameOnEveryNode is the final reads of three agreeing nodes.
func sameOnEveryNode(shards map[string][]Rec) FinalReads {
	return FinalReads{"n1": shards, "n2": shards, "n3": shards}
}

// healthy is a history with no anomaly: three acknowledged puts, one
// failed and one unknown (never stored), a reader and a subscriber that
// see the shard in order across two calls each.
func healthy() (*historyBuilder, FinalReads) {
	b := newBuilder()
	b.put("w0", "w0-0", OK, "s0", "1")
	b.put("w0", "w0-1", OK, "s0", "2")
	b.put("w1", "w1-0", Fail, "", "")
	b.put("w1", "w1-1", Info, "", "")
	b.put("w1", "w1-2", OK, "s0", "3")
	b.read(FRead, "r0", "s0", rec("1", "w0-0"))
	b.read(FRead, "r0", "s0", rec("2", "w0-1"), rec("3", "w1-2"))
	b.read(FSub, "s0", "s0", rec("1", "w0-0"), rec("2", "w0-1"))
	b.read(FSub, "s0", "s0", rec("3", "w1-2"))
	return b, sameOnEveryNode(map[string][]Rec{"s0": {rec("1", "w0-0"), rec("2", "w0-1"), rec("3", "w1-2")}})
}

// Every checker passes a history that has none of the anomalies: each
// test below then shows its checker fails on the one it looks for.
func TestCheckersPassHealthyHistory(t *testing.T) {
	b, final := healthy()
	if got := CheckAll(b.h, final); len(got) > 0 {
		t.Fatalf("anomalies in a healthy history: %v", got)
	}
}

// An unknown outcome that was in fact applied is no anomaly: it is read,
// in order, and nobody expected it to be absent.
func TestCheckersAcceptAppliedUnknownWrite(t *testing.T) {
	b := newBuilder()
	b.put("w0", "w0-0", Info, "", "")
	b.read(FRead, "r0", "s0", rec("1", "w0-0"))
	if got := CheckAll(b.h, sameOnEveryNode(map[string][]Rec{"s0": {rec("1", "w0-0")}})); len(got) > 0 {
		t.Fatalf("anomalies: %v", got)
	}
}

// wantOnly asserts that checking finds anomalies of exactly the given kinds,
// each detail containing the given fragment.
func wantOnly(t *testing.T, h History, final FinalReads, want map[string]string) {
	t.Helper()
	got := CheckAll(h, final)
	for kind, fragment := range want {
		as := got[kind]
		if len(as) == 0 {
			t.Errorf("no %s anomaly; got %v", kind, got)
			continue
		}
		if !strings.Contains(as[0].Detail, fragment) {
			t.Errorf("%s anomaly %q lacks %q", kind, as[0].Detail, fragment)
		}
	}
	for kind, as := range got {
		if _, ok := want[kind]; !ok {
			t.Errorf("unexpected %s anomalies: %v", kind, as)
		}
	}
}

// Lost: an acknowledged record that no node serves after healing, placed
// in the prefix, middle or postfix of its shard.
func TestCheckLost(t *testing.T) {
	for _, tc := range []struct {
		name, seq, where string
	}{
		{"prefix", "1", "prefix"},
		{"middle", "3", "middle"},
		{"postfix", "9", "postfix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder()
			b.invokePut("w1", "w1-0") // concurrent with the others: any order is fine
			b.put("w0", "w0-0", OK, "s0", "2")
			b.put("w0", "w0-1", OK, "s0", "4")
			b.completePut("w1", "w1-0", OK, "s0", tc.seq)
			final := sameOnEveryNode(map[string][]Rec{"s0": {rec("2", "w0-0"), rec("4", "w0-1")}})
			wantOnly(t, b.h, final, map[string]string{
				KindLost:     tc.where + ": value w1-0 acknowledged at s0/" + tc.seq,
				KindLiveness: "n1 does not serve 1 acknowledged records, e.g. w1-0",
			})
		})
	}
}

// Duplicate: one value at two sequence numbers.
func TestCheckDuplicates(t *testing.T) {
	b := newBuilder()
	b.put("w0", "w0-0", OK, "s0", "1")
	b.put("w0", "w0-1", OK, "s0", "2")
	final := sameOnEveryNode(map[string][]Rec{"s0": {rec("1", "w0-0"), rec("2", "w0-1"), rec("3", "w0-0")}})
	wantOnly(t, b.h, final, map[string]string{KindDuplicate: "value w0-0 at 2 positions: s0/1 (ack op 1), s0/3"})

	// The ack names the second copy: the put is that one, the first a
	// copy from nowhere; a duplicate, not also a linearizability anomaly.
	later := newBuilder()
	later.put("w0", "w0-0", OK, "s0", "1")
	later.put("w0", "w0-1", OK, "s0", "3")
	final = sameOnEveryNode(map[string][]Rec{"s0": {rec("1", "w0-0"), rec("2", "w0-1"), rec("3", "w0-1")}})
	wantOnly(t, later.h, final, map[string]string{KindDuplicate: "value w0-1 at 2 positions: s0/2 (final read from n1), s0/3 (ack op 3)"})
}

// Inconsistent: one shard and sequence number with two values, here a
// subscriber served another value than the acknowledgement named.
func TestCheckInconsistent(t *testing.T) {
	b := newBuilder()
	b.put("w0", "w0-0", OK, "s0", "1")
	b.put("w0", "w0-1", Info, "", "")
	b.read(FSub, "s0", "s0", rec("1", "w0-1"))
	final := sameOnEveryNode(map[string][]Rec{"s0": {rec("1", "w0-0")}})
	wantOnly(t, b.h, final, map[string]string{
		KindInconsistent: "s0/1 holds w0-0 (ack op 1) and w0-1 (sub op 5",
	})
}

// Unexpected: a value no client ever put.
func TestCheckUnexpected(t *testing.T) {
	b := newBuilder()
	b.put("w0", "w0-0", OK, "s0", "1")
	final := sameOnEveryNode(map[string][]Rec{"s0": {rec("1", "w0-0"), rec("2", "ghost")}})
	wantOnly(t, b.h, final, map[string]string{KindUnexpected: `value "ghost" at s0/2`})
}

// Aborted read: a value whose put failed definitively is served.
func TestCheckAbortedReads(t *testing.T) {
	b := newBuilder()
	b.put("w0", "w0-0", OK, "s0", "1")
	b.invokePut("w0", "w0-1")
	b.add(Op{Type: Fail, F: FPut, Process: "w0", Node: "n3", Value: "w0-1", Error: "ServiceUnavailable: no leader"})
	final := sameOnEveryNode(map[string][]Rec{"s0": {rec("1", "w0-0"), rec("2", "w0-1")}})
	wantOnly(t, b.h, final, map[string]string{KindAbortedRead: "value w0-1 at s0/2 (final read from n1) failed definitively in op 3 via n3"})
}

// Chains: a reader that skips a record, one that goes back, one that
// starts past the shard's first record, one that reads a record the shard
// no longer holds.
func TestCheckChains(t *testing.T) {
	shard := map[string][]Rec{"s0": {rec("1", "a"), rec("2", "b"), rec("3", "c")}}
	for _, tc := range []struct {
		name  string
		reads [][]Rec
		want  string
	}{
		{"skip", [][]Rec{{rec("1", "a")}, {rec("3", "c")}}, "r0 skipped 1 records: after s0/1 (op 9) it read s0/3 (op 11 via n2); first skipped 2 = b"},
		{"skip at start", [][]Rec{{rec("2", "b")}}, "r0 skipped 1 records: after s0/(start)"},
		{"back", [][]Rec{{rec("1", "a"), rec("2", "b")}, {rec("2", "b")}}, "r0 went back: after s0/2 (op 9) it read s0/2 = b (op 11"},
		{"reorder", [][]Rec{{rec("1", "a"), rec("3", "c"), rec("2", "b")}}, "r0 skipped 1 records"},
		{"vanished", [][]Rec{{rec("1", "a"), rec("2", "b"), rec("3", "c"), rec("4", "c2")}}, "r0 read s0/4 = c2 (op 9 via n2), which no node holds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder()
			b.put("w0", "a", OK, "s0", "1")
			b.put("w0", "b", OK, "s0", "2")
			b.put("w0", "c", OK, "s0", "3")
			b.put("w0", "c2", Info, "", "")
			for _, recs := range tc.reads {
				b.read(FRead, "r0", "s0", recs...)
			}
			wantOnly(t, b.h, sameOnEveryNode(shard), map[string]string{KindChainOrder: tc.want})
		})
	}
}

// Real-time order: w0-0 is acknowledged before w1-0 begins, but gets the
// higher sequence number. Overlapping puts may commit in either order.
func TestCheckRealTimeOrder(t *testing.T) {
	b := newBuilder()
	b.put("w0", "w0-0", OK, "s0", "5")
	b.invokePut("w1", "w1-0")
	b.invokePut("w2", "w2-0")
	b.completePut("w2", "w2-0", OK, "s0", "4") // began after w0-0 ended too: also wrong
	b.completePut("w1", "w1-0", OK, "s0", "6")
	b.put("w3", "w3-0", OK, "s1", "1") // another shard orders independently
	final := sameOnEveryNode(map[string][]Rec{
		"s0": {rec("4", "w2-0"), rec("5", "w0-0"), rec("6", "w1-0")},
		"s1": {rec("1", "w3-0")},
	})
	wantOnly(t, b.h, final, map[string]string{
		KindRealTimeOrder: "s0: w0-0 was acknowledged at 5 (op 1",
		KindLinearizable:  "s0: no order of its operations fits an append-only log; the longest appends 0 of 3 records, then put w0-0",
	})
	if got := CheckRealTimeOrder(b.h, final); len(got) != 1 || !strings.Contains(got[0].Detail, "before w2-0 began") {
		t.Errorf("want exactly the w2-0 anomaly, got %v", got)
	}

	overlapping := newBuilder()
	overlapping.invokePut("w0", "x")
	overlapping.invokePut("w1", "y")
	overlapping.completePut("w0", "x", OK, "s0", "2")
	overlapping.completePut("w1", "y", OK, "s0", "1")
	if got := CheckRealTimeOrder(overlapping.h, nil); len(got) > 0 {
		t.Errorf("concurrent puts flagged: %v", got)
	}
}

// Divergence: after healing n3 serves a shorter shard and another value.
func TestCheckDivergence(t *testing.T) {
	b := newBuilder()
	b.put("w0", "a", OK, "s0", "1")
	b.put("w0", "b", Info, "", "")
	full := map[string][]Rec{"s0": {rec("1", "a"), rec("2", "b")}}
	final := FinalReads{"n1": full, "n2": full, "n3": {"s0": {rec("1", "a")}}}
	wantOnly(t, b.h, final, map[string]string{KindDivergence: "s0: n1 serves 2 records, n3 1; they differ at record 1: 2 = b on n1, the end on n3"})
}

// Final liveness: a node that does not serve an acknowledged record other
// nodes serve (not lost, but not readable everywhere).
func TestCheckFinalLiveness(t *testing.T) {
	b := newBuilder()
	b.put("w0", "a", OK, "s0", "1")
	b.put("w0", "b", OK, "s0", "2")
	full := map[string][]Rec{"s0": {rec("1", "a"), rec("2", "b")}}
	final := FinalReads{"n1": full, "n2": full, "n3": {"s0": {rec("1", "a")}}}
	wantOnly(t, b.h, final, map[string]string{
		KindLiveness:   "n3 does not serve 1 acknowledged records, e.g. b (s0/2)",
		KindDivergence: "n1 serves 2 records, n3 1",
	})
}

// The history file round-trips through the recorder and ReadHistory, and
// Pairs matches completions to their invocations per process.
func TestHistoryFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	r, err := NewRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	r.Record(Op{Type: Invoke, F: FPut, Process: "w0", Value: "w0-0"})
	r.Record(Op{Type: Invoke, F: FPut, Process: "w1", Value: "w1-0"})
	r.Record(Op{Type: OK, F: FPut, Process: "w1", Value: "w1-0", Shard: "s0", Seq: "7"})
	r.Record(Op{Type: Info, F: FPut, Process: "w0", Value: "w0-0", Error: "timeout"})
	r.Record(Op{Type: Invoke, F: FPut, Process: "w0", Value: "w0-1"}) // never completed
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	h, err := ReadHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 5 || h[2].Seq != "7" || h[3].Index != 3 || h[0].Time.IsZero() {
		t.Fatalf("read back %+v", h)
	}
	pairs := h.Pairs()
	if len(pairs) != 2 || pairs[0].Invoke.Value != "w1-0" || pairs[1].Done.Type != Info || pairs[1].Invoke.Index != 0 {
		t.Fatalf("pairs %+v", pairs)
	}
}

func TestSeqLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{
		{"9", "10", true}, {"10", "9", false}, {"18446744073709551616", "18446744073709551617", true},
		{"5", "5", false}, {"99999999999999999999", "100000000000000000000", true},
	} {
		if got := seqLess(tc.a, tc.b); got != tc.less {
			t.Errorf("seqLess(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}

func recAt(seq, value string, arrival int64) Rec {
	return Rec{Seq: seq, Value: value, Arrival: arrival}
}

// Arrival order: a record stamped earlier than the one before it in its
// shard (a leader whose clock stepped back, unclamped), and one record
// served with two arrival times. Equal stamps, and a later shard starting
// lower, are fine.
func TestCheckArrivalOrder(t *testing.T) {
	b := newBuilder()
	b.put("w0", "a", OK, "s0", "1")
	b.put("w0", "b", OK, "s0", "2")
	b.put("w0", "c", OK, "s0", "3")
	b.put("w0", "d", OK, "s1", "1")
	good := map[string][]Rec{
		"s0": {recAt("1", "a", 5000), recAt("2", "b", 5000), recAt("3", "c", 9000)},
		"s1": {recAt("1", "d", 1000)},
	}
	b.read(FRead, "r0", "s0", good["s0"]...)
	if got := CheckAll(b.h, sameOnEveryNode(good)); len(got) > 0 {
		t.Fatalf("anomalies in ordered arrivals: %v", got)
	}

	back := newBuilder()
	back.put("w0", "a", OK, "s0", "1")
	back.put("w0", "b", OK, "s0", "2")
	back.put("w0", "c", OK, "s0", "3")
	stepped := map[string][]Rec{"s0": {recAt("1", "a", 5000), recAt("2", "b", 9000), recAt("3", "c", 8000)}}
	wantOnly(t, back.h, sameOnEveryNode(stepped), map[string]string{
		KindArrivalOrder: "s0: 2 arrived at 00:00:09.000 (final read from n1), after it 3 at 00:00:08.000 (final read from n1), 1s earlier",
	})

	twice := newBuilder()
	twice.put("w0", "a", OK, "s0", "1")
	twice.read(FSub, "s0", "s0", recAt("1", "a", 7000))
	wantOnly(t, twice.h, sameOnEveryNode(map[string][]Rec{"s0": {recAt("1", "a", 5000)}}), map[string]string{
		KindArrivalOrder: "s0/1 arrived at 00:00:07.000 (sub op 3 by s0 via n2) and at 00:00:05.000 (final read from n1)",
	})
}

func (b *historyBuilder) shard(id string, parents ...string) {
	b.add(Op{Type: OK, F: FShard, Process: "lineage", Shard: id, Parents: parents})
}

// putKey is a whole put of value with partition key key.
func (b *historyBuilder) putKey(proc, key, value string, typ OpType, shard, seq string) {
	b.add(Op{Type: Invoke, F: FPut, Process: proc, Node: "n1", Value: value, Key: key})
	b.add(Op{Type: typ, F: FPut, Process: proc, Node: "n1", Value: value, Key: key, Shard: shard, Seq: seq})
}

// Real-time order across a split: s0 split into s1 and s2, and a put
// acknowledged in s1 before a put that then landed in s0 began. Puts to
// the parent before the children's are fine, and so are puts to the
// children (siblings) in any order.
func TestCheckRealTimeOrderAcrossReshard(t *testing.T) {
	good := newBuilder()
	good.shard("s0")
	good.shard("s1", "s0")
	good.shard("s2", "s0")
	good.put("w0", "a", OK, "s0", "1")
	good.put("w0", "b", OK, "s2", "1")
	good.put("w0", "c", OK, "s1", "1")
	good.put("w0", "d", OK, "s2", "2")
	final := sameOnEveryNode(map[string][]Rec{"s0": {rec("1", "a")}, "s1": {rec("1", "c")}, "s2": {rec("1", "b"), rec("2", "d")}})
	if got := CheckAll(good.h, final); len(got) > 0 {
		t.Fatalf("anomalies in an ordered reshard: %v", got)
	}

	bad := newBuilder()
	bad.shard("s0")
	bad.shard("s1", "s0")
	bad.shard("s2", "s0")
	bad.shard("s3", "s1", "s2") // merged: s0 is an ancestor through both
	bad.put("w0", "a", OK, "s0", "1")
	bad.put("w0", "c", OK, "s3", "1")
	bad.put("w1", "b", OK, "s0", "2")
	final = sameOnEveryNode(map[string][]Rec{"s0": {rec("1", "a"), rec("2", "b")}, "s3": {rec("1", "c")}})
	wantOnly(t, bad.h, final, map[string]string{
		KindRealTimeOrder: "c was acknowledged in s3 (op 7, 00:00:00.008) before b began (op 8",
		KindKeyOrder:      "key k: c was in s3",
	})
}

// Key order (contract 5): key k's record in the child s1 was served to a
// reader before a put of k, which then landed in the parent s0, began.
// Both puts' outcomes are unknown, so only the read shows the order. The
// same interleaving for another key in the parent is no anomaly of k's.
func TestCheckKeyOrder(t *testing.T) {
	b := newBuilder()
	b.shard("s0")
	b.shard("s1", "s0")
	b.putKey("w0", "k", "a", Info, "", "")
	b.read(FRead, "r-n2-s1", "s1", rec("1", "a"))
	b.putKey("w1", "k", "b", Info, "", "")
	b.putKey("w2", "other", "c", Info, "", "")
	final := sameOnEveryNode(map[string][]Rec{"s0": {rec("1", "b"), rec("2", "c")}, "s1": {rec("1", "a")}})
	wantOnly(t, b.h, final, map[string]string{
		KindKeyOrder: "key k: a was in s1 by 00:00:00.006 (read op 5 by r-n2-s1) before b, which landed in its ancestor s0",
	})
	if got := CheckKeyOrder(b.h, final); len(got) != 1 {
		t.Errorf("want only key k's anomaly, got %v", got)
	}
}

// A reader that reached the end of a closed shard must have read all of
// it: one that was told the shard ended after two of its three records
// missed the third.
func TestCheckChainsClosedShardEnd(t *testing.T) {
	b := newBuilder()
	b.put("w0", "a", OK, "s0", "1")
	b.put("w0", "b", OK, "s0", "2")
	b.put("w0", "c", OK, "s0", "3")
	b.add(Op{Type: Invoke, F: FRead, Process: "r0", Node: "n2", Shard: "s0"})
	b.add(Op{Type: OK, F: FRead, Process: "r0", Node: "n2", Shard: "s0", Records: []Rec{rec("1", "a"), rec("2", "b")}, Closed: true})
	final := sameOnEveryNode(map[string][]Rec{"s0": {rec("1", "a"), rec("2", "b"), rec("3", "c")}})
	wantOnly(t, b.h, final, map[string]string{KindChainOrder: "r0 reached the end of closed shard s0 after 2 records (op 7 via n2); after healing it holds 3"})
}
