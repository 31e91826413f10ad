package cluster

import (
	"fmt"
	"math/big"
	"testing"
)

// TestPartitionHashKnownValues checks the routing hash against MD5 values
// computed independently (md5sum): Kinesis routes by these integers.
func TestPartitionHashKnownValues(t *testing.T) {
	cases := []struct{ key, hexMD5 string }{
		{"a", "0cc175b9c0f1b6a831c399e269772661"},
		{"hello", "5d41402abc4b2a76b9719d911017c592"},
		{"partition-1", "94f940e6c2a31703d6be067b87d67968"},
		{"héllo wörld", "ed0c22cc110ede12327851863c078138"},
	}
	for _, c := range cases {
		want, _ := new(big.Int).SetString(c.hexMD5, 16)
		if got := PartitionHash(c.key); got.Cmp(want) != 0 {
			t.Errorf("PartitionHash(%q) = %x, want %s", c.key, got, c.hexMD5)
		}
	}
}

// TestEvenRangesMatchKinesis checks DESIGN.md's even split: shard i starts at
// floor(2^128/N)*i, ranges are contiguous, and the last ends at 2^128-1.
func TestEvenRangesMatchKinesis(t *testing.T) {
	// Kinesis's own split of a 4-shard stream.
	four := []struct{ start, end string }{
		{"0", "85070591730234615865843651857942052863"},
		{"85070591730234615865843651857942052864", "170141183460469231731687303715884105727"},
		{"170141183460469231731687303715884105728", "255211775190703847597530955573826158591"},
		{"255211775190703847597530955573826158592", "340282366920938463463374607431768211455"},
	}
	ranges, err := EvenRanges(4)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range ranges {
		if r.Start.String() != four[i].start || r.End.String() != four[i].end {
			t.Errorf("shard %d: [%s, %s], want [%s, %s]", i, r.Start, r.End, four[i].start, four[i].end)
		}
	}
	space := new(big.Int).Lsh(big.NewInt(1), 128)
	for _, n := range []int{1, 2, 3, 5, 7, 10, 64, 1000} {
		ranges, err := EvenRanges(n)
		if err != nil {
			t.Fatal(err)
		}
		width := new(big.Int).Div(space, big.NewInt(int64(n)))
		if ranges[0].Start.Sign() != 0 || ranges[n-1].End.Cmp(MaxHashKey) != 0 {
			t.Errorf("n=%d: does not cover [0, 2^128-1]", n)
		}
		for i, r := range ranges {
			if want := new(big.Int).Mul(width, big.NewInt(int64(i))); r.Start.Cmp(want) != 0 {
				t.Errorf("n=%d shard %d starts at %s, want %s", n, i, r.Start, want)
			}
			if i > 0 && new(big.Int).Add(ranges[i-1].End, big.NewInt(1)).Cmp(r.Start) != 0 {
				t.Errorf("n=%d: gap or overlap before shard %d", n, i)
			}
		}
	}
	if _, err := EvenRanges(0); err == nil {
		t.Error("EvenRanges(0) accepted")
	}
}

// TestParseHashKey checks explicit hash keys are bounded to the 128-bit space.
func TestParseHashKey(t *testing.T) {
	for _, ok := range []string{"0", "1", "340282366920938463463374607431768211455"} {
		if _, err := ParseHashKey(ok); err != nil {
			t.Errorf("ParseHashKey(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-1", "1e5", "340282366920938463463374607431768211456", "x"} {
		if _, err := ParseHashKey(bad); err == nil {
			t.Errorf("ParseHashKey(%q) accepted", bad)
		}
	}
}

// TestShardForHashIndexed: the routing index of a published state finds
// the same shard as a scan of every shard, for keys at every range's
// edges, with closed parents and pending children in the list (only open
// shards take writes: a key must never route to a closed parent).
func TestShardForHashIndexed(t *testing.T) {
	ranges, err := EvenRanges(7)
	if err != nil {
		t.Fatal(err)
	}
	s := &Stream{Name: "r"}
	for i, r := range ranges {
		s.Shards = append(s.Shards, &Shard{Index: uint64(i), HashStart: r.Start.String(), HashEnd: r.End.String(), hashRange: r})
	}
	// Shard 2 split into 7 and 8 (closed parent); shard 5 splitting into
	// 9 and 10 (children pending, parent still open).
	split := func(parent *Shard, index uint64, pending bool) {
		mid := new(big.Int).Add(parent.hashRange.Start, new(big.Int).Rsh(new(big.Int).Sub(parent.hashRange.End, parent.hashRange.Start), 1))
		lo := HashRange{Start: parent.hashRange.Start, End: mid}
		hi := HashRange{Start: new(big.Int).Add(mid, big.NewInt(1)), End: parent.hashRange.End}
		for i, r := range []HashRange{lo, hi} {
			s.Shards = append(s.Shards, &Shard{Index: index + uint64(i), HashStart: r.Start.String(), HashEnd: r.End.String(), hashRange: r, Pending: pending})
		}
	}
	split(s.Shards[2], 7, false)
	s.Shards[2].EndingSequence = "1"
	split(s.Shards[5], 9, true)

	var keys []*big.Int
	for _, sh := range s.Shards {
		for _, k := range []*big.Int{sh.hashRange.Start, sh.hashRange.End} {
			keys = append(keys, k, new(big.Int).Add(k, big.NewInt(1)), new(big.Int).Sub(k, big.NewInt(1)))
		}
	}
	for i := range 200 {
		keys = append(keys, PartitionHash(fmt.Sprintf("key-%d", i)))
	}
	scanned := make([]*Shard, len(keys))
	for i, k := range keys {
		scanned[i], _ = s.ShardForHash(k)
	}
	(&State{Streams: map[string]*Stream{s.Name: s}}).indexRoutes()
	if s.routes == nil {
		t.Fatal("no routing index after indexRoutes")
	}
	for i, k := range keys {
		got, ok := s.ShardForHash(k)
		if got != scanned[i] {
			t.Fatalf("key %s: indexed lookup %v (%v), scan %v", k, got, ok, scanned[i])
		}
		if ok && !got.Open() {
			t.Fatalf("key %s routed to %s, which takes no writes", k, got.ID())
		}
		if !ok && k.Sign() >= 0 && k.Cmp(MaxHashKey) <= 0 {
			t.Fatalf("key %s inside the key space found no shard", k)
		}
	}
	if c := s.clone(); c.routes != nil {
		t.Fatal("a clone, about to change, kept the routing index of the original")
	}
}
