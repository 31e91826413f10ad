//go:build faultsync

package shardlog

import (
	"context"
	"testing"
	"time"
)

// TestUnsyncedWritesLostInCrash checks the faultsync build's premise on a
// bare Log: what was synced survives a simulated kill -9, what was not is
// gone, and the Log reopens on what is left.
func TestUnsyncedWritesLostInCrash(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLog(LogOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, _, err := l.Append(uint64(i+1), 1000, []Entry{{PartitionKey: "k", Data: []byte{byte(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	for i := 10; i < 20; i++ {
		if _, _, err := l.Append(uint64(i+1), 1000, []Entry{{PartitionKey: "k", Data: []byte{byte(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.NextOffset(); got != 20 {
		t.Fatalf("before the crash NextOffset %d, want 20", got)
	}
	crashUnsynced(dir)
	l.Close()
	l, err = OpenLog(LogOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.NextOffset(); got != 10 {
		t.Fatalf("after the crash NextOffset %d, want the 10 synced records", got)
	}
}

// TestShardCommittedRecordsSurviveUnsyncedCrash checks contract 2 (no
// acknowledged record is lost) against a crash that drops every segment
// write not fsynced: the writes span many snapshots (every 128 entries,
// each letting raft drop all but 64 entries), so a snapshot whose
// segments were not durable leaves a hole only raft could have filled.
// After the crash the replica must restart with every acknowledged record
// at its offset, replayed from raft's log where the segments lost it.
func TestShardCommittedRecordsSurviveUnsyncedCrash(t *testing.T) {
	dir := t.TempDir()
	s := openTestShard(t, dir)
	acked := appendN(t, s, 1, 300, "a") // one writer: one raft entry each
	if err := s.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	more := appendN(t, s, 4, 100, "b")
	for off, v := range more {
		acked[off] = v
	}
	crashUnsynced(dir)
	s.Close() // raft and bolt stop; the segment files are already gone
	s = openTestShard(t, dir)
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for s.Log().NextOffset() < uint64(len(acked)) {
		select {
		case <-s.Log().Changed():
		case <-ctx.Done():
			t.Fatalf("after the crash the log reached only offset %d of %d", s.Log().NextOffset(), len(acked))
		}
	}
	checkHolds(t, s.Log(), acked)
}

// TestRaftLogUnsyncedCrashKeepsStoredEntries checks contract 1 at the raft
// log: every entry StoreLogs returned for survives a kill -9 (simulated by
// dropping whatever was not synced), across file rolls and a suffix
// delete, because each StoreLogs syncs before it returns.
func TestRaftLogUnsyncedCrashKeepsStoredEntries(t *testing.T) {
	dir := t.TempDir()
	l := openTestRaftLog(t, dir, 200)
	storeRange(t, l, 1, 20)
	if err := l.DeleteRange(15, 20); err != nil {
		t.Fatal(err)
	}
	storeRange(t, l, 15, 30)
	crashUnsynced(dir)
	l.Close()
	l = openTestRaftLog(t, dir, 200)
	checkRange(t, l, 1, 30)
}
