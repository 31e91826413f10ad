package shardlog

import (
	"math/big"
	"math/rand/v2"
	"testing"
)

// TestSequenceNumberProperties checks DESIGN.md's sequence-number rules: a
// round trip through the decimal form, strict increase with the offset, and
// every number of a child shard (higher index) above every parent's.
func TestSequenceNumberProperties(t *testing.T) {
	cases := []struct {
		shard, offset uint64
		want          string
	}{
		{0, 0, "0"},
		{0, 1, "1"},
		{1, 0, "18446744073709551616"},
		{1, 5, "18446744073709551621"},
		{^uint64(0), ^uint64(0), "340282366920938463463374607431768211455"},
	}
	for _, c := range cases {
		got := SequenceNumber(c.shard, c.offset)
		if got != c.want {
			t.Errorf("SequenceNumber(%d,%d) = %s, want %s", c.shard, c.offset, got, c.want)
		}
		s, o, err := ParseSequenceNumber(got)
		if err != nil || s != c.shard || o != c.offset {
			t.Errorf("ParseSequenceNumber(%s) = %d,%d,%v", got, s, o, err)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 1000; i++ {
		shard, off := r.Uint64N(1<<20), r.Uint64N(^uint64(0)-1)
		a, _ := new(big.Int).SetString(SequenceNumber(shard, off), 10)
		b, _ := new(big.Int).SetString(SequenceNumber(shard, off+1), 10)
		child, _ := new(big.Int).SetString(SequenceNumber(shard+1, 0), 10)
		if a.Cmp(b) >= 0 {
			t.Fatalf("offset %d of shard %d not below the next offset", off, shard)
		}
		if b.Cmp(child) >= 0 {
			t.Fatalf("parent %d offset %d not below child's first number", shard, off+1)
		}
	}
}

// TestParseSequenceNumberRejects checks that malformed input is refused.
func TestParseSequenceNumberRejects(t *testing.T) {
	for _, s := range []string{"", "-1", "1.5", "abc", " 1", "0x10", "340282366920938463463374607431768211456", "1234567890123456789012345678901234567890"} {
		if _, _, err := ParseSequenceNumber(s); err == nil {
			t.Errorf("ParseSequenceNumber(%q) accepted", s)
		}
	}
}
