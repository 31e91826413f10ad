package shardlog

// On-disk format
//
// A Log is a directory of segments. A segment holds a contiguous run of
// offsets and is stored as three files named by its base offset (the offset
// of its first record) written as 20 decimal digits:
//
//	00000000000000000000.log        header, then record frames back to back
//	00000000000000000000.index      one fixed-width entry per record
//	00000000000000000000.timeindex  one fixed-width entry per timestamp step
//
// All integers are little-endian; every CRC is CRC-32C (Castagnoli).
//
// .log header, 36 bytes:
//
//	 0  magic          "RFSL"
//	 4  version        uint16, 1
//	 6  reserved       uint16, 0
//	 8  baseOffset     uint64  offset of the segment's first record
//	16  baseRaftIndex  uint64  LastApplied when the segment was created
//	24  baseTimestamp  int64   LastTimestamp when the segment was created
//	32  crc            uint32  over bytes 0..31
//
// The header lets a segment without records (just rolled) still tell
// NextOffset (its baseOffset), LastApplied and LastTimestamp after a restart.
//
// Record frame, 37 bytes plus key and data:
//
//	 0  crc        uint32  over bytes 4..end of frame
//	 4  bodyLen    uint32  bytes after this field: 29 + keyLen + len(data)
//	 8  offset     uint64
//	16  raftIndex  uint64  raft index of the batch
//	24  timestamp  int64   ms since epoch, the same for every record of a batch
//	32  flags      uint8   bit 0: last record of its batch
//	33  keyLen     uint32
//	37  key, then data
//
// .index entry i, 12 bytes, locates record baseOffset+i: file position
// (uint64) and frame length (uint32). Lookup is O(1), and since the entry
// carries the length, a reader knows each record's size (to honour maxBytes)
// and the byte span of a run of records before touching the .log, which it
// then reads with a single ReadAt.
//
// .timeindex entry, 16 bytes: timestamp (int64), offset (uint64). An entry is
// written for the first batch of a segment and for every later batch whose
// timestamp is greater than the previous batch's. Entries therefore strictly
// increase in both fields and each names the first record of the segment
// with its timestamp, so the first entry with timestamp >= t gives exactly the
// first offset with timestamp >= t: no scan of the .log is ever needed.
//
// Writing and durability. Batches never span segments: a segment is rolled
// only between batches, once it has reached SegmentMaxBytes or its first
// record is older than SegmentMaxAge. Rolling fsyncs the old segment's three
// files, creates the new segment with its header written and fsynced, then
// fsyncs the directory. Records appended to the active segment are durable
// after Sync, a roll or Close. An empty batch writes nothing: it only raises
// LastApplied in memory (a later segment header may record it). After a crash
// the caller replays raft entries above LastApplied, and replaying an empty
// batch is harmless.
//
// Sealing. Rolling also writes the old segment's .sum sidecar (see
// segment_verify.go): the sizes and whole-file CRCs of its three files,
// which OpenLog checks instead of scanning every frame of every segment.
//
// Recovery (OpenLog) scans only the last segment frame by frame; older ones
// were fsynced when rolled and are checked against their .sum (see
// segment.verifySealed). A damaged older segment is dropped with every
// segment after it, for the caller to fetch again (see loadSegments).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"

	"github.com/riffle-streams/riffle/shardlog/internal/diskfile"
)

const (
	headerSize      = 36
	frameOverhead   = 37                // fixed bytes of a frame, from crc to keyLen
	frameFixedBody  = frameOverhead - 8 // the part of them that bodyLen counts
	indexEntrySize  = 12
	timeEntrySize   = 16
	formatVersion   = 1
	flagLastInBatch = 1 << 0

	// maxPayload bounds len(PartitionKey)+len(Data) of one record. It keeps
	// frame lengths within a uint32 and stops recovery from believing absurd
	// lengths read from a torn tail.
	maxPayload = 1 << 30

	// readChunk is how many index entries a read fetches per ReadAt, so that
	// an unlimited Read does not pull a whole index into memory at once.
	readChunk = 1024

	// logReadAhead and indexReadAhead are how far past a read the kernel
	// is asked to fetch .log and .index in the background: more than one
	// full GetRecords (10 MiB), so that a replaying reader's next call
	// finds its records in the page cache while this one is being sent.
	logReadAhead   = 16 << 20
	indexReadAhead = 256 << 10

	logExt       = ".log"
	indexExt     = ".index"
	timeIndexExt = ".timeindex"
	sumExt       = ".sum"
)

var (
	le           = binary.LittleEndian
	crcTable     = crc32.MakeTable(crc32.Castagnoli)
	segmentMagic = []byte("RFSL")

	// errBadHeader marks a .log whose header is short or fails its checks:
	// what a crash while creating a segment leaves behind.
	errBadHeader = errors.New("shardlog: torn or invalid segment header")
)

// header is the fixed start of a .log file.
type header struct {
	baseOffset    uint64
	baseRaftIndex uint64
	baseTimestamp int64
}

func (h header) marshal() []byte {
	b := make([]byte, 0, headerSize)
	b = append(b, segmentMagic...)
	b = le.AppendUint16(b, formatVersion)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint64(b, h.baseOffset)
	b = le.AppendUint64(b, h.baseRaftIndex)
	b = le.AppendUint64(b, uint64(h.baseTimestamp))
	return le.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func unmarshalHeader(b []byte) (header, error) {
	if len(b) < headerSize || !bytes.Equal(b[:4], segmentMagic) ||
		crc32.Checksum(b[:32], crcTable) != le.Uint32(b[32:]) {
		return header{}, errBadHeader
	}
	if v := le.Uint16(b[4:]); v != formatVersion {
		return header{}, fmt.Errorf("shardlog: unsupported segment format version %d", v)
	}
	return header{
		baseOffset:    le.Uint64(b[8:]),
		baseRaftIndex: le.Uint64(b[16:]),
		baseTimestamp: int64(le.Uint64(b[24:])),
	}, nil
}

// frameInfo is the fixed part of a decoded frame.
type frameInfo struct {
	offset    uint64
	raftIndex uint64
	timestamp int64
	flags     byte
	keyLen    int
}

// appendFrame encodes one record frame onto dst.
func appendFrame(dst []byte, offset, raftIndex uint64, ts int64, flags byte, e Entry) []byte {
	start := len(dst)
	dst = le.AppendUint32(dst, 0) // CRC, filled in below
	dst = le.AppendUint32(dst, uint32(frameFixedBody+len(e.PartitionKey)+len(e.Data)))
	dst = le.AppendUint64(dst, offset)
	dst = le.AppendUint64(dst, raftIndex)
	dst = le.AppendUint64(dst, uint64(ts))
	dst = append(dst, flags)
	dst = le.AppendUint32(dst, uint32(len(e.PartitionKey)))
	dst = append(dst, e.PartitionKey...)
	dst = append(dst, e.Data...)
	le.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], crcTable))
	return dst
}

// decodeFrame verifies a complete frame (length field and CRC) and returns
// its fixed fields. Errors are bare reasons; callers add ErrCorrupt and where.
func decodeFrame(frame []byte) (frameInfo, error) {
	if len(frame) < frameOverhead {
		return frameInfo{}, errors.New("short frame")
	}
	if int(le.Uint32(frame[4:]))+8 != len(frame) {
		return frameInfo{}, errors.New("frame length mismatch")
	}
	if crc32.Checksum(frame[4:], crcTable) != le.Uint32(frame) {
		return frameInfo{}, errors.New("checksum mismatch")
	}
	keyLen := uint64(le.Uint32(frame[33:]))
	if keyLen > uint64(len(frame)-frameOverhead) {
		return frameInfo{}, errors.New("key length out of range")
	}
	return frameInfo{
		offset:    le.Uint64(frame[8:]),
		raftIndex: le.Uint64(frame[16:]),
		timestamp: int64(le.Uint64(frame[24:])),
		flags:     frame[32],
		keyLen:    int(keyLen),
	}, nil
}

func appendIndexEntry(dst []byte, pos int64, frameLen int) []byte {
	dst = le.AppendUint64(dst, uint64(pos))
	return le.AppendUint32(dst, uint32(frameLen))
}

func appendTimeEntry(dst []byte, ts int64, offset uint64) []byte {
	dst = le.AppendUint64(dst, uint64(ts))
	return le.AppendUint64(dst, offset)
}

// segment is one segment's open files plus its published state.
//
// The atomics are written only by the Log's writer while the segment is
// active, and never change once it is sealed. The writer stores next last, so
// a reader that loads next (and then the others) sees every record below it
// fully written, indexed and accounted for.
type segment struct {
	header
	dir                   string
	log, index, timeIndex segFile

	next        atomic.Uint64 // offset after the last record
	size        atomic.Int64  // bytes in .log, header included
	firstTS     atomic.Int64  // timestamp of the first record; 0 while empty
	lastTS      atomic.Int64  // timestamp of the last record in or before this segment
	timeEntries atomic.Int64  // entries in .timeindex

	// Running CRC-32C of each file's published content, kept by the writer
	// for the .sum written when the segment is sealed.
	logCRC, indexCRC, timeCRC uint32

	// How far the kernel was asked to read .log and .index ahead of the
	// readers (readAhead).
	logAhead, indexAhead atomic.Int64
}

func segmentPath(dir string, base uint64, ext string) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", base, ext))
}

func (s *segment) path(ext string) string { return segmentPath(s.dir, s.baseOffset, ext) }

// createSegment creates a new, empty segment described by h and makes its
// header durable. The caller fsyncs the directory.
func createSegment(dir string, h header) (_ *segment, err error) {
	s := &segment{header: h, dir: dir}
	defer func() {
		if err != nil {
			s.close()
			s.remove()
			err = fmt.Errorf("shardlog: creating segment %s: %w", s.path(logExt), err)
		}
	}()
	if s.log, err = createFile(s.path(logExt)); err != nil {
		return nil, err
	}
	if _, err = s.log.Write(h.marshal()); err != nil {
		return nil, err
	}
	if err = s.log.Sync(); err != nil {
		return nil, err
	}
	if s.index, err = createFile(s.path(indexExt)); err != nil {
		return nil, err
	}
	if s.timeIndex, err = createFile(s.path(timeIndexExt)); err != nil {
		return nil, err
	}
	s.next.Store(h.baseOffset)
	s.size.Store(headerSize)
	s.lastTS.Store(h.baseTimestamp)
	s.logCRC = crc32.Checksum(h.marshal(), crcTable)
	return s, nil
}

func createFile(path string) (segFile, error) {
	return openSegFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
}

// openSegment opens the files of the existing segment at base and checks its
// header. An error wrapping errBadHeader means the header is torn.
func openSegment(dir string, base uint64) (_ *segment, err error) {
	s := &segment{dir: dir, header: header{baseOffset: base}}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.log, err = openSegFile(s.path(logExt), os.O_RDWR, 0); err != nil {
		return nil, err
	}
	// A missing index file is rebuilt for the last segment and reported as
	// corruption for older ones (by their size check), so create it here.
	if s.index, err = openSegFile(s.path(indexExt), os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return nil, err
	}
	if s.timeIndex, err = openSegFile(s.path(timeIndexExt), os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return nil, err
	}
	buf := make([]byte, headerSize)
	if _, err = s.log.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if s.header, err = unmarshalHeader(buf); err != nil {
		return nil, fmt.Errorf("%s: %w", s.path(logExt), err)
	}
	if s.baseOffset != base {
		return nil, fmt.Errorf("%w: %s: header says base offset %d", ErrCorrupt, s.path(logExt), s.baseOffset)
	}
	return s, nil
}

// loadSealed fills in the state of a segment that is not the last one,
// cheaply and without scanning it: its records end where the following
// segment (with header nextH) starts, and its last timestamp is the one the
// following segment recorded in its header when it was rolled.
func (s *segment) loadSealed(nextH header) error {
	count := nextH.baseOffset - s.baseOffset
	if size, err := fileSize(s.index); err != nil {
		return err
	} else if nextH.baseOffset <= s.baseOffset || size != int64(count)*indexEntrySize {
		return fmt.Errorf("%w: %s holds %d bytes for offsets [%d, %d)", ErrCorrupt, s.path(indexExt), size, s.baseOffset, nextH.baseOffset)
	}
	timeSize, err := fileSize(s.timeIndex)
	if err != nil {
		return err
	}
	if timeSize == 0 || timeSize%timeEntrySize != 0 {
		return fmt.Errorf("%w: %s holds %d bytes", ErrCorrupt, s.path(timeIndexExt), timeSize)
	}
	firstTS, _, err := s.timeEntry(0)
	if err != nil {
		return err
	}
	logSize, err := fileSize(s.log)
	if err != nil {
		return err
	}
	s.size.Store(logSize)
	s.timeEntries.Store(timeSize / timeEntrySize)
	s.firstTS.Store(firstTS)
	s.lastTS.Store(nextH.baseTimestamp)
	s.next.Store(nextH.baseOffset)
	return nil
}

func fileSize(f segFile) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// writeBuffers is the writer's scratch space, reused across batches.
type writeBuffers struct {
	frames, index []byte
}

// append writes one non-empty batch at the end of the active segment, then
// publishes it. On error nothing is published, but the files may hold part
// of the batch past the published size.
func (s *segment) append(buf *writeBuffers, raftIndex uint64, ts int64, entries []Entry) error {
	first := s.next.Load()
	pos := s.size.Load()
	frames, index := buf.frames[:0], buf.index[:0]
	for i, e := range entries {
		var flags byte
		if i == len(entries)-1 {
			flags = flagLastInBatch
		}
		start := len(frames)
		frames = appendFrame(frames, first+uint64(i), raftIndex, ts, flags, e)
		index = appendIndexEntry(index, pos+int64(start), len(frames)-start)
	}
	buf.frames, buf.index = frames, index

	empty := first == s.baseOffset
	newTime := empty || ts > s.lastTS.Load()
	if _, err := s.log.WriteAt(frames, pos); err != nil {
		return err
	}
	if _, err := s.index.WriteAt(index, int64(first-s.baseOffset)*indexEntrySize); err != nil {
		return err
	}
	timeEntries := s.timeEntries.Load()
	if newTime {
		entry := appendTimeEntry(make([]byte, 0, timeEntrySize), ts, first)
		if _, err := s.timeIndex.WriteAt(entry, timeEntries*timeEntrySize); err != nil {
			return err
		}
		timeEntries++
		s.timeCRC = crc32.Update(s.timeCRC, crcTable, entry)
	}
	s.logCRC = crc32.Update(s.logCRC, crcTable, frames)
	s.indexCRC = crc32.Update(s.indexCRC, crcTable, index)

	s.size.Store(pos + int64(len(frames)))
	s.timeEntries.Store(timeEntries)
	if empty {
		s.firstTS.Store(ts)
	}
	s.lastTS.Store(ts)
	s.next.Store(first + uint64(len(entries))) // publish
	return nil
}

// indexEntry locates one record in the .log.
type indexEntry struct {
	pos  int64
	size int // whole frame
}

// budget is what a Read may still return.
type budget struct {
	records int
	bytes   int
	taken   int
}

// take charges as many of entries as fit and returns how many that is. The
// first record of a Read always fits, so readers get past a record larger
// than their maxBytes.
func (b *budget) take(entries []indexEntry) int {
	k := 0
	for _, e := range entries {
		payload := e.size - frameOverhead
		if b.records == 0 || (b.taken > 0 && payload > b.bytes) {
			break
		}
		b.records--
		b.bytes -= payload
		b.taken++
		k++
	}
	return k
}

// read appends to out the records [from, end) of s, or as many of them as b
// allows. end must not exceed the published next.
func (s *segment) read(out []Record, from, end uint64, b *budget) ([]Record, error) {
	for from < end && b.records > 0 {
		n := int(min(end-from, uint64(b.records), readChunk))
		entries, err := s.readIndex(from, n)
		if err != nil {
			return nil, err
		}
		k := b.take(entries)
		if k == 0 {
			break
		}
		if out, err = s.readFrames(out, from, entries[:k]); err != nil {
			return nil, err
		}
		from += uint64(k)
		if k < n {
			break
		}
	}
	return out, nil
}

func (s *segment) readIndex(from uint64, n int) ([]indexEntry, error) {
	buf := make([]byte, n*indexEntrySize)
	pos := int64(from-s.baseOffset) * indexEntrySize
	if _, err := s.index.ReadAt(buf, pos); err != nil {
		return nil, s.readErr(from, s.path(indexExt), err)
	}
	readAhead(s.index, &s.indexAhead, pos+int64(len(buf)), indexReadAhead)
	entries := make([]indexEntry, n)
	for i := range entries {
		b := buf[i*indexEntrySize:]
		entries[i] = indexEntry{pos: int64(le.Uint64(b)), size: int(le.Uint32(b[8:]))}
	}
	return entries, nil
}

// readFrames reads the consecutive records at entries (offsets from,
// from+1, ...) with one ReadAt, verifies each and appends them to out.
func (s *segment) readFrames(out []Record, from uint64, entries []indexEntry) ([]Record, error) {
	start, end := entries[0].pos, entries[0].pos
	for i, e := range entries {
		if e.pos != end || e.size < frameOverhead {
			return nil, s.corrupt(from+uint64(i), "bad index entry")
		}
		end += int64(e.size)
	}
	// Checked before allocating, so a damaged index cannot ask for gigabytes.
	if start < headerSize || end > s.size.Load() {
		return nil, s.corrupt(from, "index points outside the log")
	}
	buf := make([]byte, end-start)
	if _, err := s.log.ReadAt(buf, start); err != nil {
		return nil, s.readErr(from, s.path(logExt), err)
	}
	readAhead(s.log, &s.logAhead, end, logReadAhead)
	for i, e := range entries {
		rel := e.pos - start
		// The capacity limit stops a caller appending to one record's Data
		// from overwriting the next record in the shared buffer.
		rec, err := s.decodeRecord(buf[rel:rel+int64(e.size):rel+int64(e.size)], from+uint64(i))
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// readAhead keeps the kernel fetching f up to window bytes past end, where
// a read just ended; mark is how far it was last asked to. Only a stretch
// of at least a quarter window that was not asked for yet is asked for,
// so that a reader at the tail, or one inside what is being fetched,
// costs no system call. It is a hint: nothing a read returns depends on it.
func readAhead(f segFile, mark *atomic.Int64, end, window int64) {
	want := end + window
	from := mark.Load()
	if from < end || from > want {
		from = end // a reader outside the stretch asked for: start afresh
	}
	if want-from < window/4 {
		return
	}
	mark.Store(want)
	diskfile.ReadAhead(f, from, want-from)
}

func (s *segment) decodeRecord(frame []byte, off uint64) (Record, error) {
	fi, err := decodeFrame(frame)
	if err != nil {
		return Record{}, s.corrupt(off, err.Error())
	}
	if fi.offset != off {
		return Record{}, s.corrupt(off, fmt.Sprintf("frame holds offset %d", fi.offset))
	}
	keyEnd := frameOverhead + fi.keyLen
	return Record{
		Offset:       off,
		RaftIndex:    fi.raftIndex,
		Timestamp:    fi.timestamp,
		PartitionKey: string(frame[frameOverhead:keyEnd]),
		Data:         frame[keyEnd:],
		LastInBatch:  fi.flags&flagLastInBatch != 0,
	}, nil
}

func (s *segment) corrupt(off uint64, reason string) error {
	return fmt.Errorf("%w: offset %d in %s: %s", ErrCorrupt, off, s.path(logExt), reason)
}

// readErr reports a failed ReadAt. Running off the end of a file means a
// file is shorter than its index says: corruption.
func (s *segment) readErr(off uint64, path string, err error) error {
	if errors.Is(err, io.EOF) {
		return s.corrupt(off, path+" is shorter than its index says")
	}
	return fmt.Errorf("shardlog: reading offset %d from %s: %w", off, path, err)
}

func (s *segment) timeEntry(i int64) (ts int64, offset uint64, err error) {
	var b [timeEntrySize]byte
	if _, err := s.timeIndex.ReadAt(b[:], i*timeEntrySize); err != nil {
		return 0, 0, fmt.Errorf("shardlog: reading %s entry %d: %w", s.path(timeIndexExt), i, err)
	}
	return int64(le.Uint64(b[:])), le.Uint64(b[8:]), nil
}

// offsetAtTime returns the first offset below end in s whose timestamp is
// >= ts, or end if there is none. See the .timeindex format for why the
// binary search alone is exact.
func (s *segment) offsetAtTime(ts int64, end uint64) (uint64, error) {
	n := s.timeEntries.Load()
	var readErr error
	i := sort.Search(int(n), func(i int) bool {
		t, _, err := s.timeEntry(int64(i))
		if err != nil {
			readErr = err
			return true
		}
		return t >= ts
	})
	if readErr != nil {
		return 0, readErr
	}
	if int64(i) == n {
		return end, nil
	}
	_, off, err := s.timeEntry(int64(i))
	if err != nil {
		return 0, err
	}
	// An entry may belong to a batch published after the caller loaded end.
	return min(off, end), nil
}

func (s *segment) sync() error {
	return errors.Join(s.log.Sync(), s.index.Sync(), s.timeIndex.Sync())
}

func (s *segment) close() error {
	var errs []error
	for _, f := range []segFile{s.log, s.index, s.timeIndex} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}

// remove deletes the segment's files, .log first: once it is gone the
// segment is gone, and OpenLog deletes index files left without their .log.
func (s *segment) remove() error {
	if err := removeIfExists(s.path(logExt)); err != nil {
		return err
	}
	return errors.Join(removeIfExists(s.path(indexExt)), removeIfExists(s.path(timeIndexExt)), removeIfExists(s.path(sumExt)))
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
