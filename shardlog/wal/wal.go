package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riffle-streams/riffle/shardlog/internal/diskfile"
)

// Options configures a WAL.
type Options struct {
	// Dir holds the segment files.
	Dir string
	// SegmentBytes is the size past which the log starts a new segment;
	// 64 MiB when 0.
	SegmentBytes int64
	// CheckpointAfter is how many segments before the newest may be kept
	// for groups that pin them; past it, at each roll, the groups holding
	// entries in the oldest are checkpointed into the new one. 4 when 0.
	CheckpointAfter int
	// CheckpointBytes caps the entries copied by the checkpoints of one
	// roll; a group whose live log is larger is left to raft's
	// compaction. SegmentBytes/8 when 0.
	CheckpointBytes int64
	// MaxWriteBytes caps one group-commit write; 16 MiB when 0. A single
	// record larger than it is written alone.
	MaxWriteBytes int
	// Logger receives structured logs.
	Logger *slog.Logger
}

// WAL is a node's write-ahead log, shared by its raft groups.
type WAL struct {
	opts   Options
	logger *slog.Logger

	reqs chan *request // unbuffered: a request is either taken or refused
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	groups map[string]*Group
	segs   []*segment // ascending ids; the last one is written to
	// unknownDamaged, once a frame header was found damaged before the
	// log's end, is why a group with no record after the damage is not
	// whole either: its records may have been in the damaged span.
	unknownDamaged error
	closed         bool

	// The writer's own.
	failed      error // a failed write or sync: the log takes no more
	buf         []byte
	lastReclaim time.Time

	stats struct {
		writes, records, bytes, checkpoints, segmentsDeleted atomic.Uint64
	}
}

// segment is one file of the log.
type segment struct {
	id   uint64
	path string
	f    diskfile.File
	size int64 // written and synced; only the writer changes it
}

// request is one record for the writer.
type request struct {
	g      *Group
	typ    byte
	frame  []byte
	bodyAt int         // append, checkpoint: where the entries start in frame
	spans  []entrySpan // append, checkpoint: the entries, from bodyAt
	index  uint64      // truncations
	done   chan error  // nil for the writer's own checkpoints
}

// Errors callers branch on.
var (
	// ErrCorrupt: a record on disk is damaged before the log's end.
	ErrCorrupt = errors.New("wal: log corrupt")
	// ErrClosed: the WAL is closed.
	ErrClosed = errors.New("wal: closed")
)

const segmentExt = ".wal"

// Open opens (or creates) the WAL in opts.Dir, replays it and starts its
// writer. Damage found on the way is kept per group (Group returns it);
// a torn tail of the newest segment, a write a crash cut short and that
// nothing was acknowledged for, is cut off.
func Open(opts Options) (*WAL, error) {
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = 64 << 20
	}
	if opts.CheckpointAfter <= 0 {
		opts.CheckpointAfter = 4
	}
	if opts.CheckpointBytes <= 0 {
		opts.CheckpointBytes = opts.SegmentBytes / 8
	}
	if opts.MaxWriteBytes <= 0 {
		opts.MaxWriteBytes = 16 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	w := &WAL{
		opts:   opts,
		logger: opts.Logger.With("wal", opts.Dir),
		reqs:   make(chan *request),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		groups: map[string]*Group{},
	}
	if err := w.replay(); err != nil {
		w.closeFiles()
		return nil, err
	}
	if len(w.segs) == 0 {
		if err := w.newSegment(1); err != nil {
			return nil, err
		}
	}
	w.lastReclaim = time.Now()
	go w.run()
	return w, nil
}

// Group returns the named group's log, creating an empty one. A group
// whose records on disk are damaged is returned with an error wrapping
// ErrCorrupt: raft must not run on it until it is Reset.
func (w *WAL) Group(name string) (*Group, error) {
	if len(name) == 0 || len(name) > maxNameLen {
		return nil, fmt.Errorf("wal: group name %q: 1 to %d bytes", name, maxNameLen)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, ErrClosed
	}
	g := w.groupLocked(name)
	return g, g.Damaged()
}

func (w *WAL) groupLocked(name string) *Group {
	g := w.groups[name]
	if g == nil {
		g = &Group{w: w, name: name, damaged: w.unknownDamaged}
		w.groups[name] = g
	}
	return g
}

// Drop removes the named group from the WAL durably: its entries are
// dead, and its handles must not be used again.
func (w *WAL) Drop(name string) error {
	g, _ := w.Group(name)
	if g == nil {
		return ErrClosed
	}
	if err := g.Reset(); err != nil {
		return err
	}
	w.mu.Lock()
	if w.groups[name] == g {
		delete(w.groups, name)
	}
	w.mu.Unlock()
	g.mu.Lock()
	g.dropped = true
	g.mu.Unlock()
	return nil
}

// Groups lists the groups the WAL holds entries or damage for.
func (w *WAL) Groups() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	names := make([]string, 0, len(w.groups))
	for name := range w.groups {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Stats is what the WAL has done since it opened, for metrics.
type Stats struct {
	Writes          uint64 // group-commit writes, each one fdatasync
	Records         uint64 // records written
	Bytes           uint64 // bytes written
	Checkpoints     uint64 // groups rewritten to free old segments
	SegmentsDeleted uint64
	Segments        int // on disk now
	Groups          int
}

// Stats returns the WAL's counters.
func (w *WAL) Stats() Stats {
	w.mu.Lock()
	segs, groups := len(w.segs), len(w.groups)
	w.mu.Unlock()
	return Stats{
		Writes:          w.stats.writes.Load(),
		Records:         w.stats.records.Load(),
		Bytes:           w.stats.bytes.Load(),
		Checkpoints:     w.stats.checkpoints.Load(),
		SegmentsDeleted: w.stats.segmentsDeleted.Load(),
		Segments:        segs,
		Groups:          groups,
	}
}

// Close stops the writer and closes the files. Calls still waiting get
// ErrClosed.
func (w *WAL) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	return w.closeFiles()
}

func (w *WAL) closeFiles() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for _, s := range w.segs {
		errs = append(errs, s.f.Close())
	}
	w.segs = nil
	return errors.Join(errs...)
}

// submit hands a record to the writer and waits until it is durable and
// applied.
func (w *WAL) submit(r *request) error {
	r.g.mu.RLock()
	dropped := r.g.dropped
	r.g.mu.RUnlock()
	if dropped {
		return fmt.Errorf("%w: %s", ErrDropped, r.g.name)
	}
	r.done = make(chan error, 1)
	select {
	case w.reqs <- r:
	case <-w.stop:
		return ErrClosed
	}
	return <-r.done
}

// run is the writer: it takes every request waiting, writes them with one
// write and one fdatasync, applies them to their groups in that order and
// answers them.
func (w *WAL) run() {
	defer close(w.done)
	var batch []*request
	for {
		select {
		case r := <-w.reqs:
			batch = append(batch[:0], r)
		case <-w.stop:
			return
		}
		bytes := len(batch[0].frame)
	drain:
		for bytes < w.opts.MaxWriteBytes {
			select {
			case r := <-w.reqs:
				batch = append(batch, r)
				bytes += len(r.frame)
			default:
				break drain
			}
		}
		err := w.commit(batch)
		for _, r := range batch {
			if r.done != nil {
				r.done <- err
			}
		}
		clear(batch)
	}
}

// commit makes batch durable and applies it.
func (w *WAL) commit(batch []*request) error {
	if w.failed != nil {
		return w.failed
	}
	tail := w.segs[len(w.segs)-1]
	rolled, freed := false, false
	if tail.size >= w.opts.SegmentBytes {
		if err := w.newSegment(tail.id + 1); err != nil {
			return err // the old tail still takes writes; nothing failed for good
		}
		tail = w.segs[len(w.segs)-1]
		batch = append(w.checkpointPinned(), batch...)
		rolled = true
	}
	buf := w.buf[:0]
	at := make([]int64, len(batch))
	for i, r := range batch {
		at[i] = tail.size + int64(len(buf))
		buf = append(buf, r.frame...)
	}
	if _, err := tail.f.WriteAt(buf, tail.size); err != nil {
		return w.fail(tail, fmt.Errorf("wal: write %s: %w", tail.path, err))
	}
	if err := diskfile.Fdatasync(tail.f); err != nil {
		return w.fail(tail, fmt.Errorf("wal: sync %s: %w", tail.path, err))
	}
	if cap(buf) <= w.opts.MaxWriteBytes {
		w.buf = buf
	}
	tail.size += int64(len(buf))
	w.stats.writes.Add(1)
	w.stats.records.Add(uint64(len(batch)))
	w.stats.bytes.Add(uint64(len(buf)))
	for i, r := range batch {
		first, locs := r.index, r.locs(tail, at[i])
		if len(locs) > 0 {
			first = r.spans[0].index
		}
		r.g.mu.Lock()
		r.g.applyLocked(r.typ, first, locs)
		r.g.mu.Unlock()
		freed = freed || r.typ != recAppend
	}
	if len(w.segs) > 1 && (rolled || freed && time.Since(w.lastReclaim) >= time.Second) {
		w.reclaim()
	}
	return nil
}

// locs places a written request's entries, its frame at off in seg.
func (r *request) locs(seg *segment, off int64) []loc {
	if len(r.spans) == 0 {
		return nil
	}
	locs := make([]loc, len(r.spans))
	for i, sp := range r.spans {
		locs[i] = loc{seg: seg, off: off + int64(r.bodyAt+sp.off), n: int32(sp.n)}
	}
	return locs
}

// fail cuts a failed write off and refuses every later one: after a
// failed fdatasync the kernel may have dropped the dirty pages, so
// nothing written since the last good sync can be trusted to be there.
func (w *WAL) fail(tail *segment, err error) error {
	if terr := tail.f.Truncate(tail.size); terr != nil {
		w.logger.Error("wal: cannot cut a failed write", "file", tail.path, "err", terr)
	}
	w.logger.Error("wal: write failed; the log takes no more writes", "err", err)
	w.failed = err
	return err
}

// newSegment starts segment id and makes it the one written to.
func (w *WAL) newSegment(id uint64) error {
	path := filepath.Join(w.opts.Dir, fmt.Sprintf("%020d%s", id, segmentExt))
	f, err := diskfile.Open(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	if err := diskfile.SyncDir(w.opts.Dir); err != nil {
		f.Close()
		return fmt.Errorf("wal: %w", err)
	}
	w.mu.Lock()
	w.segs = append(w.segs, &segment{id: id, path: path, f: f})
	w.mu.Unlock()
	return nil
}

// checkpointPinned, once more than CheckpointAfter segments precede the
// newest, builds a checkpoint of the whole groups holding entries in the
// oldest: their live entries, copied, which free that segment once
// written. The writer applies them before anything else it writes with
// them, so no other record of the group can come between the copy and its
// apply.
//
// Only small logs are copied, up to CheckpointBytes in all per roll: a
// group idle with a few entries is what pins old segments for good. A
// busy group's log may span many segments between two raft snapshots
// (hundreds of MiB at full speed); copying it would stall every group's
// writes for seconds, and raft's next snapshot frees those segments
// anyway.
func (w *WAL) checkpointPinned() []*request {
	w.mu.Lock()
	if len(w.segs)-1 <= w.opts.CheckpointAfter {
		w.mu.Unlock()
		return nil
	}
	oldest := w.segs[0].id
	groups := make([]*Group, 0, len(w.groups))
	for _, g := range w.groups {
		groups = append(groups, g)
	}
	w.mu.Unlock()
	var reqs []*request
	budget := w.opts.CheckpointBytes
	for _, g := range groups {
		if r := g.checkpoint(oldest, budget); r != nil {
			reqs = append(reqs, r)
			budget -= int64(len(r.frame))
		}
	}
	w.stats.checkpoints.Add(uint64(len(reqs)))
	return reqs
}

// checkpoint returns a record stating the group's whole live log, when
// its first entry lies in segment oldest, its records are whole and its
// entries take at most budget bytes.
func (g *Group) checkpoint(oldest uint64, budget int64) *request {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if len(g.locs) == 0 || g.locs[0].seg.id != oldest || g.damaged != nil || g.dropped {
		return nil
	}
	var size int64
	for _, l := range g.locs {
		size += int64(l.n)
	}
	if size > budget {
		return nil
	}
	frame := appendFrameHeader(make([]byte, 0, frameFixed+len(g.name)+int(size)), recCheckpoint, g.name)
	bodyAt := len(frame)
	spans := make([]entrySpan, len(g.locs))
	for i, l := range g.locs {
		start := len(frame)
		frame = append(frame, make([]byte, l.n)...)
		if _, err := l.seg.f.ReadAt(frame[start:], l.off); err != nil {
			g.w.logger.Error("wal: cannot read a group's entry to checkpoint it", "group", g.name, "err", err)
			return nil
		}
		spans[i] = entrySpan{index: g.first + uint64(i), off: start - bodyAt, n: int(l.n)}
	}
	finishFrame(frame, 0)
	return &request{g: g, typ: recCheckpoint, frame: frame, bodyAt: bodyAt, spans: spans}
}

// reclaim deletes the segments before the newest that no group has a
// live entry in. A group gains entries only in the newest segment, so
// none can come to need a deleted one.
func (w *WAL) reclaim() {
	w.lastReclaim = time.Now()
	w.mu.Lock()
	groups := make([]*Group, 0, len(w.groups))
	for _, g := range w.groups {
		groups = append(groups, g)
	}
	keep := w.segs[len(w.segs)-1].id
	w.mu.Unlock()
	for _, g := range groups {
		if id, ok := g.oldestSegment(); ok && id < keep {
			keep = id
		}
	}
	w.mu.Lock()
	var gone []*segment
	for len(w.segs) > 1 && w.segs[0].id < keep {
		gone = append(gone, w.segs[0])
		w.segs = w.segs[1:]
	}
	w.mu.Unlock()
	for _, s := range gone {
		s.f.Close()
		if err := os.Remove(s.path); err != nil {
			w.logger.Warn("wal: cannot delete a segment no group needs", "file", s.path, "err", err)
		}
	}
	if len(gone) > 0 {
		w.stats.segmentsDeleted.Add(uint64(len(gone)))
		if err := diskfile.SyncDir(w.opts.Dir); err != nil {
			w.logger.Warn("wal: sync after deleting segments", "err", err)
		}
	}
}
