package main

import (
	"math/big"
	"math/rand/v2"
)

// defaultZipfS is the Zipf exponent of --keys zipf: with s = 1.1 over 1,000
// keys the hottest key gets about 18% of the records and the top ten about
// 48%, a hot-key load rather than a degenerate one-key stream.
const defaultZipfS = 1.1

// keyPicker chooses each record's partition key. It is not safe for
// concurrent use: every worker has its own, seeded independently, so
// workers never contend on a shared generator.
type keyPicker struct {
	// keys are the partition keys to pick from; empty means a fresh random
	// key per record.
	keys []string
	// zipf, when set, picks an index into keys with key i drawn in
	// proportion to (1+i)^-s: key 0 is the hottest.
	zipf *rand.Zipf
	rng  *rand.Rand
}

// newKeyPicker picks uniformly from keys, or by a Zipf law of exponent s
// when zipf is set; with no keys every record gets a fresh random key.
func newKeyPicker(keys []string, zipf bool, s float64) *keyPicker {
	p := &keyPicker{keys: keys, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	if zipf && len(keys) > 0 {
		p.zipf = rand.NewZipf(p.rng, s, 1, uint64(len(keys)-1))
	}
	return p
}

// index is the position in keys of the next record's key.
func (p *keyPicker) index() int {
	if p.zipf != nil {
		return int(p.zipf.Uint64())
	}
	return p.rng.IntN(len(p.keys))
}

// hashKey is a uniformly random explicit hash key: a decimal in
// [0, 2^128-1], so the shard that owns it is picked in proportion to its
// share of the key space.
func (p *keyPicker) hashKey() string {
	var k big.Int
	k.SetUint64(p.rng.Uint64())
	k.Lsh(&k, 64)
	return k.Or(&k, new(big.Int).SetUint64(p.rng.Uint64())).String()
}

// next is the next record's partition key.
func (p *keyPicker) next() string {
	if len(p.keys) == 0 {
		return randomKey()
	}
	return p.keys[p.index()]
}
