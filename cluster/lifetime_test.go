package cluster

import (
	"encoding/json"
	"math/big"
	"testing"
	"time"
)

// A shard's opening and closing times come from the commands (creation,
// switch), survive a repeated switch and the metadata's JSON encoding, and
// a closed shard expires once its close lies a retention period back.
// Shards from before the times were kept fall back to the stream's
// creation and never expire.
func TestShardLifetime(t *testing.T) {
	created := time.UnixMilli(1_700_000_000_000).UTC()
	switched := created.Add(time.Hour)
	st := applyOK(t, &State{Streams: map[string]*Stream{}}, Command{CreateStream: &CreateStreamCmd{Name: "s", ShardCount: 1,
		Mode: ModeProvisioned, RetentionHours: 24, CreatedAt: created, Placement: [][]string{{"n1"}}}})
	s := st.Streams["s"]
	st = applyOK(t, st, Command{ShardReady: &ShardReadyCmd{StreamID: s.ID, ShardIndex: 0}})
	mid := new(big.Int).Rsh(new(big.Int).Lsh(big.NewInt(1), 128), 1)
	st = applyOK(t, st, Command{SplitShard: &SplitShardCmd{Name: "s", Shard: "shardId-000000000000",
		NewStartingHashKey: mid.String(), Placement: [][]string{{"n1"}, {"n1"}}}})
	if got := st.Streams["s"].Shards[1].OpenedAt; !got.IsZero() {
		t.Errorf("pending child opened at %v, want zero", got)
	}
	st = applyOK(t, st, Command{ShardsSwitched: &ShardsSwitchedCmd{StreamID: s.ID, Ends: []ShardEnd{{Index: 0, EndOffset: 3}}, At: switched}})
	// A new metadata leader repeating the switch later changes nothing.
	st = applyOK(t, st, Command{ShardsSwitched: &ShardsSwitchedCmd{StreamID: s.ID, Ends: []ShardEnd{{Index: 0, EndOffset: 3}}, At: switched.Add(time.Minute)}})
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var decoded State
	if err := json.Unmarshal(b, &decoded); err != nil {
		t.Fatal(err)
	}
	s = decoded.Streams["s"]
	parent, child := s.Shards[0], s.Shards[2]
	if got := s.ShardOpenedAt(parent); !got.Equal(created) {
		t.Errorf("parent opened at %v, want %v", got, created)
	}
	if got, ok := s.ShardClosedAt(parent); !ok || !got.Equal(switched) {
		t.Errorf("parent closed at %v %v, want %v", got, ok, switched)
	}
	if got := s.ShardOpenedAt(child); !got.Equal(switched) {
		t.Errorf("child opened at %v, want %v", got, switched)
	}
	if _, ok := s.ShardClosedAt(child); ok {
		t.Error("open child has a close time")
	}
	day := 24 * time.Hour
	for _, tt := range []struct {
		sh   *Shard
		now  time.Time
		want bool
	}{
		{parent, switched.Add(day), false},
		{parent, switched.Add(day + time.Millisecond), true},
		{child, switched.Add(100 * day), false},
	} {
		if got := s.ShardExpired(tt.sh, tt.now); got != tt.want {
			t.Errorf("%s expired at close+%v: %v, want %v", tt.sh.ID(), tt.now.Sub(switched), got, tt.want)
		}
	}

	// Metadata written before the times existed.
	old := &Shard{Index: 0, EndingSequence: "5"}
	if got := s.ShardOpenedAt(old); !got.Equal(created) {
		t.Errorf("old shard opened at %v, want the stream's creation", got)
	}
	if got, ok := s.ShardClosedAt(old); !ok || !got.Equal(created) {
		t.Errorf("old closed shard closed at %v %v, want the stream's creation", got, ok)
	}
	if s.ShardExpired(old, switched.Add(100*day)) {
		t.Error("a closed shard without a close time expired")
	}
}
