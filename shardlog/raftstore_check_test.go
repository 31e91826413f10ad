package shardlog

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/riffle-streams/riffle/shardlog/wal"
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

// Guarantee: a replica whose entries in the WAL are damaged before its end
// (not a torn last write) does not start its group either, with the same
// error as a damaged raft.db, so the host handles both alike.
func TestShardRefusesDamagedRaftLog(t *testing.T) {
	dir := t.TempDir()
	s := openTestShard(t, dir)
	appendN(t, s, 4, 200, "v")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, walDir, "*.wal"))
	if len(segs) != 1 {
		t.Fatalf("WAL segments %v, want one", segs)
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, []byte("v-100"))
	if at < 0 {
		t.Fatal("record v-100 is not in the WAL")
	}
	flipByte(t, segs[0], int64(at+2))
	_, tr := raft.NewInmemTransport("n1")
	s, err = OpenShard(ShardOptions{GroupID: "g", Dir: dir, LocalID: "n1", Transport: tr, Timing: testTiming,
		Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		s.Close()
		t.Fatal("OpenShard started a group on a damaged raft log")
	}
	if !errors.Is(err, ErrRaftStateDamaged) || !errors.Is(err, wal.ErrCorrupt) {
		t.Fatalf("OpenShard = %v, want ErrRaftStateDamaged and wal.ErrCorrupt", err)
	}
}
