//go:build e2e

package e2e

import (
	"errors"
	"testing"
)

// TestCheckShardCatchesViolations checks the checker the cluster tests rely
// on: a broker that loses, alters, reorders or invents records must fail
// them (contracts 2 and 3), while a replica that is only behind must be
// polled again rather than failed. Needs no cluster.
func TestCheckShardCatchesViolations(t *testing.T) {
	written := map[string]bool{"a": true, "b": true, "c": true}
	acked := []ackedRecord{{key: "ka", data: "a", seq: "1"}, {key: "kb", data: "b", seq: "5"}}
	a := storedRecord{seq: "1", key: "ka", data: "a"}
	b := storedRecord{seq: "5", key: "kb", data: "b"}
	// c was sent but its ack never arrived: it may be stored, even twice.
	c3 := storedRecord{seq: "3", key: "kc", data: "c"}
	c6 := storedRecord{seq: "6", key: "kc", data: "c"}

	tests := []struct {
		name       string
		got        []storedRecord
		ok         bool
		onlyBehind bool
	}{
		{name: "every ack in place, unacked record stored twice", got: []storedRecord{a, c3, b, c6}, ok: true},
		{name: "unacked record absent", got: []storedRecord{a, b}, ok: true},
		{name: "acked record missing: behind", got: []storedRecord{a}, onlyBehind: true},
		{name: "empty shard: behind", got: nil, onlyBehind: true},
		{name: "other data at an acked sequence number", got: []storedRecord{a, {seq: "5", key: "kb", data: "c"}}},
		{name: "other key at an acked sequence number", got: []storedRecord{a, {seq: "5", key: "kx", data: "b"}}},
		// An earlier attempt whose outcome was unknown may have stored b at
		// 4; the acknowledged copy at 5 may still be applying: behind, and
		// a failure once the poll's deadline passes.
		{name: "acked record only at another sequence number", got: []storedRecord{a, {seq: "4", key: "kb", data: "b"}}, onlyBehind: true},
		{name: "record never written", got: []storedRecord{a, {seq: "2", key: "kz", data: "z"}, b}},
		{name: "sequence numbers out of order", got: []storedRecord{b, a}},
		{name: "sequence number repeated", got: []storedRecord{a, a, b}},
		{name: "sequence number not a decimal", got: []storedRecord{a, {seq: "x", key: "kc", data: "c"}, b}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkShard(tt.got, acked, written)
			if tt.ok {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			var mismatch *shardMismatch
			if !errors.As(err, &mismatch) {
				t.Fatalf("want a *shardMismatch, got %v", err)
			}
			if mismatch.onlyBehind != tt.onlyBehind {
				t.Errorf("onlyBehind = %v, want %v; error: %v", mismatch.onlyBehind, tt.onlyBehind, err)
			}
		})
	}
}

// TestFirstDifference checks the comparison of two nodes' reads of a shard.
func TestFirstDifference(t *testing.T) {
	a := storedRecord{seq: "1", key: "k", data: "a", arrivalMs: 10}
	b := storedRecord{seq: "2", key: "k", data: "b", arrivalMs: 11}
	otherArrival := a
	otherArrival.arrivalMs = 12
	tests := []struct {
		name string
		x, y []storedRecord
		want int
	}{
		{"equal", []storedRecord{a, b}, []storedRecord{a, b}, -1},
		{"both empty", nil, nil, -1},
		{"prefix", []storedRecord{a}, []storedRecord{a, b}, 1},
		{"arrival time differs", []storedRecord{a}, []storedRecord{otherArrival}, 0},
		{"order differs", []storedRecord{a, b}, []storedRecord{b, a}, 0},
	}
	for _, tt := range tests {
		if got := firstDifference(tt.x, tt.y); got != tt.want {
			t.Errorf("%s: firstDifference = %d, want %d", tt.name, got, tt.want)
		}
	}
}
