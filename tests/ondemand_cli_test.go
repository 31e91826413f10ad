package tests

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// TestCLIStreamMode checks the capacity-mode verbs against the real
// binary: `stream create --on-demand` makes an ON_DEMAND stream of 4
// shards, `shard split` on it fails, `stream mode NAME provisioned` and
// back return once the stream is ACTIVE and print it with its shards
// kept, and a bad mode is a usage error.
func TestCLIStreamMode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := filepath.Join(t.TempDir(), "data")
	addr := freePort(t)
	startProcess(t, dir, addr)
	type stream struct {
		Status string `json:"stream_status"`
		Mode   string `json:"stream_mode"`
		Open   int    `json:"open_shard_count"`
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
	if s := run("stream", "create", "clicks", "--on-demand"); s.Status != "ACTIVE" || s.Mode != "ON_DEMAND" || s.Open != 4 {
		t.Fatalf("after create --on-demand: %+v", s)
	}
	if _, code := cli(t, addr, "", "shard", "split", "--stream", "clicks", "--shard", "shardId-000000000000"); code == 0 {
		t.Errorf("shard split on an ON_DEMAND stream exited %d", code)
	}
	if s := run("stream", "mode", "clicks", "provisioned"); s.Status != "ACTIVE" || s.Mode != "PROVISIONED" || s.Open != 4 {
		t.Fatalf("after mode provisioned: %+v", s)
	}
	if s := run("stream", "mode", "clicks", "on-demand"); s.Status != "ACTIVE" || s.Mode != "ON_DEMAND" || s.Open != 4 {
		t.Fatalf("after mode on-demand: %+v", s)
	}
	if _, code := cli(t, addr, "", "stream", "mode", "clicks", "sideways"); code == 0 {
		t.Error("a bad mode succeeded")
	}
}
