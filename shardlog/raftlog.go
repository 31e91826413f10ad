package shardlog

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// RaftLog is the raft log store a replica had to itself before the node's
// write-ahead log (package wal) held every replica's entries: entries
// appended to files, one write and one fdatasync per StoreLogs call. A
// replica opened now moves such a log into the WAL (importOldLog) and
// deletes it; the writing half stays for the tests that make one.
//
// Why not raft-boltdb, which still holds the group's term and vote: a
// bbolt commit of one 300 KiB entry took 9 to 12 ms here against 1.3 ms to
// append and fdatasync the same bytes to a file (bbolt writes the value's
// pages wherever its freelist finds room, then its meta page, with a sync
// after each). A shard leader and its followers each store every entry
// before it commits, so that cost capped a shard at about 13 MiB/s.
//
// The store keeps only what raft asks of it: entries contiguous from
// FirstIndex to LastIndex. Files are named by the index of their first
// entry and roll at raftLogFileBytes. A frame is
//
//	length uint32 | crc32c(payload) uint32 | payload
//	payload: index uint64 | term uint64 | type uint8 | appendedAt int64 (unix ns)
//	         | extensions length uint32 | extensions | data
//
// little-endian. On open every file is checked frame by frame. A torn or
// corrupt tail of the last file (a crash mid-write: raft acknowledged
// nothing in it) is cut off; a bad frame anywhere else is corruption,
// and the store refuses to open (ErrRaftLogCorrupt) rather than hand raft
// a log with a hole.
type RaftLog struct {
	dir    string
	logger *slog.Logger

	mu    sync.RWMutex
	files []*raftLogFile // ascending, contiguous indexes; the last is appended to
	first uint64         // first live index; 0 when empty
	last  uint64         // last index; 0 when empty
	buf   []byte         // encoding buffer reused by StoreLogs

	fileBytes int64 // roll past this size; raftLogFileBytes but in tests
}

// ErrRaftLogCorrupt: a raft log file holds a damaged frame before its
// end; the replica's log cannot be trusted and must be rebuilt from peers.
var ErrRaftLogCorrupt = errors.New("shardlog: raft log corrupt")

// raftLogFileBytes is the size past which the log starts a new file, so
// that compaction deletes whole files.
const raftLogFileBytes = 64 << 20

const (
	raftLogExt         = ".raftlog"
	raftFrameHeader    = 8
	raftPayloadFixed   = 8 + 8 + 1 + 8 + 4
	raftFrameMaxLength = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type raftLogFile struct {
	first   uint64  // index of offsets[0]
	offsets []int64 // frame start of index first+i
	size    int64
	f       segFile // faultsync builds keep unsynced writes in memory
	path    string
}

// OpenRaftLog opens (or creates) the raft log in dir.
func OpenRaftLog(dir string, logger *slog.Logger) (*RaftLog, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("shardlog: raft log: %w", err)
	}
	l := &RaftLog{dir: dir, logger: logger, fileBytes: raftLogFileBytes}
	names, err := raftLogFileNames(dir)
	if err != nil {
		return nil, err
	}
	for i, name := range names {
		first, _ := strconv.ParseUint(strings.TrimSuffix(name, raftLogExt), 10, 64)
		rf, err := l.openFile(filepath.Join(dir, name), first, i == len(names)-1)
		if err != nil {
			l.Close()
			return nil, err
		}
		l.files = append(l.files, rf)
	}
	// Files start where their predecessor ends, except after a snapshot
	// install moved the log past its end (StoreLogs with a gap): a crash
	// before the older files were deleted leaves them. Finish that.
	for i := len(l.files) - 1; i > 0; i-- {
		prev, cur := l.files[i-1], l.files[i]
		if prev.first+uint64(len(prev.offsets)) == cur.first {
			continue
		}
		logger.Warn("shardlog: raft log restarts after a gap; dropping the files before it",
			"files", i, "resumesAt", cur.first)
		if err := l.removeFiles(l.files[:i]); err != nil {
			l.Close()
			return nil, err
		}
		l.files = l.files[i:]
		break
	}
	// An empty file other than the only one holds nothing: drop it.
	for len(l.files) > 1 && len(l.files[0].offsets) == 0 {
		if err := l.removeFiles(l.files[:1]); err != nil {
			l.Close()
			return nil, err
		}
		l.files = l.files[1:]
	}
	l.resetBounds()
	return l, nil
}

func raftLogFileNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("shardlog: raft log: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), raftLogExt) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // zero-padded: lexical order is index order
	return names, nil
}

// openFile scans one file's frames. A bad frame cuts the last file there
// and fails any other.
func (l *RaftLog) openFile(path string, first uint64, last bool) (*raftLogFile, error) {
	f, err := openSegFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("shardlog: raft log: %w", err)
	}
	size, err := fileSize(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	rf := &raftLogFile{first: first, f: f, path: path}
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<20)
	var off int64
	var hdr [raftFrameHeader]byte
	var payload []byte
	for off < size {
		bad := func() string {
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return "short header"
			}
			n := le.Uint32(hdr[0:4])
			if n < raftPayloadFixed || n > raftFrameMaxLength || off+raftFrameHeader+int64(n) > size {
				return "bad length"
			}
			if cap(payload) < int(n) {
				payload = make([]byte, n)
			}
			payload = payload[:n]
			if _, err := io.ReadFull(r, payload); err != nil {
				return "short payload"
			}
			if crc32.Checksum(payload, castagnoli) != le.Uint32(hdr[4:8]) {
				return "checksum mismatch"
			}
			if idx := le.Uint64(payload[0:8]); idx != first+uint64(len(rf.offsets)) {
				return fmt.Sprintf("index %d where %d belongs", idx, first+uint64(len(rf.offsets)))
			}
			return ""
		}()
		if bad != "" {
			if !last || laterFrame(f, off+1, size, first+uint64(len(rf.offsets))) {
				f.Close()
				return nil, fmt.Errorf("%w: %s at offset %d: %s", ErrRaftLogCorrupt, path, off, bad)
			}
			l.logger.Warn("shardlog: cutting the raft log's torn tail", "file", path,
				"offset", off, "droppedBytes", size-off, "reason", bad)
			if err := f.Truncate(off); err != nil {
				f.Close()
				return nil, err
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return nil, err
			}
			break
		}
		rf.offsets = append(rf.offsets, off)
		off += raftFrameHeader + int64(len(payload))
	}
	rf.size = off
	return rf, nil
}

// laterFrame reports whether a valid frame of an index at or above want
// starts anywhere in f from off on. After a bad frame that means damage
// inside the log, not a write torn by a crash, which leaves nothing valid
// behind it: cutting there would drop entries raft had acknowledged.
func laterFrame(f segFile, off, size int64, want uint64) bool {
	r := bufio.NewReaderSize(io.NewSectionReader(f, off, size-off), 1<<20)
	window := make([]byte, 0, raftFrameHeader+16)
	for pos := off; ; pos++ {
		for len(window) < raftFrameHeader+16 {
			b, err := r.ReadByte()
			if err != nil {
				return false
			}
			window = append(window, b)
		}
		n := int64(le.Uint32(window[0:4]))
		idx := le.Uint64(window[raftFrameHeader:])
		if idx >= want && idx < want+1<<20 && n >= raftPayloadFixed && pos+raftFrameHeader+n <= size {
			payload := make([]byte, n)
			if _, err := f.ReadAt(payload, pos+raftFrameHeader); err == nil &&
				crc32.Checksum(payload, castagnoli) == le.Uint32(window[4:8]) {
				return true
			}
		}
		window = window[1:]
	}
}

func (l *RaftLog) resetBounds() {
	l.first, l.last = 0, 0
	for _, rf := range l.files {
		if n := len(rf.offsets); n > 0 {
			if l.first == 0 {
				l.first = rf.first
			}
			l.last = rf.first + uint64(n) - 1
		}
	}
}

// FirstIndex implements raft.LogStore.
func (l *RaftLog) FirstIndex() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.first, nil
}

// LastIndex implements raft.LogStore.
func (l *RaftLog) LastIndex() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.last, nil
}

// GetLog implements raft.LogStore.
func (l *RaftLog) GetLog(index uint64, out *raft.Log) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.getLocked(index, out)
}

func (l *RaftLog) getLocked(index uint64, out *raft.Log) error {
	if l.last == 0 || index < l.first || index > l.last {
		return raft.ErrLogNotFound
	}
	rf := l.fileOf(index)
	i := index - rf.first
	end := rf.size
	if i+1 < uint64(len(rf.offsets)) {
		end = rf.offsets[i+1]
	}
	frame := make([]byte, end-rf.offsets[i])
	if _, err := rf.f.ReadAt(frame, rf.offsets[i]); err != nil {
		return fmt.Errorf("shardlog: raft log read %d: %w", index, err)
	}
	payload := frame[raftFrameHeader:]
	if crc32.Checksum(payload, castagnoli) != le.Uint32(frame[4:8]) {
		return fmt.Errorf("%w: entry %d in %s fails its checksum", ErrRaftLogCorrupt, index, rf.path)
	}
	return decodeRaftLog(payload, out)
}

// fileOf returns the file holding index, which must be live.
func (l *RaftLog) fileOf(index uint64) *raftLogFile {
	i := sort.Search(len(l.files), func(i int) bool { return l.files[i].first > index })
	return l.files[i-1]
}

// StoreLog implements raft.LogStore.
func (l *RaftLog) StoreLog(log *raft.Log) error { return l.StoreLogs([]*raft.Log{log}) }

// IsMonotonic implements raft.MonotonicLogStore, and says no, although
// the store keeps no gaps (StoreLogs past the end restarts the log).
// hashicorp/raft v1.7.3 empties a monotonic store after installing a
// snapshot without resetting its own idea of the last entry
// (hashicorp/raft#697): a follower whose log ran past the snapshot then
// matches the leader's next AppendEntries against entries it no longer
// has, stores the ones after them with a hole before, and panics applying
// the hole ("log not found"). A fault run's replica did. Without it, raft
// only compacts a prefix after an install, so the store and raft agree.
func (l *RaftLog) IsMonotonic() bool { return false }

// writeFileSynced writes b to path and makes it and its name durable.
func writeFileSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// StoreLogs implements raft.LogStore: the entries are durable when it
// returns. They must be contiguous. Stored past the end (after a snapshot
// install, everything before is covered by the snapshot) the log restarts
// at the new index; stored over existing entries, those from the first
// new index on are replaced.
func (l *RaftLog) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	for i := 1; i < len(logs); i++ {
		if logs[i].Index != logs[i-1].Index+1 {
			return fmt.Errorf("shardlog: raft log: entries %d and %d are not contiguous", logs[i-1].Index, logs[i].Index)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	next := logs[0].Index
	if l.last != 0 && next <= l.last {
		// Raft stores over entries only after forgetting them (it deletes
		// a conflicting suffix first, and the whole log after a snapshot
		// install); what it forgot goes, as the leader's entries replace it.
		if next <= l.first {
			if err := l.restartAtLocked(next); err != nil {
				return err
			}
		} else if err := l.deleteSuffixLocked(next); err != nil {
			return err
		}
	}
	switch {
	case l.last == 0 || next > l.last+1:
		if err := l.restartAtLocked(next); err != nil {
			return err
		}
	case l.files[len(l.files)-1].size >= l.fileBytes:
		if err := l.newFileLocked(next); err != nil {
			return err
		}
	}
	tail := l.files[len(l.files)-1]
	buf := l.buf[:0]
	offsets := make([]int64, 0, len(logs))
	for _, e := range logs {
		offsets = append(offsets, tail.size+int64(len(buf)))
		buf = appendRaftFrame(buf, e)
	}
	if _, err := tail.f.WriteAt(buf, tail.size); err != nil {
		return l.undoWriteLocked(tail, fmt.Errorf("shardlog: raft log write: %w", err))
	}
	if err := fdatasync(tail.f); err != nil {
		return l.undoWriteLocked(tail, fmt.Errorf("shardlog: raft log sync: %w", err))
	}
	if cap(buf) <= 8<<20 {
		l.buf = buf // keep a buffer of ordinary size for the next call
	}
	tail.size += int64(len(buf))
	tail.offsets = append(tail.offsets, offsets...)
	if l.first == 0 {
		l.first = next
	}
	l.last = logs[len(logs)-1].Index
	return nil
}

// undoWriteLocked cuts a failed write off the file so that a later
// append does not follow garbage; the error is returned either way.
func (l *RaftLog) undoWriteLocked(tail *raftLogFile, err error) error {
	if terr := tail.f.Truncate(tail.size); terr != nil {
		l.logger.Error("shardlog: raft log: cannot cut a failed write", "file", tail.path, "err", terr)
	}
	return err
}

// restartAtLocked makes the log empty and ready to take index next first.
// The old files go first: a crash in between leaves some of them, whose
// entries raft no longer needed and treats as it would any entries it
// meets again after a restart (compacted or replaced).
func (l *RaftLog) restartAtLocked(next uint64) error {
	if len(l.files) == 1 && len(l.files[0].offsets) == 0 && l.files[0].first == next {
		return nil
	}
	if err := l.removeFiles(l.files); err != nil {
		return err
	}
	l.files = nil
	l.first, l.last = 0, 0
	return l.newFileLocked(next)
}

func (l *RaftLog) newFileLocked(first uint64) error {
	path := filepath.Join(l.dir, fmt.Sprintf("%020d%s", first, raftLogExt))
	f, err := openSegFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("shardlog: raft log: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		f.Close()
		return fmt.Errorf("shardlog: raft log: %w", err)
	}
	l.files = append(l.files, &raftLogFile{first: first, f: f, path: path})
	return nil
}

func (l *RaftLog) removeFiles(files []*raftLogFile) error {
	for _, rf := range files {
		rf.f.Close()
		if err := os.Remove(rf.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("shardlog: raft log: %w", err)
		}
	}
	return syncDir(l.dir)
}

// DeleteRange implements raft.LogStore. Raft deletes either a prefix
// (compaction after a snapshot) or a suffix (entries that conflict with
// the leader's); nothing else.
func (l *RaftLog) DeleteRange(min, max uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == 0 || max < l.first || min > l.last || max < min {
		return nil
	}
	switch {
	case min <= l.first && max >= l.last:
		return l.restartAtLocked(l.last + 1)
	case min <= l.first:
		return l.deletePrefixLocked(max + 1)
	case max >= l.last:
		return l.deleteSuffixLocked(min)
	}
	return fmt.Errorf("shardlog: raft log: DeleteRange(%d, %d) inside [%d, %d]", min, max, l.first, l.last)
}

// deletePrefixLocked drops every entry below first: whole files go; the
// file holding first keeps its earlier frames on disk, unused. After a
// restart they are live again, which raft tolerates (they are committed
// entries a snapshot covers).
func (l *RaftLog) deletePrefixLocked(first uint64) error {
	keep := 0
	for keep < len(l.files)-1 && l.files[keep+1].first <= first {
		keep++
	}
	if keep > 0 {
		if err := l.removeFiles(l.files[:keep]); err != nil {
			return err
		}
		l.files = l.files[keep:]
	}
	l.first = first
	return nil
}

// deleteSuffixLocked drops every entry from index on, durably: a crash
// must not bring back entries raft replaced.
func (l *RaftLog) deleteSuffixLocked(index uint64) error {
	at := sort.Search(len(l.files), func(i int) bool { return l.files[i].first > index }) - 1
	if err := l.removeFiles(l.files[at+1:]); err != nil {
		return err
	}
	l.files = l.files[:at+1]
	rf := l.files[at]
	cut := rf.offsets[index-rf.first]
	if err := rf.f.Truncate(cut); err != nil {
		return fmt.Errorf("shardlog: raft log truncate: %w", err)
	}
	if err := rf.f.Sync(); err != nil {
		return fmt.Errorf("shardlog: raft log truncate: %w", err)
	}
	rf.size = cut
	rf.offsets = rf.offsets[:index-rf.first]
	l.last = index - 1
	if l.last < l.first {
		l.first, l.last = 0, 0
	}
	return nil
}

// Close closes the files.
func (l *RaftLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, rf := range l.files {
		errs = append(errs, rf.f.Close())
	}
	l.files = nil
	return errors.Join(errs...)
}

func appendRaftFrame(buf []byte, e *raft.Log) []byte {
	n := raftPayloadFixed + len(e.Extensions) + len(e.Data)
	start := len(buf)
	buf = le.AppendUint32(buf, uint32(n))
	buf = le.AppendUint32(buf, 0) // checksum, filled in below
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
	le.PutUint32(buf[start+4:], crc32.Checksum(buf[start+raftFrameHeader:], castagnoli))
	return buf
}

func decodeRaftLog(p []byte, out *raft.Log) error {
	if len(p) < raftPayloadFixed {
		return fmt.Errorf("%w: short entry", ErrRaftLogCorrupt)
	}
	ext := int(le.Uint32(p[25:29]))
	if raftPayloadFixed+ext > len(p) {
		return fmt.Errorf("%w: extensions overrun the entry", ErrRaftLogCorrupt)
	}
	*out = raft.Log{
		Index: le.Uint64(p[0:8]),
		Term:  le.Uint64(p[8:16]),
		Type:  raft.LogType(p[16]),
	}
	if at := int64(le.Uint64(p[17:25])); at != 0 {
		out.AppendedAt = time.Unix(0, at)
	}
	body := p[raftPayloadFixed:]
	if ext > 0 {
		out.Extensions = body[:ext]
	}
	out.Data = body[ext:]
	return nil
}
