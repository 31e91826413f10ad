package gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// IteratorLifetime is how long a shard iterator stays valid (Kinesis: 5 min).
const IteratorLifetime = 5 * time.Minute

// iterator is a position in one shard. Clients hold it as an opaque token
// signed with the cluster's iterator key, so any node can check that it
// issued it and that nothing was altered.
type iterator struct {
	streamID   uint64
	shardIndex uint64
	offset     uint64
	issuedAt   int64 // ms
}

const (
	iteratorVersion = 1
	iteratorBody    = 1 + 8*4
	iteratorMAC     = 16
)

// encodeIterator signs it with key.
func encodeIterator(key []byte, it iterator) string {
	buf := make([]byte, iteratorBody, iteratorBody+iteratorMAC)
	buf[0] = iteratorVersion
	binary.BigEndian.PutUint64(buf[1:], it.streamID)
	binary.BigEndian.PutUint64(buf[9:], it.shardIndex)
	binary.BigEndian.PutUint64(buf[17:], it.offset)
	binary.BigEndian.PutUint64(buf[25:], uint64(it.issuedAt))
	buf = append(buf, iteratorSignature(key, buf)...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

func iteratorSignature(key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return m.Sum(nil)[:iteratorMAC]
}

// decodeIterator checks the signature and the age of a token.
func decodeIterator(key []byte, token string, now time.Time) (iterator, *Error) {
	if token == "" {
		return iterator{}, validation("shard_iterator is required")
	}
	buf, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(buf) != iteratorBody+iteratorMAC || buf[0] != iteratorVersion {
		return iterator{}, invalidArgument("shard iterator is malformed")
	}
	if !hmac.Equal(buf[iteratorBody:], iteratorSignature(key, buf[:iteratorBody])) {
		return iterator{}, invalidArgument("shard iterator was not issued by this cluster or was altered")
	}
	it := iterator{
		streamID:   binary.BigEndian.Uint64(buf[1:]),
		shardIndex: binary.BigEndian.Uint64(buf[9:]),
		offset:     binary.BigEndian.Uint64(buf[17:]),
		issuedAt:   int64(binary.BigEndian.Uint64(buf[25:])),
	}
	if age := now.Sub(time.UnixMilli(it.issuedAt)); age > IteratorLifetime {
		return iterator{}, newError(ExpiredIterator, "shard iterator expired %s ago; get a new one", (age - IteratorLifetime).Round(time.Second))
	}
	return it, nil
}
