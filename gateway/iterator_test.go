package gateway

import (
	"encoding/base64"
	"testing"
	"time"
)

// TestIteratorTamperAndExpiry checks that iterators cannot be forged or
// altered and expire after five minutes (issue 2).
func TestIteratorTamperAndExpiry(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.UnixMilli(1_700_000_000_000)
	it := iterator{streamID: 7, shardIndex: 3, offset: 42, issuedAt: now.UnixMilli()}
	tok := encodeIterator(key, it)

	got, err := decodeIterator(key, tok, now.Add(IteratorLifetime))
	if err != nil || got != it {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if _, err := decodeIterator(key, tok, now.Add(IteratorLifetime+time.Second)); err == nil || err.Exception != ExpiredIterator {
		t.Fatalf("expired iterator accepted: %v", err)
	}
	if _, err := decodeIterator([]byte("another cluster's key............"), tok, now); err == nil || err.Exception != InvalidArgument {
		t.Fatalf("iterator from another key accepted: %v", err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	for i := range raw {
		altered := append([]byte(nil), raw...)
		altered[i] ^= 0x01
		if _, err := decodeIterator(key, base64.RawURLEncoding.EncodeToString(altered), now); err == nil {
			t.Fatalf("iterator with byte %d flipped accepted", i)
		}
	}
	for _, bad := range []string{"", "x", "!!!", tok[:len(tok)-2]} {
		if _, err := decodeIterator(key, bad, now); err == nil {
			t.Errorf("malformed iterator %q accepted", bad)
		}
	}
}
