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
	"github.com/riffle-streams/riffle/shardlog/wal"
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

// TestCorruptWAL checks the raft-log damage on a WAL written by the real
// one: a group whose only record is the log's last frame is left alone
// (it is the tail), as are a group without a raft store and one
// checkpointed since; the damage it does is one the WAL reports as the
// chosen group's, on its next open, and no other group's.
func TestCorruptWAL(t *testing.T) {
	dir := t.TempDir()
	open := func() *wal.WAL {
		w, err := wal.Open(wal.Options{Dir: filepath.Join(dir, "wal")})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	write := func(w *wal.WAL, group string, from, to int) {
		g, err := w.Group(group)
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i <= to; i++ {
			if err := g.StoreLogs([]*raft.Log{{Index: uint64(i), Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 100)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	replica := func(group string) {
		if err := os.MkdirAll(filepath.Join(dir, "shards", group), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "shards", group, shardlog.RaftStateFile), []byte("store"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(3, 3))
	w := open()
	write(w, "s9-0", 1, 3) // no raft store: a removed replica's
	write(w, "s1-0", 1, 1)
	w.Close()
	replica("s1-0")
	if group, did, err := corruptWAL(dir, rng); err != nil || group != "" {
		t.Fatalf("the tail or a removed replica's group was damaged: %q %q %v", group, did, err)
	}

	w = open()
	write(w, "s1-1", 1, 4)
	g, err := w.Group("s1-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Reset(); err != nil { // checkpointed: its appends are behind it
		t.Fatal(err)
	}
	write(w, "s1-2", 1, 4)
	write(w, "s1-0", 2, 2) // the tail, after s1-2's records
	w.Close()
	for _, r := range []string{"s1-1", "s1-2"} {
		replica(r)
	}
	group, did, err := corruptWAL(dir, rng)
	if err != nil || (group != "s1-0" && group != "s1-2") {
		t.Fatalf("corruptWAL = %q %q %v, want group s1-0 or s1-2", group, did, err)
	}
	w = open()
	defer w.Close()
	for _, name := range []string{"s1-0", "s1-1", "s1-2", "s9-0"} {
		_, err := w.Group(name)
		if name == group && !errors.Is(err, wal.ErrCorrupt) {
			t.Errorf("the damaged group %s (%s) opens: %v, want ErrCorrupt", name, did, err)
		}
		if name != group && err != nil {
			t.Errorf("group %s was not damaged (%s) but opens with %v", name, did, err)
		}
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
