package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/riffle-streams/riffle/shardlog"
)

// Per-shard limits (DESIGN.md) are enforced where the work is done: writes
// at the shard's leader, whichever node the client called, so that writers
// on every node share one budget; GetRecords at the replica that serves the
// read, shared by every poller on that node. The buckets of a shard live as
// long as its group runs here; a new leader starts with full buckets.

// ErrThrottled: a shard's throughput limits refused the request, or the
// tail of a write. Nothing refused was applied; the caller may send it
// again after ThrottledError.RetryAfter.
var ErrThrottled = errors.New("cluster: shard throughput limit exceeded")

// ThrottledError is ErrThrottled with the details a client needs.
type ThrottledError struct {
	// RetryAfter is how long until the refused part would be admitted.
	RetryAfter time.Duration
	// Admitted is how many leading entries of a write were appended before
	// the limit was reached; the append result describes them. Zero when
	// the whole request was refused.
	Admitted int
	// Reason says which shard and which limit, for people.
	Reason string
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("%v: %s (retry after %v)", ErrThrottled, e.Reason, e.RetryAfter)
}

// Is makes errors.Is(err, ErrThrottled) true.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// minRetryAfter keeps a refused caller from coming back at once.
const minRetryAfter = time.Millisecond

// shardThrottle holds one shard's buckets on this node. mu makes an
// admission against several buckets one step, so that concurrent writers
// never both take the last tokens of one bucket and not of the other.
type shardThrottle struct {
	mu                       sync.Mutex
	writeBytes, writeRecords *Bucket
	readBytes, readCalls     *Bucket
	// readMu is held from a read's admission until its bytes are charged.
	readMu sync.Mutex
}

// newShardThrottle returns full buckets at the limits l; now is the clock
// (time.Now when nil).
func newShardThrottle(l Limits, now func() time.Time) *shardThrottle {
	return &shardThrottle{
		writeBytes: NewBucket(l.WriteBytes, now), writeRecords: NewBucket(l.WriteRecords, now),
		readBytes: NewBucket(l.ReadBytes, now), readCalls: NewBucket(l.ReadCalls, now),
	}
}

// setLimits applies the limits in force now; a change takes effect at once.
func (t *shardThrottle) setLimits(l Limits) {
	t.writeBytes.SetRate(l.WriteBytes)
	t.writeRecords.SetRate(l.WriteRecords)
	t.readBytes.SetRate(l.ReadBytes)
	t.readCalls.SetRate(l.ReadCalls)
}

// admitWrite takes tokens for the longest prefix of entries that fits both
// the bytes and the records budget (so that the records of one partition
// key keep their order: a refused entry is never followed by an admitted
// one) and returns its length, with the wait until the rest would fit.
// The first entry also passes a full bucket that it exceeds alone.
func (t *shardThrottle) admitWrite(entries []shardlog.Entry) (int, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	bytesAvail, bytesFull, bytesUnlimited := t.writeBytes.Available()
	recordsAvail, recordsFull, recordsUnlimited := t.writeRecords.Available()
	var admitted, taken int64
	for _, e := range entries {
		size := int64(len(e.PartitionKey) + len(e.Data))
		first := admitted == 0
		if !bytesUnlimited && taken+size > bytesAvail && !(first && bytesFull) {
			break
		}
		if !recordsUnlimited && admitted+1 > recordsAvail && !(first && recordsFull) {
			break
		}
		taken += size
		admitted++
	}
	t.writeBytes.Charge(taken)
	t.writeRecords.Charge(admitted)
	if int(admitted) == len(entries) {
		return len(entries), 0
	}
	var restBytes int64
	for _, e := range entries[admitted:] {
		restBytes += int64(len(e.PartitionKey) + len(e.Data))
	}
	wait := max(t.writeBytes.Wait(restBytes), t.writeRecords.Wait(int64(len(entries))-admitted), minRetryAfter)
	return int(admitted), wait
}

// admitRead takes a GetRecords call when the calls budget has one and the
// bytes budget is out of debt; the bytes are charged once the read is done.
func (t *shardThrottle) admitRead() (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ok, wait := t.readBytes.Admit(0); !ok {
		return false, max(wait, t.readCalls.Wait(1), minRetryAfter)
	}
	ok, wait := t.readCalls.Admit(1)
	return ok, max(wait, minRetryAfter)
}

// throttles are this node's shard throttles by group id. The zero value is
// ready to use.
type throttles struct {
	mu     sync.Mutex
	groups map[string]*shardThrottle
}

// get returns a group's throttle with the limits l in force.
func (t *throttles) get(gid string, l Limits) *shardThrottle {
	t.mu.Lock()
	st := t.groups[gid]
	if st == nil {
		if t.groups == nil {
			t.groups = map[string]*shardThrottle{}
		}
		st = newShardThrottle(l, nil)
		t.groups[gid] = st
	}
	t.mu.Unlock()
	st.setLimits(l)
	return st
}

// drop forgets a group that stopped here.
func (t *throttles) drop(gid string) {
	t.mu.Lock()
	delete(t.groups, gid)
	t.mu.Unlock()
}

// appendThrottled appends on the local leader r the prefix of entries the
// shard's write limits admit. When they refuse some, the error is a
// *ThrottledError saying how many were appended, with the result of those.
func (h *Host) appendThrottled(ctx context.Context, r *shardlog.Shard, s *Stream, sh *Shard, entries []shardlog.Entry) (shardlog.AppendResult, error) {
	limits := h.Limits(s)
	if limits.WriteBytes == 0 && limits.WriteRecords == 0 {
		return r.Append(ctx, entries)
	}
	n, wait := h.throttles.get(s.GroupID(sh), limits).admitWrite(entries)
	if n == len(entries) {
		return r.Append(ctx, entries)
	}
	throttled := &ThrottledError{RetryAfter: wait, Admitted: n, Reason: fmt.Sprintf(
		"write rate exceeded for %s of stream %s (limits: %s)", sh.ID(), s.Name, describeWriteLimits(limits))}
	if n == 0 {
		return shardlog.AppendResult{}, throttled
	}
	res, err := r.Append(ctx, entries[:n])
	if err != nil {
		// The admitted prefix failed: its error stands for the whole
		// request. Its tokens stay spent, which only errs on the safe side.
		return res, err
	}
	return res, throttled
}

// ReadThrottled runs read, a GetRecords read of the shard that returns the
// bytes it read, if the shard's read limits on this node admit one more
// call: the calls budget has one and the bytes budget is out of debt. The
// bytes read are then charged, debt allowed (a read's size is known only
// once it is done). Reads of a shard run one at a time here, so that each
// admission sees what the previous read cost; without that, pollers that
// come back together would all pass an empty budget at once. When the
// limits refuse the call, read is not run and the error is a
// *ThrottledError; otherwise it is read's.
func (h *Host) ReadThrottled(s *Stream, sh *Shard, read func() (int, error)) error {
	limits := h.Limits(s)
	if limits.ReadBytes == 0 && limits.ReadCalls == 0 {
		_, err := read()
		return err
	}
	t := h.throttles.get(s.GroupID(sh), limits)
	t.readMu.Lock()
	defer t.readMu.Unlock()
	if ok, wait := t.admitRead(); !ok {
		return &ThrottledError{RetryAfter: wait, Reason: fmt.Sprintf(
			"GetRecords rate exceeded for %s of stream %s (limits: %d calls/s, %d bytes/s, shared by every reader)",
			sh.ID(), s.Name, limits.ReadCalls, limits.ReadBytes)}
	}
	n, err := read()
	t.readBytes.Charge(int64(n))
	return err
}

func describeWriteLimits(l Limits) string {
	unit := func(v int64, what string) string {
		if v == 0 {
			return "unlimited " + what
		}
		return fmt.Sprintf("%d %s/s", v, what)
	}
	return unit(l.WriteRecords, "records") + ", " + unit(l.WriteBytes, "bytes")
}
