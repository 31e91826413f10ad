package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/riffle-streams/riffle/shardlog/internal/diskfile"
)

// replay reads every segment in order and applies its records to their
// groups, as the writer did. Damage is handled by where it is:
//   - a bad frame at the end of the newest segment, with no valid frame
//     after it, is a write a crash tore: nothing in it was acknowledged
//     (the writer answers only after the fdatasync), so it is cut off;
//   - an entry that fails its checksum in a frame whose header checks
//     damages that frame's group only;
//   - a damaged header anywhere else, or a missing segment, hides whose
//     records were there: every group is damaged from that point on,
//     until a checkpoint of its own states it whole again.
func (w *WAL) replay() error {
	names, err := segmentNames(w.opts.Dir)
	if err != nil {
		return err
	}
	for i, name := range names {
		id, err := strconv.ParseUint(strings.TrimSuffix(name, segmentExt), 10, 64)
		if err != nil {
			return fmt.Errorf("wal: segment name %s: %w", name, err)
		}
		path := filepath.Join(w.opts.Dir, name)
		f, err := diskfile.Open(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		seg := &segment{id: id, path: path, f: f}
		w.segs = append(w.segs, seg)
		if i > 0 && w.segs[i-1].id+1 != id {
			w.damageAll(fmt.Errorf("%w: segments %d to %d are missing before %s", ErrCorrupt, w.segs[i-1].id+1, id-1, path))
		}
		if err := w.replaySegment(seg, i == len(names)-1); err != nil {
			return err
		}
	}
	// Groups left empty and whole need no state until someone asks.
	for name, g := range w.groups {
		if len(g.locs) == 0 && g.damaged == nil {
			delete(w.groups, name)
		}
	}
	return nil
}

func segmentNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), segmentExt) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // zero-padded: lexical order is id order
	return names, nil
}

// damageAll marks every group, and every group not seen yet, damaged.
func (w *WAL) damageAll(err error) {
	w.logger.Error("wal: damaged before its end; every group's log is suspect until rebuilt", "err", err)
	w.unknownDamaged = err
	for _, g := range w.groups {
		g.damaged = err
	}
}

// replaySegment applies one segment's records; last says it is the newest.
func (w *WAL) replaySegment(seg *segment, last bool) error {
	st, err := seg.f.Stat()
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	data := make([]byte, st.Size())
	if _, err := seg.f.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("wal: read %s: %w", seg.path, err)
	}
	off := 0
	for off < len(data) {
		h, ok := parseHeader(data[off:])
		if ok && off+h.size+h.length > len(data) {
			ok = false // cut short
		}
		var spans []entrySpan
		var bad error
		if ok && (h.typ == recAppend || h.typ == recCheckpoint) {
			spans, bad = splitEntries(data[off+h.size : off+h.size+h.length])
		}
		if !ok || bad != nil {
			next := nextFrame(data, off+1)
			if last && next < 0 {
				why := "a torn frame"
				if bad != nil {
					why = bad.Error()
				}
				w.logger.Warn("wal: cutting the torn tail of the newest segment", "file", seg.path,
					"offset", off, "droppedBytes", len(data)-off, "reason", why)
				if err := seg.f.Truncate(int64(off)); err != nil {
					return fmt.Errorf("wal: cut torn tail: %w", err)
				}
				if err := seg.f.Sync(); err != nil {
					return fmt.Errorf("wal: cut torn tail: %w", err)
				}
				data = data[:off]
				break
			}
			if !ok {
				w.damageAll(fmt.Errorf("%w: a damaged frame at offset %d of %s", ErrCorrupt, off, seg.path))
				if next < 0 {
					break
				}
				off = next
				continue
			}
			g := w.groupLocked(h.name)
			g.damaged = fmt.Errorf("%w: group %s: frame at offset %d of %s: %v", ErrCorrupt, h.name, off, seg.path, bad)
			w.logger.Error("wal: a group's record is damaged; its log is suspect until rebuilt", "group", h.name, "err", g.damaged)
			off += h.size + h.length
			continue
		}
		g := w.groupLocked(h.name)
		body := data[off+h.size : off+h.size+h.length]
		var index uint64
		var locs []loc
		switch h.typ {
		case recTruncPrefix, recTruncSuffix:
			index = le.Uint64(body)
		default:
			if len(spans) > 0 {
				index = spans[0].index
				locs = make([]loc, len(spans))
				for i, sp := range spans {
					locs[i] = loc{seg: seg, off: int64(off + h.size + sp.off), n: int32(sp.n)}
				}
			}
		}
		g.applyLocked(h.typ, index, locs)
		off += h.size + h.length
	}
	seg.size = int64(len(data))
	return nil
}

// nextFrame returns the offset of the first whole, valid frame at or after
// from, or -1. A header validates itself (its checksum covers its
// length), so a valid one after a bad frame means the damage is inside the
// log, not a torn write at its end, which leaves nothing valid behind.
func nextFrame(data []byte, from int) int {
	for off := from; off+frameFixed <= len(data); off++ {
		b := data[off:]
		if !validType(b[8]) || b[9] == 0 {
			continue
		}
		if h, ok := parseHeader(b); ok && off+h.size+h.length <= len(data) {
			return off
		}
	}
	return -1
}
