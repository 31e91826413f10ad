package shardlog

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
)

// loadSegments opens every segment in dir, verifies the sealed ones
// (verifySealed), recovers the last one and returns them in offset order
// with the recovered LastApplied. An empty directory gets a first segment
// at offset 0.
//
// A damaged segment other than the last is dropped together with every
// segment after it (dropDamaged), so that the log stays a prefix of the
// shard's records: the caller fetches the rest again, from peers or from
// its raft log. Serving the damage is never an option, and keeping the
// intact segments after it would leave a hole in the offsets.
func loadSegments(dir string, logger *slog.Logger) (segs []*segment, lastApplied uint64, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, err
	}
	bases, err := listSegments(dir)
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		if err != nil {
			for _, s := range segs {
				s.close()
			}
			segs = nil
		}
	}()
	damaged, why := len(bases), error(nil)
	for i, base := range bases {
		s, err := openSegment(dir, base)
		if i == len(bases)-1 && errors.Is(err, errBadHeader) {
			// A crash while rolling: the segment never held a record.
			logger.Warn("shardlog: deleting last segment with torn header", "file", segmentPath(dir, base, logExt))
			err = (&segment{dir: dir, header: header{baseOffset: base}}).remove()
		}
		if errors.Is(err, ErrCorrupt) || errors.Is(err, errBadHeader) {
			damaged, why = i, err
			break
		}
		if err != nil {
			return segs, 0, fmt.Errorf("shardlog: opening segment %d in %s: %w", base, dir, err)
		}
		if s != nil {
			segs = append(segs, s)
		}
	}
	for i := range segs[:max(len(segs)-1, 0)] {
		if err := segs[i].verifySealed(segs[i+1].header, logger); errors.Is(err, ErrCorrupt) {
			damaged, why = i, err
			break
		} else if err != nil {
			return segs, 0, err
		}
	}
	if damaged < len(bases) {
		if segs, err = dropDamaged(dir, segs, bases[damaged:], why, logger); err != nil {
			return segs, 0, err
		}
	}

	if len(segs) == 0 {
		s, err := createSegment(dir, header{})
		if err != nil {
			return nil, 0, err
		}
		segs = append(segs, s)
		return segs, 0, syncDir(dir)
	}
	lastApplied, err = segs[len(segs)-1].recover(logger)
	return segs, lastApplied, err
}

// dropDamaged deletes the segments at doomed (ascending base offsets, the
// first one damaged by why) and returns the open segments below them. It
// deletes newest first, so a crash midway leaves a shorter log, never one
// with a hole. When nothing is left, the log restarts empty where the
// damaged segment began, with its header's raft index and timestamp if
// the header is intact (else zero: the caller replays or fetches from
// further back, which is merely slower).
func dropDamaged(dir string, segs []*segment, doomed []uint64, why error, logger *slog.Logger) ([]*segment, error) {
	first := doomed[0]
	restart := header{baseOffset: first}
	for _, s := range segs {
		if s.baseOffset >= first {
			if s.baseOffset == first {
				restart = s.header
			}
			s.close()
		}
	}
	segs = slices.DeleteFunc(segs, func(s *segment) bool { return s.baseOffset >= first })
	logger.Error("shardlog: damaged segment found; dropping it and the segments after it, to be fetched again",
		"dir", dir, "segment", first, "segmentsDropped", len(doomed), "err", why)
	for _, base := range slices.Backward(doomed) {
		if err := (&segment{dir: dir, header: header{baseOffset: base}}).remove(); err != nil {
			return segs, fmt.Errorf("shardlog: deleting damaged segment %d in %s: %w", base, dir, err)
		}
	}
	if len(segs) == 0 {
		s, err := createSegment(dir, restart)
		if err != nil {
			return nil, err
		}
		segs = append(segs, s)
	}
	return segs, syncDir(dir)
}

// listSegments returns the base offsets of the segments in dir, ascending.
// It deletes index files whose .log is gone, which an interrupted deletion
// of old segments can leave behind.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	logs := map[uint64]bool{}
	for _, e := range entries {
		if base, ext, ok := parseSegmentName(e.Name()); ok && ext == logExt {
			logs[base] = true
		}
	}
	for _, e := range entries {
		base, ext, ok := parseSegmentName(e.Name())
		if ok && ext != logExt && !logs[base] {
			if err := removeIfExists(segmentPath(dir, base, ext)); err != nil {
				return nil, err
			}
		}
	}
	bases := make([]uint64, 0, len(logs))
	for base := range logs {
		bases = append(bases, base)
	}
	slices.Sort(bases)
	return bases, nil
}

// parseSegmentName splits a segment file name into base offset and
// extension; ok is false for any other file.
func parseSegmentName(name string) (base uint64, ext string, ok bool) {
	stem, rest, found := strings.Cut(name, ".")
	if !found || len(stem) != 20 {
		return 0, "", false
	}
	ext = "." + rest
	if ext != logExt && ext != indexExt && ext != timeIndexExt && ext != sumExt {
		return 0, "", false
	}
	base, err := strconv.ParseUint(stem, 10, 64)
	return base, ext, err == nil
}
