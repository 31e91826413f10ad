package cluster

import (
	"crypto/md5"
	"errors"
	"fmt"
	"math/big"
)

// MaxHashKey is 2^128-1, the top of the hash-key space.
var MaxHashKey = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))

// ErrBadHashKey is returned for an explicit hash key outside [0, 2^128-1].
var ErrBadHashKey = errors.New("cluster: hash key must be a decimal integer in [0, 2^128-1]")

// HashRange is an inclusive range of the hash-key space.
type HashRange struct {
	Start *big.Int
	End   *big.Int
}

// Contains reports whether key lies in the range.
func (r HashRange) Contains(key *big.Int) bool {
	return r.Start.Cmp(key) <= 0 && key.Cmp(r.End) <= 0
}

// PartitionHash is the MD5 of the UTF-8 partition key read as an unsigned
// big-endian 128-bit integer: Kinesis's routing hash.
func PartitionHash(partitionKey string) *big.Int {
	sum := md5.Sum([]byte(partitionKey))
	return new(big.Int).SetBytes(sum[:])
}

// ParseHashKey parses an explicit hash key.
func ParseHashKey(s string) (*big.Int, error) {
	if s == "" || len(s) > 39 {
		return nil, ErrBadHashKey
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return nil, ErrBadHashKey
		}
	}
	n, ok := new(big.Int).SetString(s, 10)
	if !ok || n.Cmp(MaxHashKey) > 0 {
		return nil, ErrBadHashKey
	}
	return n, nil
}

// EvenRanges splits the hash-key space into n ranges as Kinesis does: range i
// starts at floor(2^128/n)*i and the last one ends at 2^128-1.
func EvenRanges(n int) ([]HashRange, error) {
	if n < 1 {
		return nil, fmt.Errorf("cluster: cannot split the hash space into %d ranges", n)
	}
	space := new(big.Int).Lsh(big.NewInt(1), 128)
	width := new(big.Int).Div(space, big.NewInt(int64(n)))
	ranges := make([]HashRange, n)
	for i := range ranges {
		start := new(big.Int).Mul(width, big.NewInt(int64(i)))
		var end *big.Int
		if i == n-1 {
			end = new(big.Int).Set(MaxHashKey)
		} else {
			end = new(big.Int).Sub(new(big.Int).Mul(width, big.NewInt(int64(i+1))), big.NewInt(1))
		}
		ranges[i] = HashRange{Start: start, End: end}
	}
	return ranges, nil
}
