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

// loadSegments opens every segment in dir, recovers the last one and
// returns them in offset order with the recovered LastApplied. An empty
// directory gets a first segment at offset 0.
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
	for i, base := range bases {
		s, err := openSegment(dir, base)
		if i == len(bases)-1 && errors.Is(err, errBadHeader) {
			// A crash while rolling: the segment never held a record.
			logger.Warn("shardlog: deleting last segment with torn header", "file", segmentPath(dir, base, logExt))
			err = (&segment{dir: dir, header: header{baseOffset: base}}).remove()
		}
		if err != nil {
			return segs, 0, fmt.Errorf("shardlog: opening segment %d in %s: %w", base, dir, err)
		}
		if s != nil {
			segs = append(segs, s)
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
	for i := range segs[:len(segs)-1] {
		if err := segs[i].loadSealed(segs[i+1].header); err != nil {
			return segs, 0, err
		}
	}
	lastApplied, err = segs[len(segs)-1].recover(logger)
	return segs, lastApplied, err
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
	if ext != logExt && ext != indexExt && ext != timeIndexExt {
		return 0, "", false
	}
	base, err := strconv.ParseUint(stem, 10, 64)
	return base, ext, err == nil
}
