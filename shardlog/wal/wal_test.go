package wal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func openTest(t *testing.T, dir string, opts Options) *WAL {
	t.Helper()
	opts.Dir = dir
	w, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func group(t *testing.T, w *WAL, name string) *Group {
	t.Helper()
	g, err := w.Group(name)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func entry(index, term uint64, size int) *raft.Log {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(index*7 + term + uint64(i))
	}
	return &raft.Log{Index: index, Term: term, Type: raft.LogCommand, Data: data,
		Extensions: []byte(fmt.Sprintf("x%d", index)), AppendedAt: time.Unix(0, int64(index)*1000)}
}

func entries(from, to, term uint64, size int) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, entry(i, term, size))
	}
	return out
}

// expectLog checks that g holds exactly [first, last] with the given terms
// (term(i) for each index), content included.
func expectLog(t *testing.T, g *Group, first, last uint64, term func(uint64) uint64, size int) {
	t.Helper()
	f, _ := g.FirstIndex()
	l, _ := g.LastIndex()
	if f != first || l != last {
		t.Fatalf("group %s holds [%d, %d], want [%d, %d]", g.name, f, l, first, last)
	}
	if last == 0 {
		return
	}
	for i := first; i <= last; i++ {
		var got raft.Log
		if err := g.GetLog(i, &got); err != nil {
			t.Fatalf("group %s entry %d: %v", g.name, i, err)
		}
		want := entry(i, term(i), size)
		if got.Index != i || got.Term != want.Term || !bytes.Equal(got.Data, want.Data) ||
			!bytes.Equal(got.Extensions, want.Extensions) || !got.AppendedAt.Equal(want.AppendedAt) || got.Type != want.Type {
			t.Fatalf("group %s entry %d: got index %d term %d, %d bytes; want term %d", g.name, i, got.Index, got.Term, len(got.Data), want.Term)
		}
	}
	var e raft.Log
	if err := g.GetLog(last+1, &e); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("entry past the end: %v, want ErrLogNotFound", err)
	}
}

func term1(uint64) uint64 { return 1 }

// TestWALStoresAndReplays: entries of several groups written through one
// WAL come back, in and across restarts, with raft's overwrite and delete
// semantics.
func TestWALStoresAndReplays(t *testing.T) {
	dir := t.TempDir()
	w := openTest(t, dir, Options{})
	a, b := group(t, w, "a"), group(t, w, "b")
	if err := a.StoreLogs(entries(1, 10, 1, 100)); err != nil {
		t.Fatal(err)
	}
	if err := b.StoreLogs(entries(5, 8, 1, 3000)); err != nil {
		t.Fatal(err)
	}
	// A conflicting suffix: deleted, then replaced in a later term.
	if err := a.DeleteRange(8, 10); err != nil {
		t.Fatal(err)
	}
	if err := a.StoreLogs(entries(8, 12, 2, 100)); err != nil {
		t.Fatal(err)
	}
	// Compaction of b's prefix.
	if err := b.DeleteRange(5, 6); err != nil {
		t.Fatal(err)
	}
	aTerm := func(i uint64) uint64 {
		if i >= 8 {
			return 2
		}
		return 1
	}
	expectLog(t, a, 1, 12, aTerm, 100)
	expectLog(t, b, 7, 8, term1, 3000)
	w.Close()

	w = openTest(t, dir, Options{})
	a, b = group(t, w, "a"), group(t, w, "b")
	expectLog(t, a, 1, 12, aTerm, 100)
	expectLog(t, b, 7, 8, term1, 3000)
	// Stored past the end (after a snapshot install): the log restarts.
	if err := b.StoreLogs(entries(100, 101, 3, 10)); err != nil {
		t.Fatal(err)
	}
	expectLog(t, b, 100, 101, func(uint64) uint64 { return 3 }, 10)
	// Stored before the first entry: restarts there too.
	if err := a.StoreLogs(entries(0+1, 2, 5, 100)); err != nil {
		t.Fatal(err)
	}
	expectLog(t, a, 1, 2, func(uint64) uint64 { return 5 }, 100)
	if err := a.StoreLogs([]*raft.Log{entry(3, 5, 1), entry(5, 5, 1)}); err == nil {
		t.Fatal("entries with a gap were stored")
	}
	w.Close()
	w = openTest(t, dir, Options{})
	expectLog(t, group(t, w, "b"), 100, 101, func(uint64) uint64 { return 3 }, 10)
	expectLog(t, group(t, w, "a"), 1, 2, func(uint64) uint64 { return 5 }, 100)
}

// TestWALGroupCommit: concurrent StoreLogs calls of many groups share
// writes (one fdatasync each), which is the point of the shared log.
func TestWALGroupCommit(t *testing.T) {
	w := openTest(t, t.TempDir(), Options{})
	const groups, per = 32, 50
	var wg sync.WaitGroup
	errs := make(chan error, groups)
	for gi := range groups {
		g := group(t, w, fmt.Sprintf("g%d", gi))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= per; i++ {
				if err := g.StoreLogs(entries(i, i, 1, 512)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := w.Stats()
	if st.Records != groups*per {
		t.Fatalf("%d records written, want %d", st.Records, groups*per)
	}
	if st.Writes*2 > st.Records {
		t.Fatalf("%d writes for %d records: concurrent calls were not committed together", st.Writes, st.Records)
	}
	t.Logf("%d records in %d writes", st.Records, st.Writes)
}

// model is what a raft log store must hold: index -> term.
type model struct {
	first, last uint64
	terms       map[uint64]uint64
}

func (m *model) store(from, to, term uint64) {
	if m.last == 0 || from < m.first || from > m.last+1 {
		m.first, m.terms = from, map[uint64]uint64{}
	}
	for i := from; i <= m.last; i++ {
		delete(m.terms, i)
	}
	for i := from; i <= to; i++ {
		m.terms[i] = term
	}
	m.last = to
}

func (m *model) deletePrefix(to uint64) {
	if m.last == 0 {
		return
	}
	for i := m.first; i <= to && i <= m.last; i++ {
		delete(m.terms, i)
	}
	if to >= m.last {
		m.first, m.last = 0, 0
	} else if to >= m.first {
		m.first = to + 1
	}
}

func (m *model) deleteSuffix(from uint64) {
	if m.last == 0 || from > m.last {
		return
	}
	for i := from; i <= m.last; i++ {
		delete(m.terms, i)
	}
	if from <= m.first {
		m.first, m.last = 0, 0
	} else {
		m.last = from - 1
	}
}

// TestWALMatchesModel drives random raft-like operations over several
// groups, with small segments so that rolls, checkpoints of pinned groups
// and segment deletion happen all the time, and restarts at random: after
// every step and every restart each group holds exactly what the model
// says. Seeds are printed; RIFFLE_WAL_SEED is not needed to repeat one:
// each subtest is its seed.
func TestWALMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed*31))
			dir := t.TempDir()
			// Checkpoints may copy any log here: the model's groups are
			// compacted at random, not as raft bounds them.
			opts := Options{SegmentBytes: 16 << 10, CheckpointAfter: 2, CheckpointBytes: 1 << 20}
			w := openTest(t, dir, opts)
			const ngroups = 5
			models := make([]*model, ngroups)
			groups := make([]*Group, ngroups)
			terms := make([]uint64, ngroups)
			var total statsTotal
			for i := range models {
				models[i] = &model{terms: map[uint64]uint64{}}
				groups[i] = group(t, w, fmt.Sprintf("group-%d", i))
				terms[i] = 1
			}
			check := func(step int) {
				t.Helper()
				for i, g := range groups {
					m := models[i]
					f, _ := g.FirstIndex()
					l, _ := g.LastIndex()
					if f != m.first || l != m.last {
						t.Fatalf("step %d group %d: [%d, %d], model [%d, %d]", step, i, f, l, m.first, m.last)
					}
					for idx := m.first; m.last > 0 && idx <= m.last; idx++ {
						var e raft.Log
						if err := g.GetLog(idx, &e); err != nil {
							t.Fatalf("step %d group %d entry %d: %v", step, i, idx, err)
						}
						if want := entry(idx, m.terms[idx], int(idx%300)); e.Term != m.terms[idx] || !bytes.Equal(e.Data, want.Data) {
							t.Fatalf("step %d group %d entry %d: term %d, model %d", step, i, idx, e.Term, m.terms[idx])
						}
					}
				}
			}
			for step := range 3000 {
				i := rng.IntN(ngroups)
				g, m := groups[i], models[i]
				// Group 0 stays idle after a start, to pin old segments.
				if i == 0 && m.last > 0 && rng.IntN(10) > 0 {
					continue
				}
				switch op := rng.IntN(20); {
				case op < 12: // append at the end
					from := m.last + 1
					if m.last == 0 {
						from = uint64(1 + rng.IntN(5))
					}
					n := uint64(1 + rng.IntN(4))
					var logs []*raft.Log
					for idx := from; idx < from+n; idx++ {
						logs = append(logs, entry(idx, terms[i], int(idx%300)))
					}
					if err := g.StoreLogs(logs); err != nil {
						t.Fatal(err)
					}
					m.store(from, from+n-1, terms[i])
				case op < 14 && m.last > 0: // a conflict: replace a suffix in a new term
					from := m.first + uint64(rng.IntN(int(m.last-m.first+1)))
					terms[i]++
					if rng.IntN(2) == 0 {
						if err := g.DeleteRange(from, m.last); err != nil {
							t.Fatal(err)
						}
						m.deleteSuffix(from)
					}
					to := from + uint64(rng.IntN(3))
					var logs []*raft.Log
					for idx := from; idx <= to; idx++ {
						logs = append(logs, entry(idx, terms[i], int(idx%300)))
					}
					if err := g.StoreLogs(logs); err != nil {
						t.Fatal(err)
					}
					m.store(from, to, terms[i])
				case op < 17 && m.last > 0: // compaction
					to := m.first + uint64(rng.IntN(int(m.last-m.first+1)))
					if err := g.DeleteRange(m.first, to); err != nil {
						t.Fatal(err)
					}
					m.deletePrefix(to)
				case op == 17 && m.last > 0: // snapshot install: the log restarts past its end
					from := m.last + uint64(2+rng.IntN(10))
					if err := g.StoreLogs([]*raft.Log{entry(from, terms[i], int(from%300))}); err != nil {
						t.Fatal(err)
					}
					m.store(from, from, terms[i])
				case op == 18: // restart
					total.add(w.Stats())
					w.Close()
					w = openTest(t, dir, opts)
					for j := range groups {
						groups[j] = group(t, w, fmt.Sprintf("group-%d", j))
					}
				}
				if step%50 == 0 {
					check(step)
				}
			}
			check(-1)
			total.add(w.Stats())
			w.Close()
			w = openTest(t, dir, opts)
			for j := range groups {
				groups[j] = group(t, w, fmt.Sprintf("group-%d", j))
			}
			check(-2)
			names, _ := segmentNames(dir)
			t.Logf("%d writes, %d checkpoints, %d segments deleted; %d segment files now", total.Writes, total.Checkpoints, total.SegmentsDeleted, len(names))
			if total.Checkpoints == 0 || total.SegmentsDeleted == 0 {
				t.Fatalf("the run never checkpointed or freed a segment: it did not test them")
			}
			if len(names) > opts.CheckpointAfter+3 {
				t.Fatalf("%d segment files kept; old segments are not freed", len(names))
			}
		})
	}
}

// statsTotal sums Stats over the opens of one test, which each start at 0.
type statsTotal struct{ Writes, Checkpoints, SegmentsDeleted uint64 }

func (t *statsTotal) add(s Stats) {
	t.Writes += s.Writes
	t.Checkpoints += s.Checkpoints
	t.SegmentsDeleted += s.SegmentsDeleted
}

// TestWALReclaimsSegmentsAnIdleGroupPins: a group that stores one entry
// and is never compacted must not keep the log growing while others write.
func TestWALReclaimsSegmentsAnIdleGroupPins(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 64 << 10, CheckpointAfter: 2}
	w := openTest(t, dir, opts)
	idle, busy := group(t, w, "idle"), group(t, w, "busy")
	if err := idle.StoreLogs(entries(1, 3, 1, 1000)); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 2000; i++ {
		if err := busy.StoreLogs(entries(i, i, 1, 1000)); err != nil {
			t.Fatal(err)
		}
		if i > 10 {
			if err := busy.DeleteRange(i-10, i-10); err != nil {
				t.Fatal(err)
			}
		}
	}
	names, _ := segmentNames(dir)
	st := w.Stats()
	if len(names) > opts.CheckpointAfter+3 || st.Checkpoints == 0 {
		t.Fatalf("%d segment files, %d checkpoints: the idle group's entries pin the log", len(names), st.Checkpoints)
	}
	expectLog(t, idle, 1, 3, term1, 1000)
	w.Close()
	w = openTest(t, dir, opts)
	expectLog(t, group(t, w, "idle"), 1, 3, term1, 1000)
	expectLog(t, group(t, w, "busy"), 1991, 2000, term1, 1000)
}

// TestWALLeavesLargeLogsToCompaction: a group whose live log spans many
// segments (a busy shard between two raft snapshots) is not copied at a
// roll, which would hold every group's writes while it is, and the
// segments it pins go once it is compacted.
func TestWALLeavesLargeLogsToCompaction(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 64 << 10, CheckpointAfter: 2}
	w := openTest(t, dir, opts)
	busy := group(t, w, "busy")
	for i := uint64(1); i <= 600; i++ {
		if err := busy.StoreLogs(entries(i, i, 1, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	st := w.Stats()
	if st.Checkpoints != 0 || st.Segments < 8 {
		t.Fatalf("%d checkpoints, %d segments: a 600 KiB live log was copied at a roll (budget %d)", st.Checkpoints, st.Segments, opts.SegmentBytes/8)
	}
	if err := busy.DeleteRange(1, 590); err != nil { // raft's snapshot
		t.Fatal(err)
	}
	for i := uint64(601); i <= 700; i++ { // rolls, which reclaim
		if err := busy.StoreLogs(entries(i, i, 1, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if st := w.Stats(); st.Segments > opts.CheckpointAfter+2 {
		t.Fatalf("%d segments after the compaction", st.Segments)
	}
	expectLog(t, busy, 591, 700, term1, 1000)
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := segmentNames(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range names {
		names[i] = filepath.Join(dir, names[i])
	}
	return names
}

// TestWALCutsTornTail: a write torn by a crash at the end of the newest
// segment (part of a frame) is cut; everything before it stays.
func TestWALCutsTornTail(t *testing.T) {
	for _, cut := range []int{1, 9, 30, 200} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			dir := t.TempDir()
			w := openTest(t, dir, Options{})
			g := group(t, w, "g")
			if err := g.StoreLogs(entries(1, 5, 1, 100)); err != nil {
				t.Fatal(err)
			}
			if err := g.StoreLogs(entries(6, 6, 1, 300)); err != nil {
				t.Fatal(err)
			}
			w.Close()
			files := segmentFiles(t, dir)
			path := files[len(files)-1]
			st, _ := os.Stat(path)
			if err := os.Truncate(path, st.Size()-int64(cut)); err != nil {
				t.Fatal(err)
			}
			w = openTest(t, dir, Options{})
			g = group(t, w, "g")
			expectLog(t, g, 1, 5, term1, 100)
			if err := g.StoreLogs(entries(6, 7, 1, 100)); err != nil {
				t.Fatal(err)
			}
			w.Close()
			w = openTest(t, dir, Options{})
			expectLog(t, group(t, w, "g"), 1, 7, term1, 100)
		})
	}
}

// flipByte flips one byte of path at off.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestWALDamagedEntryDamagesItsGroup: a flipped byte inside one group's
// entry, before the log's end, marks that group damaged (its replica must
// stay stopped) and leaves the others whole; a reset makes it usable again.
func TestWALDamagedEntryDamagesItsGroup(t *testing.T) {
	dir := t.TempDir()
	w := openTest(t, dir, Options{})
	a, b := group(t, w, "a"), group(t, w, "b")
	if err := a.StoreLogs(entries(1, 3, 1, 500)); err != nil {
		t.Fatal(err)
	}
	if err := b.StoreLogs(entries(1, 3, 1, 500)); err != nil {
		t.Fatal(err)
	}
	// Where a's second entry's data lies: read it back from the index.
	a.mu.RLock()
	at := a.locs[1].off + int64(entryHeader+entryFixed+10)
	a.mu.RUnlock()
	w.Close()
	flipByte(t, segmentFiles(t, dir)[0], at)

	w = openTest(t, dir, Options{})
	if _, err := w.Group("a"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged group opened with %v, want ErrCorrupt", err)
	}
	expectLog(t, group(t, w, "b"), 1, 3, term1, 500)
	ga, _ := w.Group("a")
	if err := ga.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := ga.StoreLogs(entries(10, 11, 2, 5)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w = openTest(t, dir, Options{})
	expectLog(t, group(t, w, "a"), 10, 11, func(uint64) uint64 { return 2 }, 5)
}

// TestWALDamagedHeaderDamagesEveryGroup: a damaged frame header before the
// log's end hides which group's records were there, so every group, even
// one the log has not met yet, is damaged until reset.
func TestWALDamagedHeaderDamagesEveryGroup(t *testing.T) {
	dir := t.TempDir()
	w := openTest(t, dir, Options{})
	a, b := group(t, w, "a"), group(t, w, "b")
	if err := a.StoreLogs(entries(1, 3, 1, 500)); err != nil {
		t.Fatal(err)
	}
	if err := b.StoreLogs(entries(1, 3, 1, 500)); err != nil {
		t.Fatal(err)
	}
	if err := a.StoreLogs(entries(4, 4, 1, 500)); err != nil {
		t.Fatal(err)
	}
	b.mu.RLock()
	bFrame := b.locs[0].off - int64(frameFixed+len("b")) // b's frame header
	b.mu.RUnlock()
	w.Close()
	flipByte(t, segmentFiles(t, dir)[0], bFrame+5) // its length

	w = openTest(t, dir, Options{})
	for _, name := range []string{"a", "b", "never-seen"} {
		if _, err := w.Group(name); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("group %s opened with %v, want ErrCorrupt", name, err)
		}
	}
	g, _ := w.Group("never-seen")
	if err := g.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := g.StoreLogs(entries(1, 1, 1, 5)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w = openTest(t, dir, Options{})
	expectLog(t, group(t, w, "never-seen"), 1, 1, term1, 5)
	if _, err := w.Group("b"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("group b after a restart: %v, want ErrCorrupt", err)
	}
}

// TestWALDrop: a dropped group's entries are gone for good, and its old
// handle refuses writes.
func TestWALDrop(t *testing.T) {
	dir := t.TempDir()
	w := openTest(t, dir, Options{})
	g := group(t, w, "gone")
	if err := g.StoreLogs(entries(1, 4, 1, 10)); err != nil {
		t.Fatal(err)
	}
	if err := w.Drop("gone"); err != nil {
		t.Fatal(err)
	}
	if err := g.StoreLogs(entries(5, 5, 1, 10)); !errors.Is(err, ErrDropped) {
		t.Fatalf("write through a dropped handle: %v", err)
	}
	if names := w.Groups(); len(names) != 0 {
		t.Fatalf("groups after drop: %v", names)
	}
	w.Close()
	w = openTest(t, dir, Options{})
	if names := w.Groups(); len(names) != 0 {
		t.Fatalf("groups after drop and restart: %v", names)
	}
	expectLog(t, group(t, w, "gone"), 0, 0, term1, 0)
}

// TestWALClosedRefuses: calls after Close fail instead of hanging.
func TestWALClosedRefuses(t *testing.T) {
	w := openTest(t, t.TempDir(), Options{})
	g := group(t, w, "g")
	w.Close()
	if err := g.StoreLogs(entries(1, 1, 1, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("StoreLogs after Close: %v", err)
	}
	if _, err := w.Group("h"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Group after Close: %v", err)
	}
}
