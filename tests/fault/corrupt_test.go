package fault

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/riffle-streams/riffle/shardlog"
)

// TestCorruptSegments checks the corrupt-files nemesis's file damage on a
// directory laid out like a node's: it touches only segment .log files
// with records, never their headers nor other files, damages as many as
// asked (each one flipped or truncated, as described), and the same seed
// damages the same files the same way.
func TestCorruptSegments(t *testing.T) {
	build := func() (string, map[string][]byte) {
		dir := t.TempDir()
		files := map[string][]byte{}
		for _, g := range []string{"s1-0", "s1-1"} {
			for i, size := range []int{4000, 700, segmentHeaderBytes} {
				name := filepath.Join("shards", g, "segments", strings.Repeat("0", 19)+string(rune('0'+i))+".log")
				files[name] = bytes.Repeat([]byte{byte(i + 1)}, size)
				files[strings.TrimSuffix(name, ".log")+".index"] = bytes.Repeat([]byte{9}, 120)
			}
			files[filepath.Join("shards", g, "raft.db")] = bytes.Repeat([]byte{7}, 8192)
		}
		files[filepath.Join("meta", "raft.db")] = bytes.Repeat([]byte{7}, 8192)
		for name, b := range files {
			path := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir, files
	}

	dir, before := build()
	did, err := corruptSegments(dir, rand.New(rand.NewPCG(7, 7)), 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(did) != 3 {
		t.Fatalf("damaged %d files, want 3: %v", len(did), did)
	}
	changed := 0
	for name, want := range before {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(got, want) {
			continue
		}
		changed++
		if !strings.HasSuffix(name, ".log") || len(want) <= segmentHeaderBytes {
			t.Fatalf("%s damaged: only segment logs with records may be", name)
		}
		if !bytes.Equal(got[:segmentHeaderBytes], want[:segmentHeaderBytes]) {
			t.Fatalf("%s: header damaged", name)
		}
		line := ""
		for _, d := range did {
			if strings.HasPrefix(d, name+":") {
				line = d
			}
		}
		switch {
		case strings.Contains(line, "truncated"):
			if len(got) >= len(want) || !bytes.Equal(got, want[:len(got)]) {
				t.Fatalf("%s reported truncated, but is %d of %d bytes and differs", name, len(got), len(want))
			}
		case strings.Contains(line, "flipped"):
			if len(got) != len(want) {
				t.Fatalf("%s reported flipped, but changed size", name)
			}
		default:
			t.Fatalf("%s damaged without a report line in %v", name, did)
		}
	}
	if changed != 3 {
		t.Fatalf("%d files changed, want 3 (%v)", changed, did)
	}

	again, _ := build()
	did2, err := corruptSegments(again, rand.New(rand.NewPCG(7, 7)), 3)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(did, "\n") != strings.Join(did2, "\n") {
		t.Fatalf("same seed, different damage:\n%v\n%v", did, did2)
	}

	empty := t.TempDir()
	if did, err := corruptSegments(empty, rand.New(rand.NewPCG(1, 1)), 3); err != nil || len(did) != 0 {
		t.Fatalf("no shards: %v, %v", did, err)
	}
}

// TestCorruptRaftLog checks the raft-log damage on logs written by the
// real store: a replica with a single entry is left alone (its only
// frame is the tail), and a damaged log is one the store refuses to open
// as corrupt, rather than cutting it as a torn tail.
func TestCorruptRaftLog(t *testing.T) {
	dir := t.TempDir()
	write := func(group string, entries int) {
		l, err := shardlog.OpenRaftLog(filepath.Join(dir, "shards", group, shardlog.RaftLogDir), nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= entries; i++ {
			if err := l.StoreLogs([]*raft.Log{{Index: uint64(i), Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 100)}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write("s1-0", 1)
	rng := rand.New(rand.NewPCG(3, 3))
	if group, did, err := corruptRaftLog(dir, rng); err != nil || group != "" {
		t.Fatalf("a one-entry log was damaged: %q %q %v", group, did, err)
	}
	write("s1-1", 5)
	group, did, err := corruptRaftLog(dir, rng)
	if err != nil || group != "s1-1" {
		t.Fatalf("corruptRaftLog = %q %q %v, want group s1-1", group, did, err)
	}
	if _, err := shardlog.OpenRaftLog(filepath.Join(dir, "shards", "s1-1", shardlog.RaftLogDir), nil); !errors.Is(err, shardlog.ErrRaftLogCorrupt) {
		t.Fatalf("opening the damaged log (%s): %v, want ErrRaftLogCorrupt", did, err)
	}
	if l, err := shardlog.OpenRaftLog(filepath.Join(dir, "shards", "s1-0", shardlog.RaftLogDir), nil); err != nil {
		t.Fatalf("the untouched log does not open: %v", err)
	} else {
		l.Close()
	}
}

// TestCorruptRaftStore checks the raft-store damage on stores written by
// the real store: every damage it does, meta-page flips in either page and
// cuts alike, is one the node refuses to open (ErrRaftStateDamaged) rather
// than one bbolt would open on an older meta page; and a node with no
// store (frozen replicas only) is left alone.
func TestCorruptRaftStore(t *testing.T) {
	if group, did, err := corruptRaftStore(t.TempDir(), rand.New(rand.NewPCG(1, 1))); err != nil || group != "" {
		t.Fatalf("no stores: %q %q %v", group, did, err)
	}
	seen := map[string]bool{}
	for seed := range uint64(24) {
		dir := t.TempDir()
		path := filepath.Join(dir, "shards", "s1-2", shardlog.RaftStateFile)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		store, err := shardlog.OpenRaftStore(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range uint64(20) { // several transactions, so both meta pages are written
			if err := store.SetUint64([]byte("CurrentTerm"), i+1); err != nil {
				t.Fatal(err)
			}
		}
		if err := store.Set([]byte("LastVoteCand"), []byte("n1")); err != nil {
			t.Fatal(err)
		}
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
		group, did, err := corruptRaftStore(dir, rand.New(rand.NewPCG(seed, 7)))
		if err != nil || group != "s1-2" {
			t.Fatalf("seed %d: corruptRaftStore = %q %q %v, want group s1-2", seed, group, did, err)
		}
		switch {
		case strings.Contains(did, "meta page 0"):
			seen["page 0"] = true
		case strings.Contains(did, "meta page 1"):
			seen["page 1"] = true
		case strings.Contains(did, "cut"):
			seen["cut"] = true
		}
		if s, err := shardlog.OpenCheckedRaftStore(path); !errors.Is(err, shardlog.ErrRaftStateDamaged) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("seed %d: opening the damaged store (%s): %v, want ErrRaftStateDamaged", seed, did, err)
		}
	}
	if len(seen) != 3 {
		t.Errorf("24 seeds did only %v of: a flip in page 0, in page 1, a cut", seen)
	}
}
