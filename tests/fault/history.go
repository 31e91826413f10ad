package fault

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// OpType is the kind of a history entry: an operation starts with an
// invoke and ends with ok, fail or info, as in Jepsen.
type OpType string

// Entry types.
const (
	// Invoke: a process started an operation.
	Invoke OpType = "invoke"
	// OK: the operation succeeded; a put was acknowledged.
	OK OpType = "ok"
	// Fail: the operation certainly did not take effect (a put that the
	// broker or the client proved was not applied).
	Fail OpType = "fail"
	// Info: the outcome is unknown; a put may or may not have been applied.
	Info OpType = "info"
)

// Operation names (Op.F).
const (
	FPut     = "put"     // PutRecord of one unique value
	FRead    = "read"    // one GetRecords call of a reader's chain
	FSub     = "sub"     // one event of a SubscribeToShard subscription
	FNemesis = "nemesis" // a fault starting (invoke) and healed (ok / info)
	FShard   = "shard"   // a shard and its parents, as ListShards named them (ok only)
)

// Rec is one record as a read returned it.
type Rec struct {
	Seq   string `json:"seq"`
	Value string `json:"value"`
	// Arrival is the record's approximate arrival timestamp, ms since
	// the epoch (0 in histories from before it was recorded).
	Arrival int64 `json:"arrival,omitempty"`
}

// Op is one line of the history.
type Op struct {
	Index   int       `json:"index"`
	Type    OpType    `json:"type"`
	F       string    `json:"f"`
	Process string    `json:"process"`
	Node    string    `json:"node,omitempty"`
	Time    time.Time `json:"time"`
	// Value is the put's value (process id and counter, unique in a run),
	// or the nemesis' description.
	Value string `json:"value,omitempty"`
	Key   string `json:"key,omitempty"`
	// Shard and Seq: where an acknowledged put was stored; Shard also
	// names the shard a read or subscription follows.
	Shard   string `json:"shard,omitempty"`
	Seq     string `json:"seq,omitempty"`
	Records []Rec  `json:"records,omitempty"`
	// Closed: the read or subscription event reached the end of its
	// closed shard (the answer named the child shards, no next position).
	Closed bool `json:"closed,omitempty"`
	// Parents of a shard op: the shard's parent and adjacent parent.
	Parents []string `json:"parents,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// History is a run's operations in the order they were recorded.
type History []Op

// Recorder appends operations to a history in memory and to a JSON-lines
// file, safely from many goroutines.
type Recorder struct {
	mu   sync.Mutex
	ops  History
	file *os.File
	w    *bufio.Writer
	err  error
}

// NewRecorder writes the history to path (none when path is "").
func NewRecorder(path string) (*Recorder, error) {
	r := &Recorder{}
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		r.file, r.w = f, bufio.NewWriterSize(f, 1<<20)
	}
	return r, nil
}

// Record stamps op with its index (and the time, when unset) and appends it.
func (r *Recorder) Record(op Op) Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	op.Index = len(r.ops)
	if op.Time.IsZero() {
		op.Time = time.Now()
	}
	r.ops = append(r.ops, op)
	if r.w != nil && r.err == nil {
		b, err := json.Marshal(op)
		if err == nil {
			b = append(b, '\n')
			_, err = r.w.Write(b)
		}
		r.err = err
	}
	return op
}

// History returns a copy of what was recorded so far.
func (r *Recorder) History() History {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(History(nil), r.ops...)
}

// Close flushes and closes the file, returning the first write error.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.file == nil {
		return r.err
	}
	err := r.w.Flush()
	if cerr := r.file.Close(); err == nil {
		err = cerr
	}
	r.file = nil
	if r.err != nil {
		return r.err
	}
	return err
}

// ReadHistory loads a JSON-lines history written by a Recorder, to check
// a run again offline.
func ReadHistory(path string) (History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var h History
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		var op Op
		if err := json.Unmarshal(sc.Bytes(), &op); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		h = append(h, op)
	}
	return h, sc.Err()
}

// Lineage maps every shard the history names in a shard op to its
// parents (none for the stream's first shards).
func (h History) Lineage() map[string][]string {
	out := map[string][]string{}
	for _, op := range h {
		if op.F == FShard {
			out[op.Shard] = op.Parents
		}
	}
	return out
}

// ancestors lists every shard a shard descends from, by the lineage.
func ancestors(lineage map[string][]string, shard string) map[string]bool {
	out := map[string]bool{}
	todo := slices.Clone(lineage[shard])
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if !out[p] {
			out[p] = true
			todo = append(todo, lineage[p]...)
		}
	}
	return out
}

// Completed is an operation with its invocation and its completion.
type Completed struct {
	Invoke, Done Op
}

// Latency is the time from invocation to completion.
func (c Completed) Latency() time.Duration { return c.Done.Time.Sub(c.Invoke.Time) }

// Pairs matches every completion to its process's open invocation; each
// process runs one operation at a time. Invocations never completed (the
// run ended first) are left out.
func (h History) Pairs() []Completed {
	open := map[string]Op{}
	var out []Completed
	for _, op := range h {
		if op.Type == Invoke {
			open[op.Process] = op
			continue
		}
		inv, ok := open[op.Process]
		if !ok {
			continue
		}
		delete(open, op.Process)
		out = append(out, Completed{Invoke: inv, Done: op})
	}
	return out
}
