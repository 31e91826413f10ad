package shardlog

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A raft entry of a shard group carries one command. The encoding is a
// fixed binary layout because it is on the hot path of every write:
//
//	append: type(1) timestampMillis(8) count(4) then per entry
//	        keyLen(2) key dataLen(4) data
const cmdAppend byte = 1

var errBadCommand = errors.New("shardlog: malformed command")

// encodeAppend builds one append command for the entries of many requests.
func encodeAppend(ts int64, batches [][]Entry) []byte {
	size, count := 13, 0
	for _, b := range batches {
		for _, e := range b {
			size += 6 + len(e.PartitionKey) + len(e.Data)
			count++
		}
	}
	buf := make([]byte, 13, size)
	buf[0] = cmdAppend
	binary.BigEndian.PutUint64(buf[1:], uint64(ts))
	binary.BigEndian.PutUint32(buf[9:], uint32(count))
	for _, b := range batches {
		for _, e := range b {
			buf = binary.BigEndian.AppendUint16(buf, uint16(len(e.PartitionKey)))
			buf = append(buf, e.PartitionKey...)
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(e.Data)))
			buf = append(buf, e.Data...)
		}
	}
	return buf
}

// decodeAppend is the inverse of encodeAppend. Entries alias buf.
func decodeAppend(buf []byte) (ts int64, entries []Entry, err error) {
	if len(buf) < 13 || buf[0] != cmdAppend {
		return 0, nil, errBadCommand
	}
	ts = int64(binary.BigEndian.Uint64(buf[1:]))
	count := binary.BigEndian.Uint32(buf[9:])
	p := buf[13:]
	if uint64(count) > uint64(len(p))/6 {
		return 0, nil, fmt.Errorf("%w: %d entries in %d bytes", errBadCommand, count, len(p))
	}
	entries = make([]Entry, count)
	for i := range entries {
		if len(p) < 2 {
			return 0, nil, errBadCommand
		}
		kl := int(binary.BigEndian.Uint16(p))
		p = p[2:]
		if len(p) < kl+4 {
			return 0, nil, errBadCommand
		}
		entries[i].PartitionKey = string(p[:kl])
		p = p[kl:]
		dl := int(binary.BigEndian.Uint32(p))
		p = p[4:]
		if len(p) < dl {
			return 0, nil, errBadCommand
		}
		entries[i].Data = p[:dl:dl]
		p = p[dl:]
	}
	if len(p) != 0 {
		return 0, nil, fmt.Errorf("%w: %d trailing bytes", errBadCommand, len(p))
	}
	return ts, entries, nil
}
