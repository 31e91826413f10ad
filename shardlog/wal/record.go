package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/hashicorp/raft"
)

// A frame on disk, little-endian:
//
//	hcrc uint32 | length uint32 | type uint8 | nameLen uint8 | name | body
//
// length counts the body. hcrc is the CRC32C of everything from length to
// the end of name, then the body's fixed part (the index of a truncation):
// a frame whose header checks can be skipped by its length even when an
// entry in its body is damaged, and a scan can find the next frame after
// damage by the header alone. An append or checkpoint body is a run of
// entries, each
//
//	length uint32 | crc32c(payload) uint32 | payload
//	payload: index uint64 | term uint64 | type uint8 | appendedAt int64 (unix ns)
//	         | extensions length uint32 | extensions | data
//
// so that raft reading one entry checks only that entry.
const (
	recAppend      byte = 1 // entries from an index on; what follows them goes
	recTruncPrefix byte = 2 // drop entries below an index
	recTruncSuffix byte = 3 // drop entries from an index on
	recCheckpoint  byte = 4 // the group's whole live log (none: a reset)
)

const (
	frameFixed   = 4 + 4 + 1 + 1
	entryHeader  = 8
	entryFixed   = 8 + 8 + 1 + 8 + 4
	maxNameLen   = 255
	maxBodyBytes = 1 << 30
)

var (
	le         = binary.LittleEndian
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// fixedBodyLen is how much of a body the header checksum covers.
func fixedBodyLen(typ byte) int {
	if typ == recTruncPrefix || typ == recTruncSuffix {
		return 8
	}
	return 0
}

func validType(typ byte) bool { return typ >= recAppend && typ <= recCheckpoint }

// appendFrameHeader starts a frame of typ for group name; the body follows
// and finishFrame fills in the length and checksum.
func appendFrameHeader(buf []byte, typ byte, name string) []byte {
	buf = le.AppendUint32(buf, 0) // hcrc
	buf = le.AppendUint32(buf, 0) // length
	buf = append(buf, typ, byte(len(name)))
	return append(buf, name...)
}

// finishFrame completes the frame that starts at start in buf.
func finishFrame(buf []byte, start int) {
	f := buf[start:]
	nameLen := int(f[9])
	bodyAt := frameFixed + nameLen
	le.PutUint32(f[4:8], uint32(len(f)-bodyAt))
	fixed := fixedBodyLen(f[8])
	le.PutUint32(f[0:4], crc32.Checksum(f[4:bodyAt+fixed], castagnoli))
}

// appendEntry encodes one raft entry with its own checksum.
func appendEntry(buf []byte, e *raft.Log) []byte {
	n := entryFixed + len(e.Extensions) + len(e.Data)
	start := len(buf)
	buf = le.AppendUint32(buf, uint32(n))
	buf = le.AppendUint32(buf, 0)
	buf = le.AppendUint64(buf, e.Index)
	buf = le.AppendUint64(buf, e.Term)
	buf = append(buf, byte(e.Type))
	var at int64
	if !e.AppendedAt.IsZero() {
		at = e.AppendedAt.UnixNano()
	}
	buf = le.AppendUint64(buf, uint64(at))
	buf = le.AppendUint32(buf, uint32(len(e.Extensions)))
	buf = append(buf, e.Extensions...)
	buf = append(buf, e.Data...)
	le.PutUint32(buf[start+4:], crc32.Checksum(buf[start+entryHeader:], castagnoli))
	return buf
}

// header is a frame's decoded header.
type header struct {
	typ    byte
	name   string
	length int // of the body
	size   int // of the header, name included
}

// parseHeader decodes and checks the header at the start of b, which must
// hold at least the header and the body's fixed part. ok is false for
// anything that is not a whole, valid header.
func parseHeader(b []byte) (h header, ok bool) {
	if len(b) < frameFixed {
		return h, false
	}
	h.typ = b[8]
	if !validType(h.typ) {
		return h, false
	}
	nameLen := int(b[9])
	h.size = frameFixed + nameLen
	fixed := fixedBodyLen(h.typ)
	if len(b) < h.size+fixed {
		return h, false
	}
	h.length = int(le.Uint32(b[4:8]))
	if h.length > maxBodyBytes || h.length < fixed || nameLen == 0 {
		return h, false
	}
	if crc32.Checksum(b[4:h.size+fixed], castagnoli) != le.Uint32(b[0:4]) {
		return h, false
	}
	h.name = string(b[frameFixed:h.size])
	return h, true
}

// entrySpan is where one entry lies in a body.
type entrySpan struct {
	index uint64
	off   int // from the body's start
	n     int // the entry's bytes, its header included
}

// splitEntries walks an append or checkpoint body. It returns the entries
// up to the first damaged one, and an error naming the damage.
func splitEntries(body []byte) ([]entrySpan, error) {
	var spans []entrySpan
	for off := 0; off < len(body); {
		if len(body)-off < entryHeader+entryFixed {
			return spans, fmt.Errorf("entry at %d is cut short", off)
		}
		n := int(le.Uint32(body[off:]))
		if n < entryFixed || off+entryHeader+n > len(body) {
			return spans, fmt.Errorf("entry at %d has a bad length", off)
		}
		p := body[off+entryHeader : off+entryHeader+n]
		if crc32.Checksum(p, castagnoli) != le.Uint32(body[off+4:]) {
			return spans, fmt.Errorf("entry at %d fails its checksum", off)
		}
		idx := le.Uint64(p[0:8])
		if len(spans) > 0 && idx != spans[len(spans)-1].index+1 {
			return spans, fmt.Errorf("entry %d follows %d", idx, spans[len(spans)-1].index)
		}
		spans = append(spans, entrySpan{index: idx, off: off, n: entryHeader + n})
		off += entryHeader + n
	}
	return spans, nil
}

// decodeEntry checks and decodes one encoded entry (its header included).
// The decoded entry's byte slices point into b.
func decodeEntry(b []byte, out *raft.Log) error {
	if len(b) < entryHeader+entryFixed || int(le.Uint32(b[0:4])) != len(b)-entryHeader {
		return fmt.Errorf("%w: entry has a bad length", ErrCorrupt)
	}
	p := b[entryHeader:]
	if crc32.Checksum(p, castagnoli) != le.Uint32(b[4:8]) {
		return fmt.Errorf("%w: entry fails its checksum", ErrCorrupt)
	}
	ext := int(le.Uint32(p[25:29]))
	if entryFixed+ext > len(p) {
		return fmt.Errorf("%w: extensions overrun the entry", ErrCorrupt)
	}
	*out = raft.Log{
		Index: le.Uint64(p[0:8]),
		Term:  le.Uint64(p[8:16]),
		Type:  raft.LogType(p[16]),
	}
	if at := int64(le.Uint64(p[17:25])); at != 0 {
		out.AppendedAt = time.Unix(0, at)
	}
	rest := p[entryFixed:]
	if ext > 0 {
		out.Extensions = rest[:ext]
	}
	out.Data = rest[ext:]
	return nil
}
