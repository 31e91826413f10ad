package shardlog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
)

// Verifying sealed segments at open.
//
// A node may hold gigabytes of sealed segments, and bit rot or a truncated
// file in one of them must be found before the replica serves it. Scanning
// every frame would find it too, but parses and allocates per record; a
// whole-file CRC-32C, computed while the segment was written and stored
// when it was sealed, needs one sequential read per file at disk speed
// (CRC-32C is hardware-accelerated) and also covers the .index and
// .timeindex byte for byte. So rolling writes a sidecar, and OpenLog checks
// every sealed segment against it. A segment sealed before sidecars existed,
// or whose sidecar is itself damaged, is scanned frame by frame once (the
// scan recovery runs on the last segment) and gets a new sidecar.
//
// .sum sidecar, 48 bytes:
//
//	 0  magic      "RFSS"
//	 4  version    uint16, 1
//	 6  reserved   uint16, 0
//	 8  logSize    uint64
//	16  logCRC     uint32  over the whole .log, header included
//	20  indexSize  uint64
//	28  indexCRC   uint32
//	32  timeSize   uint64
//	40  timeCRC    uint32
//	44  crc        uint32  over bytes 0..43

const sumSize = 48

var sumMagic = []byte("RFSS")

// fileSum is the size and CRC-32C of one file.
type fileSum struct {
	size int64
	crc  uint32
}

// segmentSums is the content of a .sum sidecar.
type segmentSums struct {
	log, index, time fileSum
}

func (m segmentSums) marshal() []byte {
	b := make([]byte, 0, sumSize)
	b = append(b, sumMagic...)
	b = le.AppendUint16(b, formatVersion)
	b = le.AppendUint16(b, 0)
	for _, f := range []fileSum{m.log, m.index, m.time} {
		b = le.AppendUint64(b, uint64(f.size))
		b = le.AppendUint32(b, f.crc)
	}
	return le.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func unmarshalSums(b []byte) (segmentSums, bool) {
	if len(b) != sumSize || !bytes.Equal(b[:4], sumMagic) || le.Uint16(b[4:]) != formatVersion ||
		crc32.Checksum(b[:44], crcTable) != le.Uint32(b[44:]) {
		return segmentSums{}, false
	}
	var m segmentSums
	for i, f := range []*fileSum{&m.log, &m.index, &m.time} {
		p := b[8+12*i:]
		f.size, f.crc = int64(le.Uint64(p)), le.Uint32(p[8:])
	}
	return m, true
}

// writtenSums returns the sums the writer kept while filling the segment.
func (s *segment) writtenSums() segmentSums {
	return segmentSums{
		log:   fileSum{s.size.Load(), s.logCRC},
		index: fileSum{int64(s.next.Load()-s.baseOffset) * indexEntrySize, s.indexCRC},
		time:  fileSum{s.timeEntries.Load() * timeEntrySize, s.timeCRC},
	}
}

// writeSums stores m as the segment's sidecar, durably. The caller fsyncs
// the directory.
func (s *segment) writeSums(m segmentSums) error {
	f, err := createFile(s.path(sumExt))
	if err != nil {
		return err
	}
	_, err = f.Write(m.marshal())
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// fileSums measures the three files as they are on disk.
func (s *segment) fileSums() (segmentSums, error) {
	var m segmentSums
	for _, c := range []struct {
		f   segFile
		sum *fileSum
	}{{s.log, &m.log}, {s.index, &m.index}, {s.timeIndex, &m.time}} {
		size, err := fileSize(c.f)
		if err != nil {
			return m, err
		}
		crc, err := fileCRC(c.f, size)
		if err != nil {
			return m, err
		}
		*c.sum = fileSum{size, crc}
	}
	return m, nil
}

// fileCRC computes the CRC-32C of the first size bytes of f.
func fileCRC(f segFile, size int64) (uint32, error) {
	h := crc32.New(crcTable)
	if _, err := io.CopyBuffer(h, io.NewSectionReader(f, 0, size), make([]byte, 1<<20)); err != nil {
		return 0, fmt.Errorf("shardlog: reading %s: %w", f.Name(), err)
	}
	return h.Sum32(), nil
}

// verifySealed checks a segment that is not the last one, whose successor
// has header nextH, and loads its state (loadSealed). Any damage found is
// reported as ErrCorrupt: sizes that do not fit the offsets, or content
// that does not match the sidecar (or, without a usable sidecar, a frame
// that fails its checksum or breaks the sequence, or an index that does not
// match the frames).
func (s *segment) verifySealed(nextH header, logger *slog.Logger) error {
	if err := s.loadSealed(nextH); err != nil {
		return err
	}
	got, err := s.fileSums()
	if err != nil {
		return err
	}
	if b, err := os.ReadFile(s.path(sumExt)); err == nil {
		if want, ok := unmarshalSums(b); ok {
			for _, c := range []struct {
				ext       string
				got, want fileSum
			}{{logExt, got.log, want.log}, {indexExt, got.index, want.index}, {timeIndexExt, got.time, want.time}} {
				if c.got != c.want {
					return fmt.Errorf("%w: %s: %d bytes with CRC %08x, sealed as %d bytes with CRC %08x",
						ErrCorrupt, s.path(c.ext), c.got.size, c.got.crc, c.want.size, c.want.crc)
				}
			}
			return nil
		}
	}
	if err := s.scanSealed(nextH); err != nil {
		return err
	}
	if err := s.writeSums(got); err != nil {
		logger.Warn("shardlog: cannot write a sealed segment's checksums; it will be scanned again at the next open",
			"file", s.path(sumExt), "err", err)
	} else {
		logger.Info("shardlog: sealed segment scanned and its checksums recorded", "file", s.path(logExt))
	}
	return nil
}

// scanSealed checks every frame of a sealed segment, as recovery does for
// the last one, and requires the whole file to be complete batches that
// end where the next segment starts, with indexes matching them.
func (s *segment) scanSealed(nextH header) error {
	size := s.size.Load()
	r := bufio.NewReaderSize(io.NewSectionReader(s.log, headerSize, size-headerSize), 1<<20)
	res := scanFrames(r, s.header, size)
	if res.end != size || s.baseOffset+res.records != nextH.baseOffset {
		return fmt.Errorf("%w: %s: intact frames end at byte %d (offset %d) of %d bytes, next segment starts at offset %d",
			ErrCorrupt, s.path(logExt), res.end, s.baseOffset+res.records, size, nextH.baseOffset)
	}
	for _, c := range []struct {
		f    segFile
		want []byte
	}{{s.index, res.index}, {s.timeIndex, res.timeIndex}} {
		got, err := io.ReadAll(io.NewSectionReader(c.f, 0, int64(len(c.want))+1))
		if err != nil {
			return fmt.Errorf("shardlog: reading %s: %w", c.f.Name(), err)
		}
		if !bytes.Equal(got, c.want) {
			return fmt.Errorf("%w: %s does not match the frames of its segment", ErrCorrupt, c.f.Name())
		}
	}
	return nil
}
