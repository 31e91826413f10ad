package shardlog

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/riffle-streams/riffle/shardlog/wal"
)

// testGroup is a replica's WAL group in a directory of its own, for the
// install rules and the import of old logs.
type testGroup struct {
	*wal.Group
	w   *wal.WAL
	dir string
}

func openTestGroup(t *testing.T, dir string) *testGroup {
	t.Helper()
	w, err := wal.Open(wal.Options{Dir: filepath.Join(dir, walDir), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	g, err := w.Group("g")
	if err != nil {
		t.Fatal(err)
	}
	return &testGroup{Group: g, w: w, dir: dir}
}

func (g *testGroup) reopen(t *testing.T) *testGroup {
	t.Helper()
	if err := g.w.Close(); err != nil {
		t.Fatal(err)
	}
	return openTestGroup(t, g.dir)
}

func (g *testGroup) checkInstall(index, term uint64) error {
	return checkInstall(g.Group, g.dir, index, term)
}

func (g *testGroup) reconcile(index, term uint64) error {
	return reconcileSnapshot(g.Group, g.dir, slog.New(slog.DiscardHandler), index, term)
}

// TestImportOldLogs: a replica that an earlier version left with its
// entries in raft.db, or in a RaftLog directory of its own, finds them in
// its WAL group after the import, and the old copy is gone; an import
// repeated (a crash before the old copy went) gives the same log.
func TestImportOldLogs(t *testing.T) {
	dir := t.TempDir()
	store, err := OpenRaftStore(filepath.Join(dir, RaftStateFile))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var batch []*raft.Log
	for i := uint64(5); i <= 12; i++ {
		batch = append(batch, raftEntry(i))
	}
	if err := store.StoreLogs(batch); err != nil {
		t.Fatal(err)
	}
	g := openTestGroup(t, dir)
	if err := importOldLog(store, dir, g.Group, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if last, _ := store.LastIndex(); last != 0 {
		t.Fatalf("raft.db still holds entries up to %d", last)
	}
	checkRange(t, g.reopen(t), 5, 12)

	// A RaftLog directory, with a recorded install conflict, imported twice.
	dir = t.TempDir()
	old := openTestRaftLog(t, filepath.Join(dir, RaftLogDir), 300)
	storeRange(t, old, 3, 40)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if err := writeFileSynced(filepath.Join(dir, RaftLogDir, installConflictFile), make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	store2, err := OpenRaftStore(filepath.Join(dir, RaftStateFile))
	if err != nil {
		t.Fatal(err)
	}
	defer store2.Close()
	g = openTestGroup(t, dir)
	storeRange(t, g, 3, 20) // what an import a crash cut short left
	if err := importOldLog(store2, dir, g.Group, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	checkRange(t, g.reopen(t), 3, 40)
	if _, err := os.Stat(filepath.Join(dir, RaftLogDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old raft log is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, installConflictFile)); err != nil {
		t.Fatalf("the recorded install conflict did not move to the replica's directory: %v", err)
	}
}

// TestCheckInstall: before a snapshot install, a log that ends at
// or before the snapshot needs nothing; one holding the snapshot's last
// entry with its term keeps that entry and the ones after it through the
// compaction raft does next (so the leader's next AppendEntries, whose
// previous entry it is, matches), while a suffix deletion still goes
// through; a conflicting term, or a log that goes past the snapshot's end
// without holding it, is ErrLogConflictsWithSnapshot. The store is not
// monotonic, so raft compacts a prefix rather than emptying it
// (hashicorp/raft#697).
func TestCheckInstall(t *testing.T) {
	l := openTestGroup(t, t.TempDir())
	if l.IsMonotonic() {
		t.Fatal("the WAL group says it is monotonic: raft would empty it on installs")
	}
	storeRange(t, l, 1, 40) // terms 1..5: entry i has term 1+i/10
	if err := l.checkInstall(40, 5); err != nil {
		t.Fatalf("install at the log's end: %v", err)
	}
	if err := l.checkInstall(55, 6); err != nil {
		t.Fatalf("install past the log's end: %v", err)
	}
	if err := l.checkInstall(25, 9); !errors.Is(err, ErrLogConflictsWithSnapshot) {
		t.Fatalf("install whose end has another term here: %v, want ErrLogConflictsWithSnapshot", err)
	}
	if err := l.checkInstall(25, 3); err != nil {
		t.Fatalf("install whose end matches: %v", err)
	}
	// raft's compaction after the install: up to the snapshot's end.
	if err := l.DeleteRange(1, 25); err != nil {
		t.Fatal(err)
	}
	checkRange(t, l, 25, 40)
	storeRange(t, l, 41, 41) // stored entries end the install's hold
	if err := l.DeleteRange(25, 30); err != nil {
		t.Fatal(err)
	}
	checkRange(t, l, 31, 41)
	if err := l.checkInstall(20, 3); !errors.Is(err, ErrLogConflictsWithSnapshot) {
		t.Fatalf("install ending before the log's first entry, which goes past it: %v, want ErrLogConflictsWithSnapshot", err)
	}
	if err := l.checkInstall(30, 3); !errors.Is(err, ErrLogConflictsWithSnapshot) {
		t.Fatalf("install ending right before the log, which goes past it: %v, want ErrLogConflictsWithSnapshot", err)
	}

	// A conflicting suffix still goes whole while an install holds its end.
	if err := l.checkInstall(35, 4); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteRange(31, 41); err != nil {
		t.Fatal(err)
	}
	checkRange(t, l, 0, 0)
}

// TestReconcileSnapshot: at start, against the latest snapshot, a
// log holding the snapshot's end with its term is kept whole; one holding
// it with another term is dropped, ready to take the entry after the
// snapshot; one that ends before it is left; one that starts after the
// entry following it has a hole raft would panic on, and is corrupt.
func TestReconcileSnapshot(t *testing.T) {
	l := openTestGroup(t, t.TempDir())
	storeRange(t, l, 1, 40)
	if err := l.reconcile(25, 3); err != nil {
		t.Fatal(err)
	}
	checkRange(t, l, 1, 40)
	if err := l.reconcile(60, 7); err != nil {
		t.Fatal(err)
	}
	checkRange(t, l, 1, 40)
	if err := l.reconcile(25, 8); err != nil {
		t.Fatal(err)
	}
	checkRange(t, l, 0, 0)
	storeRange(t, l, 26, 30)
	l = l.reopen(t)
	checkRange(t, l, 26, 30)
	if err := l.reconcile(25, 8); err != nil {
		t.Fatalf("a log starting right after the snapshot: %v", err)
	}
	if err := l.reconcile(20, 2); !errors.Is(err, ErrRaftStateDamaged) {
		t.Fatalf("a log starting after a hole past the snapshot: %v, want ErrRaftStateDamaged", err)
	}
	checkRange(t, l, 26, 30)
}

// TestReconcileDropsLogThatConflictedWithInstall: an install the log
// conflicted with is recorded on disk, and the next open's reconcile drops
// the log (its entries past the snapshot were never committed), once; a
// log that holds the snapshot's end with its term by then is kept.
func TestReconcileDropsLogThatConflictedWithInstall(t *testing.T) {
	l := openTestGroup(t, t.TempDir())
	storeRange(t, l, 1, 40)
	if err := l.checkInstall(25, 9); !errors.Is(err, ErrLogConflictsWithSnapshot) {
		t.Fatal(err)
	}
	checkRange(t, l, 1, 40) // nothing changes while raft runs
	l = l.reopen(t)
	if err := l.reconcile(25, 9); err != nil {
		t.Fatal(err)
	}
	checkRange(t, l, 0, 0)
	storeRange(t, l, 26, 30)
	l = l.reopen(t)
	if err := l.reconcile(25, 9); err != nil {
		t.Fatal(err)
	}
	checkRange(t, l, 26, 30) // recorded once: the next opens keep the log

	// A log that starts right after the snapshot's end and goes past it,
	// refused (it could never match the leader's next AppendEntries, whose
	// previous entry is that end): dropped at the next open too.
	if err := l.checkInstall(25, 3); !errors.Is(err, ErrLogConflictsWithSnapshot) {
		t.Fatal(err)
	}
	l = l.reopen(t)
	if err := l.reconcile(25, 3); err != nil {
		t.Fatal(err)
	}
	checkRange(t, l, 0, 0)
}
