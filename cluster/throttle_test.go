package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/riffle-streams/riffle/shardlog"
)

func entriesOf(sizes ...int) []shardlog.Entry {
	out := make([]shardlog.Entry, len(sizes))
	for i, n := range sizes {
		out[i] = shardlog.Entry{PartitionKey: "k", Data: []byte(strings.Repeat("x", n-1))} // n bytes with the key
	}
	return out
}

// TestAdmitWritePrefix checks write admission at a shard leader: the longest
// prefix of a batch that fits both the records and the bytes budget is
// admitted (never an entry after a refused one, so a partition key's
// records stay in order), a lone oversized record passes a full bucket, and
// the wait returned is until the whole refused rest would fit.
func TestAdmitWritePrefix(t *testing.T) {
	type step struct {
		advance  time.Duration
		sizes    []int
		admitted int
		wait     time.Duration
	}
	const ms = time.Millisecond
	cases := []struct {
		name   string
		limits Limits
		steps  []step
	}{
		{"records bind", Limits{WriteRecords: 10, WriteBytes: 1 << 20}, []step{
			{sizes: []int{1, 1, 1, 1, 1, 1}, admitted: 6},
			{sizes: []int{1, 1, 1, 1, 1, 1}, admitted: 4, wait: 200 * ms},
			{advance: 100 * ms, sizes: []int{1, 1}, admitted: 1, wait: 100 * ms},
		}},
		{"bytes bind, prefix only", Limits{WriteRecords: 1000, WriteBytes: 1000}, []step{
			// 600 fits, 500 does not, the 100 after it is not taken.
			{sizes: []int{600, 500, 100}, admitted: 1, wait: 200 * ms},
			{sizes: []int{400}, admitted: 1},
			{sizes: []int{1}, admitted: 0, wait: ms},
		}},
		{"oversized record passes a full bucket alone", Limits{WriteRecords: 1000, WriteBytes: 1000}, []step{
			// 2000 in debt: the next 10 bytes wait for 2010 tokens.
			{sizes: []int{3000, 10}, admitted: 1, wait: 2010 * ms},
			{advance: 2 * time.Second, sizes: []int{10}, admitted: 0, wait: 10 * ms},
			{advance: 10 * ms, sizes: []int{10}, admitted: 1},
		}},
		{"unlimited records, limited bytes", Limits{WriteBytes: 100}, []step{
			{sizes: []int{50, 50, 1}, admitted: 2, wait: 10 * ms},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1e9, 0)}
			th := newShardThrottle(c.limits, clock.now)
			for i, s := range c.steps {
				clock.advance(s.advance)
				n, wait := th.admitWrite(entriesOf(s.sizes...))
				if n != s.admitted || (n < len(s.sizes) && wait != s.wait) {
					t.Fatalf("step %d: admitted %d, wait %v; want %d, %v", i, n, wait, s.admitted, s.wait)
				}
			}
		})
	}
}

// TestAdmitRead checks GetRecords admission: a call needs a token of the
// calls budget and a bytes budget out of debt; refused, it gets the longer
// of the two waits.
func TestAdmitRead(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	th := newShardThrottle(Limits{ReadCalls: 5, ReadBytes: 1000}, clock.now)
	for i := range 5 {
		if ok, _ := th.admitRead(); !ok {
			t.Fatalf("call %d of the first second's 5 refused", i+1)
		}
	}
	if ok, wait := th.admitRead(); ok || wait != 200*time.Millisecond {
		t.Fatalf("sixth call: %v, wait %v; want refused for 200ms", ok, wait)
	}
	clock.advance(200 * time.Millisecond)
	th.readBytes.Charge(3000) // a read of 3000 from a full budget of 1000
	if ok, wait := th.admitRead(); ok || wait != 2*time.Second {
		t.Fatalf("call in debt: %v, wait %v; want refused for 2s", ok, wait)
	}
	clock.advance(2 * time.Second)
	if ok, _ := th.admitRead(); !ok {
		t.Fatal("call out of debt refused")
	}
}

// ThrottledError is ErrThrottled to errors.Is and says what was refused.
func TestThrottledErrorIs(t *testing.T) {
	err := error(&ThrottledError{RetryAfter: time.Second, Reason: "write rate exceeded"})
	if !errors.Is(err, ErrThrottled) || !strings.Contains(err.Error(), "write rate exceeded") {
		t.Fatalf("%v", err)
	}
}
