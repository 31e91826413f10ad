package fault

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// The linearizability check asks porcupine whether each shard's history is
// that of one append-only log: every put takes effect at one instant
// between its invocation and its completion, every read at one instant
// between its own, and the log at any instant holds exactly the records
// whose puts took effect before. The log's final contents are known (the
// reference log of the final reads), so the model's state is just how
// many of its records are appended; the search is for an order of the
// operations that respects real time and appends the records in the
// log's order.
//
// What is modelled, per shard:
//   - every record of the reference log is a put. An acknowledged put
//     (ack naming this shard) keeps its interval and must land at the
//     sequence number its ack named. Any other record (an unknown outcome
//     that was applied, a failed put that was anyway, a put whose outcome
//     the run never saw, a value nobody put) is a put that began at its
//     invocation (at the history's start when there was none) and never
//     returned: it may take effect at any time after. CheckAbortedReads,
//     CheckUnexpected and CheckDuplicates report those records themselves.
//   - an acknowledged put whose value the log does not hold is left out:
//     CheckLost reports it.
//   - a read or subscription event that returned records takes effect once
//     the newest of them is appended. Reads may be stale (a follower serves
//     what it applied), so a read never has to reach the log's tip. Only
//     the read's completion constrains it, so the invocation a subscription
//     event is paired with (recorded after the previous event, while the
//     server may have sent this one earlier) does no harm. Records the log
//     does not hold at that sequence number are skipped (CheckChains and
//     CheckInconsistent report them).
//   - a read whose newest record was certainly appended before the read
//     completed (a put at or after that record's position had been
//     acknowledged) can take effect at its completion in every order that
//     fits the puts, so it is left out: it would only make the search
//     longer. What remains are the reads that raced their records' puts.
//
// Shards are checked one at a time (porcupine's own partitioning would
// give one verdict and one timeout for all), each with a budget: a soak's
// shards hold up to about 10^5 operations, and porcupine keeps a bitset
// of all operations per step, so memory grows with their square (about
// 250 MB for 45,000).

// LinearizabilityBudget bounds the check of one shard.
type LinearizabilityBudget struct {
	// MaxOps: a shard with more modelled operations is not checked.
	MaxOps int
	// Timeout: a shard whose check runs longer is left undecided.
	Timeout time.Duration
}

// DefaultLinearizabilityBudget is what CheckAll gives each shard.
var DefaultLinearizabilityBudget = LinearizabilityBudget{MaxOps: 100_000, Timeout: 10 * time.Second}

// LinearizabilityReport says what the check decided about each shard of
// the reference log. Shards too large or too slow to check are undecided,
// not anomalies; the run's report names them.
type LinearizabilityReport struct {
	Budget LinearizabilityBudget
	// Linearizable: shards with an order that fits.
	Linearizable []string
	// Anomalies: one per shard that has none.
	Anomalies []Anomaly
	// TooLarge: shards with more than Budget.MaxOps operations, unchecked.
	TooLarge []string
	// TimedOut: shards whose check ran out of Budget.Timeout.
	TimedOut []string
}

// String is the report's line: how many shards were decided, and which
// were not.
func (r LinearizabilityReport) String() string {
	s := fmt.Sprintf("linearizability: %d shards linearizable, %d not", len(r.Linearizable), len(r.Anomalies))
	if len(r.TooLarge) > 0 {
		s += fmt.Sprintf("; %d too large to check (over %d operations): %s", len(r.TooLarge), r.Budget.MaxOps, strings.Join(r.TooLarge, ", "))
	}
	if len(r.TimedOut) > 0 {
		s += fmt.Sprintf("; %d undecided after %v each: %s", len(r.TimedOut), r.Budget.Timeout, strings.Join(r.TimedOut, ", "))
	}
	return s
}

// CheckLinearizable is the linearizability check with the default budget,
// as a Checker.
func CheckLinearizable(h History, final FinalReads) []Anomaly {
	return CheckLinearizability(h, final, DefaultLinearizabilityBudget).Anomalies
}

// CheckLinearizability checks every shard of the reference log within the
// budget.
func CheckLinearizability(h History, final FinalReads, budget LinearizabilityBudget) LinearizabilityReport {
	report := LinearizabilityReport{Budget: budget}
	ref := referenceLog(final)
	pairs := h.Pairs()
	puts := putsByValue(h, pairs)
	for _, shard := range sortedKeys(ref) {
		ops := shardOperations(h, pairs, puts, shard, ref[shard])
		if len(ops) > budget.MaxOps {
			report.TooLarge = append(report.TooLarge, shard)
			continue
		}
		model := logModel(ref[shard])
		history := make([]porcupine.Operation, len(ops))
		for i, op := range ops {
			history[i] = op.Operation
		}
		switch porcupine.CheckOperationsTimeout(model, history, budget.Timeout) {
		case porcupine.Ok:
			report.Linearizable = append(report.Linearizable, shard)
		case porcupine.Unknown:
			report.TimedOut = append(report.TimedOut, shard)
		case porcupine.Illegal:
			// The verbose check finds the longest order that fits, to say
			// where the shard goes wrong; it costs about ten times more
			// (a 45,000-operation shard: 0.25 s, then 3.6 s), so only a
			// shard with an anomaly pays it.
			result, info := porcupine.CheckOperationsVerbose(model, history, budget.Timeout)
			detail := shard + ": no order of its operations fits an append-only log (explaining where ran out of time)"
			if result == porcupine.Illegal {
				detail = illegalDetail(shard, ref[shard], ops, info)
			}
			report.Anomalies = append(report.Anomalies, Anomaly{KindLinearizable, detail})
		}
	}
	return report
}

// putInput is a put as the model sees it: the value, and the sequence
// number its ack named ("" when it was not acknowledged).
type putInput struct{ value, seq string }

// readInput is a read as the model sees it: the position in the log of
// the newest record it returned.
type readInput struct{ newest int }

// logModel is one shard as an append-only log that ends as log: the state
// is how many of its records are appended.
func logModel(log []Rec) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return 0 },
		Step: func(state, input, _ any) (bool, any) {
			n := state.(int)
			switch in := input.(type) {
			case putInput:
				ok := n < len(log) && log[n].Value == in.value && (in.seq == "" || log[n].Seq == in.seq)
				return ok, n + 1
			case readInput:
				return in.newest < n, n
			}
			return false, n
		},
	}
}

// modelOp is an operation given to porcupine and the history entry it
// stands for, to name it in an anomaly.
type modelOp struct {
	porcupine.Operation
	desc string
}

// never is the return time of a put that never returned.
const never = math.MaxInt64

// putRecord is what the history says about one put: its invocation and,
// when it was acknowledged, its completion.
type putRecord struct {
	invoke Op
	acked  *Op
}

func putsByValue(h History, pairs []Completed) map[string]putRecord {
	out := map[string]putRecord{}
	for _, op := range h {
		if op.F == FPut && op.Type == Invoke {
			out[op.Value] = putRecord{invoke: op}
		}
	}
	for _, c := range pairs {
		if c.Done.F == FPut && c.Done.Type == OK {
			done := c.Done
			out[c.Done.Value] = putRecord{invoke: c.Invoke, acked: &done}
		}
	}
	return out
}

// shardOperations lists the operations modelled for one shard whose
// reference log is log (see the comment at the top of this file).
func shardOperations(h History, pairs []Completed, puts map[string]putRecord, shard string, log []Rec) []modelOp {
	var start int64
	if len(h) > 0 {
		start = h[0].Time.UnixNano()
	}
	var ops []modelOp
	seen := map[string]bool{}
	at := map[string]int{} // sequence number -> position in log
	for i, r := range log {
		at[r.Seq] = i
		p, put := puts[r.Value]
		op := porcupine.Operation{Input: putInput{value: r.Value}, Call: start, Return: never, Metadata: i}
		desc := fmt.Sprintf("%s, which nobody put", r.Value)
		switch {
		case seen[r.Value]:
			// CheckDuplicates reports it. A put nobody made of the same
			// value: either copy can be the acknowledged one.
			desc = fmt.Sprintf("another copy of %s", r.Value)
		case put && p.acked != nil && p.acked.Shard == shard:
			op.Input = putInput{value: r.Value, seq: p.acked.Seq}
			op.Call, op.Return = p.invoke.Time.UnixNano(), p.acked.Time.UnixNano()
			desc = fmt.Sprintf("put %s (invoked at %s, op %d; acknowledged at %s as %s/%s)",
				r.Value, clock(p.invoke.Time), p.invoke.Index, clock(p.acked.Time), shard, p.acked.Seq)
		case put:
			op.Call = p.invoke.Time.UnixNano()
			desc = fmt.Sprintf("put %s (invoked at %s, op %d; not acknowledged)", r.Value, clock(p.invoke.Time), p.invoke.Index)
		}
		seen[r.Value] = true
		ops = append(ops, modelOp{op, desc})
	}

	// appendedBy[i]: by then record i was certainly in the log, because a
	// put at position i or after it had been acknowledged.
	appendedBy := make([]int64, len(log)+1)
	appendedBy[len(log)] = never
	for i := len(log) - 1; i >= 0; i-- {
		appendedBy[i] = min(appendedBy[i+1], ops[i].Return)
	}
	for _, c := range pairs {
		if (c.Done.F != FRead && c.Done.F != FSub) || c.Done.Type != OK || c.Done.Shard != shard {
			continue
		}
		newest := -1
		for _, r := range c.Done.Records {
			if i, ok := at[r.Seq]; ok && log[i].Value == r.Value {
				newest = max(newest, i)
			}
		}
		if newest < 0 || appendedBy[newest] <= c.Done.Time.UnixNano() {
			continue
		}
		ops = append(ops, modelOp{porcupine.Operation{
			Input: readInput{newest}, Call: c.Invoke.Time.UnixNano(), Return: c.Done.Time.UnixNano(), Metadata: len(ops),
		}, fmt.Sprintf("%s op %d by %s via %s (returned at %s, up to %s/%s)", c.Done.F, c.Done.Index, c.Done.Process, c.Done.Node,
			clock(c.Done.Time), shard, log[newest].Seq)})
	}
	return ops
}

// illegalDetail explains why a shard has no linearization, from the
// longest order porcupine found: after it, the operation that had to come
// next (the earliest to return among the rest) could not, and the record
// due next in the log.
func illegalDetail(shard string, log []Rec, ops []modelOp, info porcupine.LinearizationInfo) string {
	var longest []porcupine.Operation
	for _, partials := range info.PartialLinearizationsOperations() {
		for _, p := range partials {
			if len(p) > len(longest) {
				longest = p
			}
		}
	}
	placed := map[int]bool{}
	appended := 0
	for _, op := range longest {
		placed[op.Metadata.(int)] = true
		if _, ok := op.Input.(putInput); ok {
			appended++
		}
	}
	var stuck *modelOp
	for i := range ops {
		if !placed[i] && (stuck == nil || ops[i].Return < stuck.Return) {
			stuck = &ops[i]
		}
	}
	detail := fmt.Sprintf("%s: no order of its operations fits an append-only log; the longest appends %d of %d records", shard, appended, len(log))
	if stuck != nil {
		detail += ", then " + stuck.desc + " cannot take effect"
	}
	if appended < len(log) {
		// The puts come first in ops, in log order.
		detail += fmt.Sprintf("; next in the log is %s/%s = %s", shard, log[appended].Seq, ops[appended].desc)
	}
	return detail
}

func clock(t time.Time) string { return t.Format("15:04:05.000") }
