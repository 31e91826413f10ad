package cluster

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

type bufferSink struct {
	bytes.Buffer
}

func (*bufferSink) ID() string    { return "test" }
func (*bufferSink) Cancel() error { return nil }
func (*bufferSink) Close() error  { return nil }

// A replica restored from a snapshot knows the index of the last command in
// it, so WaitApplied on that replica waits for exactly what it lacks.
func TestMetaSnapshotCarriesAppliedIndex(t *testing.T) {
	f := newMetaFSM()
	cmd, err := json.Marshal(&Command{CreateStream: &CreateStreamCmd{Name: "s", ShardCount: 1, Mode: ModeProvisioned, RetentionHours: 24, CreatedAt: time.Unix(1, 0), Placement: [][]string{{"n1"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if res := f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: cmd}); res != nil {
		t.Fatalf("apply: %v", res)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink bufferSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}

	g := newMetaFSM()
	if err := g.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	if got := g.appliedIndex(); got != 7 {
		t.Fatalf("restored applied index %d, want 7", got)
	}
	if _, ok := g.current().Streams["s"]; !ok {
		t.Fatal("restored state lacks stream s")
	}
}
