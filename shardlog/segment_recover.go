package shardlog

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
)

// recover makes the last segment consistent after a crash and returns the
// raft index of its last complete batch (its baseRaftIndex if it has none).
//
// It checks every frame from the start. The .log is cut at the first short,
// corrupt or out-of-sequence frame, and further back to the end of the last
// complete batch: a batch is all or nothing, and the caller replays the lost
// one from raft. The .index and .timeindex are rebuilt from the scan rather
// than trusted, since they may be ahead of or behind the .log.
func (s *segment) recover(logger *slog.Logger) (uint64, error) {
	size, err := fileSize(s.log)
	if err != nil {
		return 0, err
	}
	r := bufio.NewReaderSize(io.NewSectionReader(s.log, headerSize, size-headerSize), 1<<20)
	res := scanFrames(r, s.header, size)

	if torn := size - res.end; torn > 0 {
		logger.Warn("shardlog: truncating torn tail of last segment",
			"file", s.path(logExt), "droppedBytes", torn, "droppedRecords", res.dropped,
			"nextOffset", s.baseOffset+res.records)
		if err := s.log.Truncate(res.end); err != nil {
			return 0, err
		}
		if err := s.log.Sync(); err != nil {
			return 0, err
		}
	}
	if err := rewrite(s.index, res.index); err != nil {
		return 0, fmt.Errorf("shardlog: rebuilding %s: %w", s.path(indexExt), err)
	}
	if err := rewrite(s.timeIndex, res.timeIndex); err != nil {
		return 0, fmt.Errorf("shardlog: rebuilding %s: %w", s.path(timeIndexExt), err)
	}
	if s.logCRC, err = fileCRC(s.log, res.end); err != nil {
		return 0, err
	}
	s.indexCRC = crc32.Checksum(res.index, crcTable)
	s.timeCRC = crc32.Checksum(res.timeIndex, crcTable)

	s.size.Store(res.end)
	s.timeEntries.Store(int64(len(res.timeIndex) / timeEntrySize))
	if len(res.timeIndex) > 0 {
		s.firstTS.Store(int64(le.Uint64(res.timeIndex)))
	}
	s.lastTS.Store(res.lastTS)
	s.next.Store(s.baseOffset + res.records)
	return res.lastRaft, nil
}

// rewrite replaces the content of f with b, durably.
func rewrite(f segFile, b []byte) error {
	if _, err := f.WriteAt(b, 0); err != nil {
		return err
	}
	if err := f.Truncate(int64(len(b))); err != nil {
		return err
	}
	return f.Sync()
}

// scanResult describes the longest prefix of a segment's frames made of
// complete batches.
type scanResult struct {
	end       int64  // file position after the last complete batch
	records   uint64 // records in complete batches
	lastRaft  uint64 // raft index of the last complete batch, else baseRaftIndex
	lastTS    int64  // timestamp of the last complete batch, else baseTimestamp
	index     []byte // .index content for the complete batches
	timeIndex []byte // .timeindex content for the complete batches
	dropped   int    // valid records of an incomplete trailing batch
}

// scanner walks a segment's frames in order, building index entries and
// committing them batch by batch.
type scanner struct {
	h         header
	res       scanResult
	pos       int64  // file position of the next frame
	n         uint64 // records accepted, including an unfinished batch
	ts        int64  // timestamp of the last accepted record
	inBatch   bool
	batchRaft uint64
	index     []byte
	timeIndex []byte
	buf       []byte
}

// scanFrames reads the frames in r, which starts right after the header of
// a segment with header h that is size bytes long, until the first frame
// that is short, corrupt or out of sequence.
func scanFrames(r io.Reader, h header, size int64) scanResult {
	sc := &scanner{
		h:   h,
		res: scanResult{end: headerSize, lastRaft: h.baseRaftIndex, lastTS: h.baseTimestamp},
		pos: headerSize,
		ts:  h.baseTimestamp,
		buf: make([]byte, 64<<10),
	}
	for {
		fi, frameLen, err := sc.readFrame(r, size-sc.pos)
		if err != nil || !sc.accept(fi, frameLen) {
			break
		}
	}
	sc.res.dropped = int(sc.n - sc.res.records)
	return sc.res
}

// readFrame reads and verifies the next frame. remaining is how many bytes
// of the file are left, which bounds a believable frame length.
func (sc *scanner) readFrame(r io.Reader, remaining int64) (frameInfo, int, error) {
	if _, err := io.ReadFull(r, sc.buf[:8]); err != nil {
		return frameInfo{}, 0, err
	}
	bodyLen := int64(le.Uint32(sc.buf[4:]))
	if bodyLen < frameFixedBody || bodyLen > frameFixedBody+maxPayload || 8+bodyLen > remaining {
		return frameInfo{}, 0, errors.New("bad frame length")
	}
	frameLen := int(8 + bodyLen)
	if frameLen > len(sc.buf) {
		sc.buf = append(sc.buf, make([]byte, frameLen-len(sc.buf))...)
	}
	frame := sc.buf[:frameLen]
	if _, err := io.ReadFull(r, frame[8:]); err != nil {
		return frameInfo{}, 0, err
	}
	fi, err := decodeFrame(frame)
	return fi, frameLen, err
}

// accept adds a verified frame if it continues the sequence (dense offsets,
// one raft index and timestamp per batch, increasing raft indexes,
// non-decreasing timestamps) and reports whether it did.
func (sc *scanner) accept(fi frameInfo, frameLen int) bool {
	off := sc.h.baseOffset + sc.n
	switch {
	case fi.offset != off || fi.timestamp < sc.ts:
		return false
	case sc.inBatch && (fi.raftIndex != sc.batchRaft || fi.timestamp != sc.ts):
		return false
	case !sc.inBatch && fi.raftIndex <= sc.res.lastRaft:
		return false
	}
	if !sc.inBatch {
		sc.inBatch, sc.batchRaft = true, fi.raftIndex
		if sc.n == 0 || fi.timestamp > sc.ts {
			sc.timeIndex = appendTimeEntry(sc.timeIndex, fi.timestamp, off)
		}
	}
	sc.index = appendIndexEntry(sc.index, sc.pos, frameLen)
	sc.pos += int64(frameLen)
	sc.n++
	sc.ts = fi.timestamp
	if fi.flags&flagLastInBatch != 0 {
		sc.commit()
	}
	return true
}

// commit makes everything accepted so far part of the result.
func (sc *scanner) commit() {
	sc.inBatch = false
	sc.res.end = sc.pos
	sc.res.records = sc.n
	sc.res.lastRaft = sc.batchRaft
	sc.res.lastTS = sc.ts
	sc.res.index = sc.index
	sc.res.timeIndex = sc.timeIndex
}
