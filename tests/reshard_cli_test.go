package tests

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIReshard checks the resharding verbs against the real binary: a
// split at the default key (the middle of the range) and a merge of the
// children each return once the stream is ACTIVE again and print the
// lineage (parents' ending sequence numbers, children's parent ids), and
// writes go on through the children.
func TestCLIReshard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := filepath.Join(t.TempDir(), "data")
	addr := freePort(t)
	startProcess(t, dir, addr)
	if _, code := cli(t, addr, "", "stream", "create", "orders", "--shards", "1"); code != 0 {
		t.Fatalf("stream create exited %d", code)
	}
	put := func(n int) {
		t.Helper()
		var lines []string
		for i := range n {
			lines = append(lines, fmt.Sprintf("order-%d", i))
		}
		if _, code := cli(t, addr, strings.Join(lines, "\n")+"\n", "put", "--stream", "orders", "--random-keys"); code != 0 {
			t.Fatalf("put exited %d", code)
		}
	}
	type shard struct {
		ShardID        string `json:"shard_id"`
		Parent         string `json:"parent_shard_id"`
		Adjacent       string `json:"adjacent_parent_shard_id"`
		StartingHash   string `json:"starting_hash_key"`
		EndingSequence string `json:"ending_sequence_number"`
	}
	type stream struct {
		Status string  `json:"stream_status"`
		Open   int     `json:"open_shard_count"`
		Shards []shard `json:"shards"`
	}
	run := func(args ...string) stream {
		t.Helper()
		out, code := cli(t, addr, "", append(args, "--json")...)
		if code != 0 {
			t.Fatalf("riffle %v exited %d", args, code)
		}
		var s stream
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("riffle %v printed %q: %v", args, out, err)
		}
		return s
	}
	put(100)
	s := run("shard", "split", "--stream", "orders", "--shard", "shardId-000000000000")
	if s.Status != "ACTIVE" || s.Open != 2 || len(s.Shards) != 3 || s.Shards[0].EndingSequence == "" ||
		s.Shards[1].Parent != "shardId-000000000000" || s.Shards[2].StartingHash != "170141183460469231731687303715884105728" {
		t.Fatalf("after split: %+v", s)
	}
	put(100)
	s = run("shard", "merge", "--stream", "orders", "--shard", "shardId-000000000001", "--adjacent", "shardId-000000000002")
	if s.Status != "ACTIVE" || s.Open != 1 || len(s.Shards) != 4 || s.Shards[3].Parent != "shardId-000000000001" ||
		s.Shards[3].Adjacent != "shardId-000000000002" || s.Shards[1].EndingSequence == "" || s.Shards[2].EndingSequence == "" {
		t.Fatalf("after merge: %+v", s)
	}
	put(10)
	if _, code := cli(t, addr, "", "shard", "split", "--stream", "orders", "--shard", "shardId-000000000000"); code == 0 {
		t.Error("splitting a closed shard succeeded")
	}
}
