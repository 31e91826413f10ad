package cluster

import (
	"encoding/json"
	"math/big"
	"slices"
	"testing"
	"time"
)

// expiryFixture is a stream created at created whose shard 0 split into 1
// and 2 at switched, and whose shard 1 split into 3 and 4 an hour later;
// with pending, shard 3's split into 5 and 6 is in progress (the stream
// UPDATING), else the stream is ACTIVE.
func expiryFixture(t *testing.T, created time.Time, pending bool) (*State, time.Time) {
	t.Helper()
	switched := created.Add(time.Hour)
	st := applyOK(t, &State{Streams: map[string]*Stream{}}, Command{CreateStream: &CreateStreamCmd{Name: "s", ShardCount: 1,
		Mode: ModeProvisioned, RetentionHours: 24, CreatedAt: created, Placement: [][]string{{"n1"}}}})
	id := st.Streams["s"].ID
	st = applyOK(t, st, Command{ShardReady: &ShardReadyCmd{StreamID: id, ShardIndex: 0}})
	quarter := new(big.Int).Lsh(big.NewInt(1), 126)
	half := new(big.Int).Lsh(big.NewInt(1), 127)
	eighth := new(big.Int).Lsh(big.NewInt(1), 125)
	var st0 *State
	for i, step := range []struct {
		parent string
		key    *big.Int
		at     time.Time
	}{
		{"shardId-000000000000", half, switched},
		{"shardId-000000000001", quarter, switched.Add(time.Hour)},
		{"shardId-000000000003", eighth, time.Time{}},
	} {
		st0 = st
		st = applyOK(t, st, Command{SplitShard: &SplitShardCmd{Name: "s", Shard: step.parent,
			NewStartingHashKey: step.key.String(), Placement: [][]string{{"n1"}, {"n1"}}}})
		if step.at.IsZero() {
			if !pending {
				st = st0
			}
			break
		}
		idx := uint64(2 * i)
		if i > 0 {
			idx = 1
		}
		st = applyOK(t, st, Command{ShardsSwitched: &ShardsSwitchedCmd{StreamID: id, Ends: []ShardEnd{{Index: idx, EndOffset: 5}}, At: step.at}})
	}
	return st, switched
}

func indexes(s *Stream) []uint64 {
	var out []uint64
	for _, sh := range s.Shards {
		out = append(out, sh.Index)
	}
	return out
}

// A closed shard expires, and only a closed one, once its close lies a
// retention period back; the removal re-checks that at the command's time
// and the retention then in force, keeps the next shard index (never
// reused), and leaves the children naming the removed parent.
func TestExpireClosedShards(t *testing.T) {
	created := time.UnixMilli(1_700_000_000_000).UTC()
	st, switched := expiryFixture(t, created, true)
	s := st.Streams["s"]
	if got := indexes(s); !slices.Equal(got, []uint64{0, 1, 2, 3, 4, 5, 6}) {
		t.Fatalf("fixture shards %v", got)
	}
	day := 24 * time.Hour
	for _, tt := range []struct {
		now  time.Time
		want []uint64
	}{
		{switched.Add(day), nil},
		{switched.Add(day + time.Millisecond), []uint64{0}},
		{switched.Add(day + time.Hour + time.Millisecond), []uint64{0, 1}},
		{switched.Add(100 * day), []uint64{0, 1}}, // open and pending shards never
	} {
		if got := s.ExpiredShards(tt.now); !slices.Equal(got, tt.want) {
			t.Errorf("expired at %v: %v, want %v", tt.now.Sub(switched), got, tt.want)
		}
	}

	// Open (2), pending (5) and unknown (9) shards are never removed, nor
	// one not yet expired at the command's time (1).
	at := switched.Add(day + time.Minute)
	st2 := applyOK(t, st, Command{ExpireShards: &ExpireShardsCmd{StreamID: s.ID, Shards: []uint64{0, 1, 2, 5, 9}, At: at}})
	s2 := st2.Streams["s"]
	if got := indexes(s2); !slices.Equal(got, []uint64{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("after expiry shards %v, want 1..6", got)
	}
	if s2.NextShardIndex != 7 {
		t.Errorf("NextShardIndex %d, want 7 (indexes are never reused)", s2.NextShardIndex)
	}
	if _, ok := s2.ShardByIndex(0); ok {
		t.Error("ShardByIndex finds the removed shard")
	}
	if sh, ok := s2.ShardByIndex(4); !ok || sh.Index != 4 {
		t.Errorf("ShardByIndex(4) = %+v %v", sh, ok)
	}
	if sh, _ := s2.ShardByIndex(1); sh.Parent != "shardId-000000000000" {
		t.Errorf("child's parent %q, want the removed shardId-000000000000", sh.Parent)
	}
	if _, ok := st.Streams["s"].ShardByIndex(0); !ok {
		t.Error("the removal changed the earlier state")
	}
	// Repeated: nothing left to do.
	if again := applyOK(t, st2, Command{ExpireShards: &ExpireShardsCmd{StreamID: s.ID, Shards: []uint64{0}, At: at}}); again != st2 {
		t.Error("a repeated removal changed the state")
	}
	// Survives the metadata's JSON encoding, the order of shards included.
	b, err := json.Marshal(st2)
	if err != nil {
		t.Fatal(err)
	}
	var decoded State
	if err := json.Unmarshal(b, &decoded); err != nil {
		t.Fatal(err)
	}
	if got := indexes(decoded.Streams["s"]); !slices.Equal(got, []uint64{1, 2, 3, 4, 5, 6}) || decoded.Streams["s"].NextShardIndex != 7 {
		t.Errorf("decoded shards %v next %d", got, decoded.Streams["s"].NextShardIndex)
	}

	// A retention increase applied before the removal keeps the shard.
	st, _ = expiryFixture(t, created, false)
	if s := st.Streams["s"]; s.Status != StreamActive || len(s.Shards) != 5 {
		t.Fatalf("fixture without the pending split: %s, %v", s.Status, indexes(s))
	}
	longer := applyOK(t, st, Command{SetRetention: &SetRetentionCmd{Name: "s", Hours: 48, Increase: true}})
	if got := applyOK(t, longer, Command{ExpireShards: &ExpireShardsCmd{StreamID: s.ID, Shards: []uint64{0}, At: at}}); got != longer {
		t.Error("a shard kept by a longer retention was removed")
	}
	// A decrease makes it expire sooner.
	shorter := applyOK(t, longer, Command{SetRetention: &SetRetentionCmd{Name: "s", Hours: 24}})
	if got := shorter.Streams["s"].ExpiredShards(at); !slices.Equal(got, []uint64{0}) {
		t.Errorf("after the decrease expired %v, want [0]", got)
	}
	// A deleting stream is left to the deletion.
	deleting := applyOK(t, st, Command{DeleteStream: &DeleteStreamCmd{Name: "s"}})
	if got := applyOK(t, deleting, Command{ExpireShards: &ExpireShardsCmd{StreamID: s.ID, Shards: []uint64{0}, At: at}}); got != deleting {
		t.Error("expiry changed a deleting stream")
	}
}
