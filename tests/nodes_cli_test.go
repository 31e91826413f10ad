package tests

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// TestCLINodes checks the node verbs against the real binary: `node list`
// shows the one node alive, leading the metadata and its stream's shard;
// draining the last node is refused (exit 1) and changes nothing; an
// unknown node is not found (exit 3).
func TestCLINodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	dir := filepath.Join(t.TempDir(), "data")
	addr := freePort(t)
	startProcess(t, dir, addr)
	if _, code := cli(t, addr, "", "stream", "create", "orders", "--shards", "2"); code != 0 {
		t.Fatalf("stream create exited %d", code)
	}
	type nodeRow struct {
		NodeID       string `json:"node_id"`
		Address      string `json:"address"`
		State        string `json:"state"`
		Replicas     int    `json:"replicas"`
		Leaders      int    `json:"leaders"`
		MetadataRole string `json:"metadata_role"`
	}
	list := func() []nodeRow {
		t.Helper()
		out, code := cli(t, addr, "", "node", "list", "--json")
		if code != 0 {
			t.Fatalf("node list exited %d", code)
		}
		var got struct{ Nodes []nodeRow }
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("node list printed %q: %v", out, err)
		}
		return got.Nodes
	}
	nodes := list()
	if len(nodes) != 1 || nodes[0].NodeID != "n1" || nodes[0].Address != addr || nodes[0].State != "alive" ||
		nodes[0].Replicas != 2 || nodes[0].Leaders != 2 || nodes[0].MetadataRole != "leader" {
		t.Fatalf("node list: %+v", nodes)
	}
	if _, code := cli(t, addr, "", "node", "drain", "n1"); code != 1 {
		t.Errorf("draining the last node exited %d, want 1", code)
	}
	if _, code := cli(t, addr, "", "node", "drain", "n7"); code != 3 {
		t.Errorf("draining an unknown node exited %d, want 3", code)
	}
	if nodes := list(); nodes[0].State != "alive" {
		t.Errorf("after the refused drain: %+v", nodes)
	}
	if out, code := cli(t, addr, "", "node", "list"); code != 0 || len(out) == 0 {
		t.Errorf("node list (table) exited %d: %q", code, out)
	}
}
