package fault

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// FinalReads is what every node served of every shard after the faults
// were healed: node, then shard id, then the records from the start of the
// shard to its tip.
type FinalReads map[string]map[string][]Rec

// Anomaly is one violation of the contract found in a history.
type Anomaly struct {
	// Kind is the checker that found it (KindLost, ...).
	Kind string
	// Detail says what, with the values, positions and operation indexes
	// needed to find it in the history file.
	Detail string
}

func (a Anomaly) String() string { return a.Kind + ": " + a.Detail }

// Anomaly kinds, one per checker.
const (
	KindLost          = "lost"
	KindDuplicate     = "duplicate"
	KindInconsistent  = "inconsistent"
	KindUnexpected    = "unexpected"
	KindAbortedRead   = "aborted-read"
	KindChainOrder    = "chain-order"
	KindRealTimeOrder = "real-time-order"
	KindDivergence    = "divergence"
	KindLiveness      = "final-liveness"
	KindArrivalOrder  = "arrival-order"
	KindKeyOrder      = "key-order"
	KindLinearizable  = "linearizable"
)

// Checker is one check over a history and the final reads.
type Checker struct {
	Kind  string
	Check func(History, FinalReads) []Anomaly
}

// Checkers are every check a run passes through.
var Checkers = []Checker{
	{KindLost, CheckLost},
	{KindDuplicate, CheckDuplicates},
	{KindInconsistent, CheckInconsistent},
	{KindUnexpected, CheckUnexpected},
	{KindAbortedRead, CheckAbortedReads},
	{KindChainOrder, CheckChains},
	{KindRealTimeOrder, CheckRealTimeOrder},
	{KindDivergence, CheckDivergence},
	{KindLiveness, CheckFinalLiveness},
	{KindArrivalOrder, CheckArrivalOrder},
	{KindKeyOrder, CheckKeyOrder},
	{KindLinearizable, CheckLinearizable},
}

// CheckAll runs every checker and returns the anomalies by kind (kinds
// without any are absent).
func CheckAll(h History, final FinalReads) map[string][]Anomaly {
	out, _ := CheckRun(h, final, DefaultLinearizabilityBudget)
	return out
}

// CheckRun is CheckAll for a fault run: the linearizability check gets
// budget, and its report (which shards it decided) is returned for the
// run's report, since a shard it could not decide is no anomaly.
func CheckRun(h History, final FinalReads, budget LinearizabilityBudget) (map[string][]Anomaly, LinearizabilityReport) {
	lin := CheckLinearizability(h, final, budget)
	out := map[string][]Anomaly{}
	for _, c := range Checkers {
		a := lin.Anomalies
		if c.Kind != KindLinearizable {
			a = c.Check(h, final)
		}
		if len(a) > 0 {
			out[c.Kind] = a
		}
	}
	return out, lin
}

// seqLess orders sequence numbers: decimals without leading zeros, so a
// shorter one is smaller (they exceed 64 bits once the shard index is set).
func seqLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// position is where a record sits: a shard and a sequence number.
type position struct{ shard, seq string }

func (p position) String() string { return p.shard + "/" + p.seq }

// observation is a record seen somewhere: in an acknowledgement, a read, a
// subscription event or a final read.
type observation struct {
	pos     position
	value   string
	arrival int64  // ms; 0 for an acknowledgement, which carries none
	where   string // "ack op 12", "read op 40", "final read from n2"
}

// observations lists every record the history and the final reads show,
// acknowledgements included.
func observations(h History, final FinalReads) []observation {
	var out []observation
	for _, op := range h {
		switch {
		case op.F == FPut && op.Type == OK:
			out = append(out, observation{position{op.Shard, op.Seq}, op.Value, 0, fmt.Sprintf("ack op %d", op.Index)})
		case (op.F == FRead || op.F == FSub) && op.Type == OK:
			for _, r := range op.Records {
				out = append(out, observation{position{op.Shard, r.Seq}, r.Value, r.Arrival, fmt.Sprintf("%s op %d by %s via %s", op.F, op.Index, op.Process, op.Node)})
			}
		}
	}
	for _, node := range sortedKeys(final) {
		for _, shard := range sortedKeys(final[node]) {
			for _, r := range final[node][shard] {
				out = append(out, observation{position{shard, r.Seq}, r.Value, r.Arrival, "final read from " + node})
			}
		}
	}
	return out
}

// readObservations is observations without the acknowledgements: what
// readers were actually served.
func readObservations(h History, final FinalReads) []observation {
	var out []observation
	for _, o := range observations(h, final) {
		if !strings.HasPrefix(o.where, "ack ") {
			out = append(out, o)
		}
	}
	return out
}

// putOutcomes maps every attempted value to how its put ended (OK, Fail,
// Info, or Invoke when the run stopped before it completed) and the op that
// says so.
func putOutcomes(h History) map[string]Op {
	out := map[string]Op{}
	for _, op := range h {
		if op.F != FPut {
			continue
		}
		if op.Type == Invoke {
			if _, seen := out[op.Value]; !seen {
				out[op.Value] = op
			}
			continue
		}
		out[op.Value] = op
	}
	return out
}

// finalValues maps each value in a node's final reads to its position.
func finalValues(reads map[string][]Rec) map[string]position {
	out := map[string]position{}
	for shard, recs := range reads {
		for _, r := range recs {
			out[r.Value] = position{shard, r.Seq}
		}
	}
	return out
}

// limit keeps the first n anomalies of a kind and says how many were cut.
func limit(as []Anomaly, n int) []Anomaly {
	if len(as) <= n {
		return as
	}
	more := len(as) - n
	return append(as[:n:n], Anomaly{as[0].Kind, fmt.Sprintf("... and %d more", more)})
}

const maxExamples = 20

// CheckLost finds acknowledged records that no node serves after healing:
// the contract's "no acknowledged record is lost". Each is placed by its
// acknowledged sequence number against what its shard still holds: before
// the first record (prefix), inside (middle) or after the last (postfix).
func CheckLost(h History, final FinalReads) []Anomaly {
	served := map[string]bool{}
	shardSpan := map[string][2]string{} // first and last seq any node holds
	for _, reads := range final {
		for shard, recs := range reads {
			for _, r := range recs {
				served[r.Value] = true
				span, ok := shardSpan[shard]
				if !ok {
					span = [2]string{r.Seq, r.Seq}
				}
				if seqLess(r.Seq, span[0]) {
					span[0] = r.Seq
				}
				if seqLess(span[1], r.Seq) {
					span[1] = r.Seq
				}
				shardSpan[shard] = span
			}
		}
	}
	var out []Anomaly
	for _, op := range h {
		if op.F != FPut || op.Type != OK || served[op.Value] {
			continue
		}
		where := "middle"
		span, ok := shardSpan[op.Shard]
		switch {
		case !ok:
			where = "whole shard"
		case seqLess(op.Seq, span[0]):
			where = "prefix"
		case seqLess(span[1], op.Seq):
			where = "postfix"
		}
		out = append(out, Anomaly{KindLost, fmt.Sprintf("%s: value %s acknowledged at %s/%s (op %d via %s) is on no node",
			where, op.Value, op.Shard, op.Seq, op.Index, op.Node)})
	}
	return limit(out, maxExamples)
}

// CheckDuplicates finds a value stored at two positions. Every value is
// put once and unknown outcomes are never retried, so any second copy is
// the broker's.
func CheckDuplicates(h History, final FinalReads) []Anomaly {
	at := map[string]map[position]string{}
	for _, o := range observations(h, final) {
		if at[o.value] == nil {
			at[o.value] = map[position]string{}
		}
		if _, ok := at[o.value][o.pos]; !ok {
			at[o.value][o.pos] = o.where
		}
	}
	var out []Anomaly
	for _, v := range sortedKeys(at) {
		if len(at[v]) < 2 {
			continue
		}
		var places []string
		for p, where := range at[v] {
			places = append(places, fmt.Sprintf("%s (%s)", p, where))
		}
		slices.Sort(places)
		out = append(out, Anomaly{KindDuplicate, fmt.Sprintf("value %s at %d positions: %s", v, len(places), strings.Join(places, ", "))})
	}
	return limit(out, maxExamples)
}

// CheckInconsistent finds one shard and sequence number holding two
// values: replicas or readers disagreeing about a committed record.
func CheckInconsistent(h History, final FinalReads) []Anomaly {
	at := map[position]map[string]string{}
	for _, o := range observations(h, final) {
		if at[o.pos] == nil {
			at[o.pos] = map[string]string{}
		}
		if _, ok := at[o.pos][o.value]; !ok {
			at[o.pos][o.value] = o.where
		}
	}
	var out []Anomaly
	for _, p := range sortedPositions(at) {
		if len(at[p]) < 2 {
			continue
		}
		var vals []string
		for v, where := range at[p] {
			vals = append(vals, fmt.Sprintf("%s (%s)", v, where))
		}
		slices.Sort(vals)
		out = append(out, Anomaly{KindInconsistent, fmt.Sprintf("%s holds %s", p, strings.Join(vals, " and "))})
	}
	return limit(out, maxExamples)
}

// CheckUnexpected finds values read that no client ever tried to put.
func CheckUnexpected(h History, final FinalReads) []Anomaly {
	attempted := putOutcomes(h)
	seen := map[string]bool{}
	var out []Anomaly
	for _, o := range readObservations(h, final) {
		if _, ok := attempted[o.value]; ok || seen[o.value] {
			continue
		}
		seen[o.value] = true
		out = append(out, Anomaly{KindUnexpected, fmt.Sprintf("value %q at %s (%s) was never put", o.value, o.pos, o.where)})
	}
	return limit(out, maxExamples)
}

// CheckAbortedReads finds values read whose put failed definitively: the
// broker said it was not applied, yet it was.
func CheckAbortedReads(h History, final FinalReads) []Anomaly {
	outcome := putOutcomes(h)
	seen := map[string]bool{}
	var out []Anomaly
	for _, o := range readObservations(h, final) {
		op, ok := outcome[o.value]
		if !ok || op.Type != Fail || seen[o.value] {
			continue
		}
		seen[o.value] = true
		out = append(out, Anomaly{KindAbortedRead, fmt.Sprintf("value %s at %s (%s) failed definitively in op %d via %s: %s",
			o.value, o.pos, o.where, op.Index, op.Node, op.Error)})
	}
	return limit(out, maxExamples)
}

// referenceLog picks, per shard, the longest final read of any node (the
// nodes agree unless CheckDivergence says otherwise), as the order a reader
// must follow.
func referenceLog(final FinalReads) map[string][]Rec {
	ref := map[string][]Rec{}
	for _, node := range sortedKeys(final) {
		for shard, recs := range final[node] {
			if len(recs) > len(ref[shard]) {
				ref[shard] = recs
			}
		}
	}
	return ref
}

// CheckChains checks each reader: a GetRecords chain or a subscription
// (resumed from its continuation number after every break) starts at the
// start of its shard and must see exactly the shard's records in order,
// nothing skipped, repeated or reordered, nothing the shard does not hold
// after healing.
func CheckChains(h History, final FinalReads) []Anomaly {
	ref := referenceLog(final)
	index := map[string]map[string]int{} // shard -> seq -> position in ref
	for shard, recs := range ref {
		index[shard] = map[string]int{}
		for i, r := range recs {
			index[shard][r.Seq] = i
		}
	}
	type state struct {
		shard string
		next  int // index in ref of the record the reader must see next
		last  Rec
		lastO int
		bad   bool
	}
	readers := map[string]*state{}
	var out []Anomaly
	for _, op := range h {
		if (op.F != FRead && op.F != FSub) || op.Type != OK {
			continue
		}
		st := readers[op.Process]
		if st == nil {
			st = &state{shard: op.Shard, last: Rec{Seq: "(start)"}}
			readers[op.Process] = st
		}
		for _, r := range op.Records {
			if st.bad {
				break // one anomaly per reader; the rest would only echo it
			}
			i, ok := index[op.Shard][r.Seq]
			switch {
			case op.Shard != st.shard:
				out = append(out, Anomaly{KindChainOrder, fmt.Sprintf("%s followed %s, then op %d returned %s", op.Process, st.shard, op.Index, op.Shard)})
				st.bad = true
			case !ok:
				out = append(out, Anomaly{KindChainOrder, fmt.Sprintf("%s read %s/%s = %s (op %d via %s), which no node holds after healing",
					op.Process, op.Shard, r.Seq, r.Value, op.Index, op.Node)})
				st.bad = true
			case i < st.next:
				out = append(out, Anomaly{KindChainOrder, fmt.Sprintf("%s went back: after %s/%s (op %d) it read %s/%s = %s (op %d via %s)",
					op.Process, op.Shard, st.last.Seq, st.lastO, op.Shard, r.Seq, r.Value, op.Index, op.Node)})
				st.bad = true
			case i > st.next:
				missed := ref[op.Shard][st.next]
				out = append(out, Anomaly{KindChainOrder, fmt.Sprintf("%s skipped %d records: after %s/%s (op %d) it read %s/%s (op %d via %s); first skipped %s = %s",
					op.Process, i-st.next, op.Shard, st.last.Seq, st.lastO, op.Shard, r.Seq, op.Index, op.Node, missed.Seq, missed.Value)})
				st.bad = true
			case ref[op.Shard][i].Value != r.Value:
				// Same position, other value: CheckInconsistent reports it.
				st.bad = true
			default:
				st.next, st.last, st.lastO = i+1, r, op.Index
			}
		}
		if op.Closed && !st.bad && op.Shard == st.shard && st.next != len(ref[op.Shard]) {
			out = append(out, Anomaly{KindChainOrder, fmt.Sprintf("%s reached the end of closed shard %s after %d records (op %d via %s); after healing it holds %d",
				op.Process, op.Shard, st.next, op.Index, op.Node, len(ref[op.Shard]))})
			st.bad = true
		}
	}
	return limit(out, maxExamples)
}

// CheckRealTimeOrder checks that a put acknowledged before another put to
// the same shard began got the lower sequence number: commit order must
// respect real time, or a reader could see an effect before its cause.
func CheckRealTimeOrder(h History, _ FinalReads) []Anomaly {
	byShard := map[string][]Completed{}
	for _, c := range h.Pairs() {
		if c.Done.F == FPut && c.Done.Type == OK {
			byShard[c.Done.Shard] = append(byShard[c.Done.Shard], c)
		}
	}
	var out []Anomaly
	for _, shard := range sortedKeys(byShard) {
		ops := byShard[shard]
		byInvoke := slices.Clone(ops)
		sort.SliceStable(byInvoke, func(i, j int) bool { return byInvoke[i].Invoke.Time.Before(byInvoke[j].Invoke.Time) })
		byDone := slices.Clone(ops)
		sort.SliceStable(byDone, func(i, j int) bool { return byDone[i].Done.Time.Before(byDone[j].Done.Time) })
		// Sweep: for each put in invocation order, every put acknowledged
		// before it began is folded into the highest sequence number so far.
		var maxDone *Completed
		j := 0
		for _, b := range byInvoke {
			for j < len(byDone) && byDone[j].Done.Time.Before(b.Invoke.Time) {
				if maxDone == nil || seqLess(maxDone.Done.Seq, byDone[j].Done.Seq) {
					maxDone = &byDone[j]
				}
				j++
			}
			if maxDone != nil && !seqLess(maxDone.Done.Seq, b.Done.Seq) {
				a := *maxDone
				out = append(out, Anomaly{KindRealTimeOrder, fmt.Sprintf("%s: %s was acknowledged at %s (op %d, %s) before %s began (op %d, %s), which got the lower %s",
					shard, a.Done.Value, a.Done.Seq, a.Done.Index, a.Done.Time.Format("15:04:05.000"),
					b.Invoke.Value, b.Invoke.Index, b.Invoke.Time.Format("15:04:05.000"), b.Done.Seq)})
			}
		}
	}
	// Across a reshard: a parent is sealed before its children take any
	// write, so a put acknowledged in a child came after every put that
	// landed in one of its ancestors began.
	lineage := h.Lineage()
	for _, child := range sortedKeys(byShard) {
		first := byShard[child][0]
		for _, c := range byShard[child] {
			if c.Done.Time.Before(first.Done.Time) {
				first = c
			}
		}
		for _, parent := range sortedKeys(ancestors(lineage, child)) {
			for _, b := range byShard[parent] {
				if first.Done.Time.Before(b.Invoke.Time) {
					out = append(out, Anomaly{KindRealTimeOrder, fmt.Sprintf("%s was acknowledged in %s (op %d, %s) before %s began (op %d, %s), which landed in its ancestor %s",
						first.Done.Value, child, first.Done.Index, first.Done.Time.Format("15:04:05.000"),
						b.Invoke.Value, b.Invoke.Index, b.Invoke.Time.Format("15:04:05.000"), parent)})
					break
				}
			}
		}
	}
	return limit(out, maxExamples)
}

// CheckKeyOrder checks contract 5 across resharding: for every key, all
// its records in a parent come before all of them in a child. A record
// seen in a shard (acknowledged there, or returned by a read) before a put
// of the same key that landed in an ancestor of that shard had even
// begun breaks it. Keys come from the puts' invocations; shards from the
// lineage the history records (shard ops).
func CheckKeyOrder(h History, final FinalReads) []Anomaly {
	lineage := h.Lineage()
	type record struct {
		value, key, shard string
		invoked, seen     time.Time // put began; first proof the record existed
		seenBy            string
	}
	recs := map[string]*record{}
	for _, op := range h {
		if op.F == FPut && op.Type == Invoke {
			recs[op.Value] = &record{value: op.Value, key: op.Key, invoked: op.Time}
		}
	}
	note := func(value, shard string, at time.Time, by string) {
		r := recs[value]
		if r == nil {
			return // never put: CheckUnexpected reports it
		}
		r.shard = shard
		if !at.IsZero() && (r.seen.IsZero() || at.Before(r.seen)) {
			r.seen, r.seenBy = at, by
		}
	}
	for _, op := range h {
		switch {
		case op.F == FPut && op.Type == OK:
			note(op.Value, op.Shard, op.Time, fmt.Sprintf("ack op %d", op.Index))
		case (op.F == FRead || op.F == FSub) && op.Type == OK:
			for _, r := range op.Records {
				note(r.Value, op.Shard, op.Time, fmt.Sprintf("%s op %d by %s", op.F, op.Index, op.Process))
			}
		}
	}
	for _, node := range sortedKeys(final) {
		for shard, rs := range final[node] {
			for _, r := range rs {
				note(r.Value, shard, time.Time{}, "")
			}
		}
	}
	byKey := map[string]map[string][]*record{} // key -> shard -> records
	for _, r := range recs {
		if r.shard == "" {
			continue
		}
		if byKey[r.key] == nil {
			byKey[r.key] = map[string][]*record{}
		}
		byKey[r.key][r.shard] = append(byKey[r.key][r.shard], r)
	}
	var out []Anomaly
	for _, key := range sortedKeys(byKey) {
		shards := byKey[key]
		for _, child := range sortedKeys(shards) {
			var first *record
			for _, r := range shards[child] {
				if !r.seen.IsZero() && (first == nil || r.seen.Before(first.seen)) {
					first = r
				}
			}
			if first == nil {
				continue
			}
			for _, parent := range sortedKeys(ancestors(lineage, child)) {
				for _, p := range shards[parent] {
					if first.seen.Before(p.invoked) {
						out = append(out, Anomaly{KindKeyOrder, fmt.Sprintf("key %s: %s was in %s by %s (%s) before %s, which landed in its ancestor %s, was put at %s",
							key, first.value, child, first.seen.Format("15:04:05.000"), first.seenBy, p.value, parent, p.invoked.Format("15:04:05.000"))})
						break
					}
				}
			}
		}
	}
	return limit(out, maxExamples)
}

// CheckArrivalOrder checks DESIGN.md's "arrival time set once by the
// leader, never decreasing within a shard": every read of a record shows
// the same arrival timestamp, and along a shard's sequence numbers the
// timestamps never go down, whatever the leaders' clocks did (clock-jump).
// Records read without a timestamp (older histories) are skipped.
func CheckArrivalOrder(h History, final FinalReads) []Anomaly {
	type stamp struct {
		arrival int64
		where   string
	}
	byShard := map[string]map[string]stamp{}
	var out []Anomaly
	for _, o := range readObservations(h, final) {
		if o.arrival == 0 {
			continue
		}
		seqs := byShard[o.pos.shard]
		if seqs == nil {
			seqs = map[string]stamp{}
			byShard[o.pos.shard] = seqs
		}
		if st, ok := seqs[o.pos.seq]; !ok {
			seqs[o.pos.seq] = stamp{o.arrival, o.where}
		} else if st.arrival != o.arrival {
			out = append(out, Anomaly{KindArrivalOrder, fmt.Sprintf("%s arrived at %s (%s) and at %s (%s)",
				o.pos, arrivalTime(st.arrival), st.where, arrivalTime(o.arrival), o.where)})
		}
	}
	for _, shard := range sortedKeys(byShard) {
		seqs := sortedKeys(byShard[shard])
		sort.Slice(seqs, func(i, j int) bool { return seqLess(seqs[i], seqs[j]) })
		for i := 1; i < len(seqs); i++ {
			a, b := byShard[shard][seqs[i-1]], byShard[shard][seqs[i]]
			if b.arrival < a.arrival {
				out = append(out, Anomaly{KindArrivalOrder, fmt.Sprintf("%s: %s arrived at %s (%s), after it %s at %s (%s), %v earlier",
					shard, seqs[i-1], arrivalTime(a.arrival), a.where, seqs[i], arrivalTime(b.arrival), b.where,
					time.Duration(a.arrival-b.arrival)*time.Millisecond)})
			}
		}
	}
	return limit(out, maxExamples)
}

func arrivalTime(ms int64) string { return time.UnixMilli(ms).UTC().Format("15:04:05.000") }

// CheckDivergence checks that after healing every node serves every shard
// identically.
func CheckDivergence(_ History, final FinalReads) []Anomaly {
	nodes := sortedKeys(final)
	shards := map[string]bool{}
	for _, n := range nodes {
		for s := range final[n] {
			shards[s] = true
		}
	}
	var out []Anomaly
	for _, shard := range sortedKeys(shards) {
		base := nodes[0]
		for _, n := range nodes[1:] {
			a, b := final[base][shard], final[n][shard]
			if slices.Equal(a, b) {
				continue
			}
			i := 0
			for i < len(a) && i < len(b) && a[i] == b[i] {
				i++
			}
			at := func(rs []Rec) string {
				if i < len(rs) {
					return fmt.Sprintf("%s = %s", rs[i].Seq, rs[i].Value)
				}
				return "the end"
			}
			out = append(out, Anomaly{KindDivergence, fmt.Sprintf("%s: %s serves %d records, %s %d; they differ at record %d: %s on %s, %s on %s",
				shard, base, len(a), n, len(b), i, at(a), base, at(b), n)})
		}
	}
	return limit(out, maxExamples)
}

// CheckFinalLiveness checks that every acknowledged record was readable
// from every node once the faults were healed (the final reads poll until
// they are, up to a deadline).
func CheckFinalLiveness(h History, final FinalReads) []Anomaly {
	var out []Anomaly
	for _, node := range sortedKeys(final) {
		have := finalValues(final[node])
		var missing []string
		for _, op := range h {
			if op.F == FPut && op.Type == OK {
				if _, ok := have[op.Value]; !ok {
					missing = append(missing, fmt.Sprintf("%s (%s/%s)", op.Value, op.Shard, op.Seq))
				}
			}
		}
		if len(missing) > 0 {
			out = append(out, Anomaly{KindLiveness, fmt.Sprintf("%s does not serve %d acknowledged records, e.g. %s",
				node, len(missing), strings.Join(missing[:min(5, len(missing))], ", "))})
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sortedPositions[V any](m map[position]V) []position {
	keys := make([]position, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].shard != keys[j].shard {
			return keys[i].shard < keys[j].shard
		}
		return seqLess(keys[i].seq, keys[j].seq)
	})
	return keys
}
