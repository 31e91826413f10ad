package shardlog

import (
	"errors"
	"math/big"
)

// Sequence numbers are the decimal of shardIndex<<64 | offset. The offset is
// counted by the shard's state machine, so a number is the same on every
// replica, survives failover and restart, increases strictly in commit order
// within a shard, and every child shard's numbers (a higher shard index) lie
// above every parent's.

// ErrBadSequenceNumber is returned for a string that is not a sequence number.
var ErrBadSequenceNumber = errors.New("shardlog: malformed sequence number")

var maxSequenceNumber = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))

// SequenceNumber formats the sequence number of the record at offset in the
// shard with the given index.
func SequenceNumber(shardIndex, offset uint64) string {
	n := new(big.Int).SetUint64(shardIndex)
	n.Lsh(n, 64)
	n.Or(n, new(big.Int).SetUint64(offset))
	return n.String()
}

// ParseSequenceNumber splits a sequence number into shard index and offset.
func ParseSequenceNumber(s string) (shardIndex, offset uint64, err error) {
	if s == "" || len(s) > 39 {
		return 0, 0, ErrBadSequenceNumber
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, 0, ErrBadSequenceNumber
		}
	}
	n, ok := new(big.Int).SetString(s, 10)
	if !ok || n.Cmp(maxSequenceNumber) > 0 {
		return 0, 0, ErrBadSequenceNumber
	}
	low := new(big.Int).And(n, new(big.Int).SetUint64(^uint64(0)))
	return new(big.Int).Rsh(n, 64).Uint64(), low.Uint64(), nil
}
