package shardlog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func raftEntry(i uint64) *raft.Log {
	return &raft.Log{Index: i, Term: 1 + i/10, Type: raft.LogCommand,
		Data: []byte(fmt.Sprintf("entry-%d", i)), Extensions: []byte{byte(i)},
		AppendedAt: time.Unix(1700000000, int64(i))}
}

func storeRange(t *testing.T, l raft.LogStore, from, to uint64) {
	t.Helper()
	var batch []*raft.Log
	for i := from; i <= to; i++ {
		batch = append(batch, raftEntry(i))
	}
	if err := l.StoreLogs(batch); err != nil {
		t.Fatalf("StoreLogs(%d..%d): %v", from, to, err)
	}
}

// checkRange checks that the log holds exactly first..last, each entry as
// stored.
func checkRange(t *testing.T, l raft.LogStore, first, last uint64) {
	t.Helper()
	if f, _ := l.FirstIndex(); f != first {
		t.Fatalf("FirstIndex %d, want %d", f, first)
	}
	if la, _ := l.LastIndex(); la != last {
		t.Fatalf("LastIndex %d, want %d", la, last)
	}
	if first == 0 {
		return
	}
	for i := first; i <= last; i++ {
		var got raft.Log
		if err := l.GetLog(i, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		want := raftEntry(i)
		if got.Index != i || got.Term != want.Term || got.Type != want.Type || !bytes.Equal(got.Data, want.Data) ||
			!bytes.Equal(got.Extensions, want.Extensions) || !got.AppendedAt.Equal(want.AppendedAt) {
			t.Fatalf("GetLog(%d) = %+v, want %+v", i, got, *want)
		}
	}
	var none raft.Log
	if err := l.GetLog(last+1, &none); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog past the end: %v, want ErrLogNotFound", err)
	}
	if err := l.GetLog(first-1, &none); first > 1 && !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog before the start: %v, want ErrLogNotFound", err)
	}
}

func openTestRaftLog(t *testing.T, dir string, fileBytes int64) *RaftLog {
	t.Helper()
	l, err := OpenRaftLog(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fileBytes > 0 {
		l.fileBytes = fileBytes
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func reopen(t *testing.T, l *RaftLog, fileBytes int64) *RaftLog {
	t.Helper()
	l.Close()
	return openTestRaftLog(t, l.dir, fileBytes)
}

// TestRaftLogStoresAndSurvivesRestart: what StoreLogs returned from is
// there, unchanged, after the store is reopened (raft's durability
// assumption), across file rolls.
func TestRaftLogStoresAndSurvivesRestart(t *testing.T) {
	l := openTestRaftLog(t, t.TempDir(), 200)
	checkRange(t, l, 0, 0)
	storeRange(t, l, 1, 1)
	for i := uint64(2); i <= 40; i += 3 {
		storeRange(t, l, i, i+2)
	}
	checkRange(t, l, 1, 40)
	if len(l.files) < 3 {
		t.Fatalf("%d files; the test wants several", len(l.files))
	}
	l = reopen(t, l, 200)
	checkRange(t, l, 1, 40)
	storeRange(t, l, 41, 50)
	checkRange(t, l, 1, 50)
}

// TestRaftLogRefusesHoles: entries stay contiguous.
func TestRaftLogRefusesHoles(t *testing.T) {
	l := openTestRaftLog(t, t.TempDir(), 0)
	storeRange(t, l, 1, 5)
	if err := l.StoreLogs([]*raft.Log{raftEntry(6), raftEntry(8)}); err == nil {
		t.Fatal("a batch with a hole was accepted")
	}
	checkRange(t, l, 1, 5)
}

// TestRaftLogStoreOverReplaces: entries stored over existing ones replace
// them and everything after, durably (bolt's overwrite, minus the stale
// entries it would leave above).
func TestRaftLogStoreOverReplaces(t *testing.T) {
	l := openTestRaftLog(t, t.TempDir(), 0)
	storeRange(t, l, 1, 9)
	storeRange(t, l, 4, 6)
	checkRange(t, l, 1, 6)
	storeRange(t, l, 1, 2)
	checkRange(t, l, 1, 2)
	l = reopen(t, l, 0)
	checkRange(t, l, 1, 2)
}

// TestRaftLogDeleteRange covers raft's two uses: compaction of a prefix
// after a snapshot, and removal of a conflicting suffix, which must stay
// removed after a restart.
func TestRaftLogDeleteRange(t *testing.T) {
	l := openTestRaftLog(t, t.TempDir(), 150)
	storeRange(t, l, 1, 30)
	if err := l.DeleteRange(1, 17); err != nil {
		t.Fatal(err)
	}
	checkRange(t, l, 18, 30)
	if err := l.DeleteRange(25, 30); err != nil {
		t.Fatal(err)
	}
	checkRange(t, l, 18, 24)
	storeRange(t, l, 25, 27) // the leader's entries replace the removed ones
	l = reopen(t, l, 150)
	f, _ := l.FirstIndex()
	if f > 18 {
		t.Fatalf("after restart FirstIndex %d; entries from 18 on were live", f)
	}
	checkRange(t, l, f, 27)
	if err := l.DeleteRange(20, 22); err == nil {
		t.Fatal("deleting from the middle was accepted")
	}
	if err := l.DeleteRange(f, 27); err != nil {
		t.Fatal(err)
	}
	checkRange(t, l, 0, 0)
	storeRange(t, l, 28, 29)
	l = reopen(t, l, 150)
	checkRange(t, l, 28, 29)
}

// TestRaftLogRestartsAfterSnapshotInstall: a follower that installs a
// snapshot past its log's end stores the next entries after a gap; the log
// restarts there, and a crash before the old files were deleted ends the
// same way.
func TestRaftLogRestartsAfterSnapshotInstall(t *testing.T) {
	dir := t.TempDir()
	l := openTestRaftLog(t, dir, 0)
	storeRange(t, l, 1, 10)
	storeRange(t, l, 100, 105)
	checkRange(t, l, 100, 105)
	l = reopen(t, l, 0)
	checkRange(t, l, 100, 105)

	// The crash case: an old file left before a newer one with a gap.
	old := openTestRaftLog(t, filepath.Join(t.TempDir(), "old"), 0)
	storeRange(t, old, 1, 10)
	old.Close()
	name := fmt.Sprintf("%020d%s", 1, raftLogExt)
	if err := os.Rename(filepath.Join(old.dir, name), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	l = reopen(t, l, 0)
	checkRange(t, l, 100, 105)
	if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file before the gap is still there: %v", err)
	}
}

// TestRaftLogCutsATornTail: a crash in the middle of a write leaves a
// partial last frame, which raft never acknowledged; reopening cuts it and
// keeps every complete entry.
func TestRaftLogCutsATornTail(t *testing.T) {
	l := openTestRaftLog(t, t.TempDir(), 0)
	storeRange(t, l, 1, 8)
	path, size := l.files[0].path, l.files[0].size
	lastFrame := l.files[0].offsets[7]
	l.Close()
	for _, cut := range []int64{size - 3, lastFrame + 5, lastFrame + 1} {
		if err := os.Truncate(path, cut); err != nil {
			t.Fatal(err)
		}
		l = openTestRaftLog(t, l.dir, 0)
		checkRange(t, l, 1, 7)
		storeRange(t, l, 8, 8)
		checkRange(t, l, 1, 8)
		l.Close()
	}
	// Zeroes after the last frame (a file extended but never written).
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 4096))
	f.Close()
	l = openTestRaftLog(t, l.dir, 0)
	checkRange(t, l, 1, 8)
}

// TestRaftLogRefusesCorruption: a damaged frame with valid frames after it
// (or in any file but the last) is not a torn write; cutting there would
// drop entries raft acknowledged, so the log refuses to open.
func TestRaftLogRefusesCorruption(t *testing.T) {
	for _, tc := range []struct {
		name  string
		file  int
		frame int
	}{
		{"middle of the last file", -1, 0},
		{"first frame of an older file", 0, 0},
		{"last frame of an older file", 0, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := openTestRaftLog(t, t.TempDir(), 300)
			for i := uint64(1); i <= 30; i++ {
				storeRange(t, l, i, i)
			}
			if len(l.files) < 2 {
				t.Fatal("the test wants two files or more")
			}
			fi := tc.file
			if fi < 0 {
				fi = len(l.files) - 1
			}
			rf := l.files[fi]
			if len(rf.offsets) < 2 {
				t.Fatal("the test wants two frames or more in the file")
			}
			fr := tc.frame
			if fr < 0 {
				fr = len(rf.offsets) - 1
			}
			path, at := rf.path, rf.offsets[fr]+raftFrameHeader+3
			l.Close()
			flipByte(t, path, at)
			_, err := OpenRaftLog(l.dir, nil)
			if !errors.Is(err, ErrRaftLogCorrupt) {
				t.Fatalf("open after a bit flip: %v, want ErrRaftLogCorrupt", err)
			}
		})
	}
}

// TestRaftLogReadDetectsCorruption: an entry damaged after the log was
// opened is never handed to raft.
func TestRaftLogReadDetectsCorruption(t *testing.T) {
	l := openTestRaftLog(t, t.TempDir(), 0)
	storeRange(t, l, 1, 5)
	flipByte(t, l.files[0].path, l.files[0].offsets[2]+raftFrameHeader+20)
	var e raft.Log
	if err := l.GetLog(3, &e); !errors.Is(err, ErrRaftLogCorrupt) {
		t.Fatalf("GetLog of a damaged entry: %v, want ErrRaftLogCorrupt", err)
	}
	if err := l.GetLog(4, &e); err != nil {
		t.Fatalf("GetLog of an intact entry: %v", err)
	}
}

func BenchmarkRaftLogStore(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 256 << 10} {
		data := bytes.Repeat([]byte{'x'}, size)
		b.Run(fmt.Sprintf("raftlog/%dKiB", size>>10), func(b *testing.B) {
			l, err := OpenRaftLog(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				if err := l.StoreLogs([]*raft.Log{{Index: uint64(i + 1), Term: 1, Data: data}}); err != nil {
					b.Fatal(err)
				}
				if i > 128 && i%64 == 0 {
					l.DeleteRange(uint64(i-127), uint64(i-64))
				}
			}
		})
		b.Run(fmt.Sprintf("bolt/%dKiB", size>>10), func(b *testing.B) {
			s, err := OpenRaftStore(filepath.Join(b.TempDir(), "raft.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				if err := s.StoreLogs([]*raft.Log{{Index: uint64(i + 1), Term: 1, Data: data}}); err != nil {
					b.Fatal(err)
				}
				if i > 128 && i%64 == 0 {
					s.DeleteRange(uint64(i-127), uint64(i-64))
				}
			}
		})
	}
}
