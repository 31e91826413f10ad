package fault

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
