package shardlog

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

// Guarantee (issue 6): a replica whose raft store (term, vote, log) is
// damaged does not start its raft group, where it could vote having
// forgotten its vote or its log; it fails with ErrRaftStateDamaged and
// leaves the file in place, so that a retry does not start it afresh.
func TestShardRefusesDamagedRaftStore(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		// bbolt would silently fall back to the other, older meta page.
		{"flipped meta page", func(t *testing.T, path string) { flipByte(t, path, 16+40) }},
		{"truncated", func(t *testing.T, path string) { truncateBy(t, path, 1<<14) }},
		{"zeroed start", func(t *testing.T, path string) {
			if err := os.WriteFile(path, make([]byte, 64), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestShard(t, dir)
			appendN(t, s, 4, 200, "v")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, RaftStateFile)
			tc.damage(t, path)
			_, tr := raft.NewInmemTransport("n1")
			s, err := OpenShard(ShardOptions{GroupID: "g", Dir: dir, LocalID: "n1", Transport: tr, Timing: testTiming,
				Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				s.Close()
				t.Fatal("OpenShard started a group on a damaged raft store")
			}
			if !errors.Is(err, ErrRaftStateDamaged) {
				t.Fatalf("OpenShard = %v, want ErrRaftStateDamaged", err)
			}
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("damaged store not left in place: %v", err)
			}
		})
	}
}

// Guarantee: a replica whose raft log file is damaged before its end (not
// a torn last write) does not start its group either, with the same error
// as a damaged raft.db, so the host handles both alike.
func TestShardRefusesDamagedRaftLog(t *testing.T) {
	dir := t.TempDir()
	s := openTestShard(t, dir)
	appendN(t, s, 4, 200, "v")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := OpenRaftLog(filepath.Join(dir, RaftLogDir), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.files) == 0 || len(l.files[0].offsets) < 3 {
		t.Fatalf("the test wants a raft log file with 3 entries or more")
	}
	path, at := l.files[0].path, l.files[0].offsets[1]+raftFrameHeader+2
	l.Close()
	flipByte(t, path, at)
	_, tr := raft.NewInmemTransport("n1")
	s, err = OpenShard(ShardOptions{GroupID: "g", Dir: dir, LocalID: "n1", Transport: tr, Timing: testTiming,
		Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		s.Close()
		t.Fatal("OpenShard started a group on a damaged raft log")
	}
	if !errors.Is(err, ErrRaftStateDamaged) || !errors.Is(err, ErrRaftLogCorrupt) {
		t.Fatalf("OpenShard = %v, want ErrRaftStateDamaged and ErrRaftLogCorrupt", err)
	}
}
