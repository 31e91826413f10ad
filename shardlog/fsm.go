package shardlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/riffle-streams/riffle/shardlog/wal"
)

// fsm applies a shard group's committed entries to its segment log. The log
// is the state: it survives restarts on its own, so entries at or below the
// log's LastApplied (replayed by raft after a restart) are skipped, and a
// snapshot is only a manifest of what the segments hold.
type fsm struct {
	log    *Log
	logger *slog.Logger
	// seal, once set, refuses the append entries after it.
	seal *sealState

	// fetch copies records the log lacks from peers (catchup.go); nil when
	// there are none to ask.
	fetch Fetcher
	// leader names the group's leader as far as this replica knows.
	leader func() raft.ServerID
	// ctx bounds fetches; it ends when the shard closes.
	ctx context.Context

	// raftLog is the group's log store, which a snapshot install is
	// checked against; nil for a frozen replica.
	raftLog *wal.Group
	// dir is the replica's directory, where a refused install is recorded.
	dir string
	// installing is the snapshot raft opened to restore (snapshotStore).
	installing atomic.Pointer[raft.SnapshotMeta]
	// reopen asks the owner to restart the replica: an install the log
	// conflicts with needs raft to start again on a reconciled log.
	reopen func(error)
}

// applyResult is what Apply returns to the leader's future.
type applyResult struct {
	first uint64
	ts    int64
}

func (f *fsm) Apply(l *raft.Log) interface{} {
	if l.Type != raft.LogCommand {
		return nil
	}
	if isSeal(l.Data) {
		sl, err := f.seal.set(Seal{Index: l.Index, Offset: f.log.NextOffset()})
		if err != nil {
			// Replicas must agree on where the shard ends: stop loudly, and
			// raft replays the seal after a restart.
			panic(fmt.Sprintf("shardlog: seal at entry %d: %v", l.Index, err))
		}
		return sl
	}
	if l.Index <= f.log.LastApplied() {
		return nil // replayed after a restart: already in the segments
	}
	if sl := f.seal.get(); sl != nil && l.Index > sl.Index {
		// Committed after the seal: every replica refuses it the same way,
		// so the writers are told it was not applied.
		return ErrShardSealed
	}
	ts, entries, err := decodeAppend(l.Data)
	if err != nil {
		// Every replica committed this entry; skipping it on one would make
		// replicas diverge. Stop loudly instead.
		panic(fmt.Sprintf("shardlog: undecodable entry %d: %v", l.Index, err))
	}
	first, effective, err := f.log.Append(l.Index, ts, entries)
	if err != nil {
		// A replica that cannot write its committed log must not go on
		// serving: on restart raft replays the entry from its durable log.
		panic(fmt.Sprintf("shardlog: append of entry %d: %v", l.Index, err))
	}
	return applyResult{first: first, ts: effective}
}

// manifest is the whole content of a shard snapshot: which records the
// segments held when it was taken. It never copies record data.
type manifest struct {
	Version     int           `json:"version"`
	LastApplied uint64        `json:"last_applied"`
	NextOffset  uint64        `json:"next_offset"`
	TrimOffset  uint64        `json:"trim_offset"`
	Segments    []SegmentInfo `json:"segments"`
	// Seal is set once the shard is sealed; a replica restored from the
	// snapshot records it too.
	Seal *Seal `json:"seal,omitempty"`
}

// snapshotStore tells the state machine which snapshot raft opens: raft
// opens the one to restore right before calling Restore, on the same
// goroutine, and Restore's reader does not say.
type snapshotStore struct {
	raft.SnapshotStore
	machine *fsm
}

func (s snapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.SnapshotStore.Open(id)
	if err == nil {
		s.machine.installing.Store(meta)
	}
	return meta, rc, err
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{log: f.log, m: manifest{
		Version:     1,
		LastApplied: f.log.LastApplied(),
		NextOffset:  f.log.NextOffset(),
		TrimOffset:  f.log.TrimOffset(),
		Segments:    f.log.Segments(),
		Seal:        f.seal.get(),
	}}, nil
}

// Restore is called when a leader sends a snapshot to this replica, which
// means raft no longer holds the entries this replica has not applied. The
// manifest names the records the log must hold; the ones it lacks are
// fetched from peers (catchup.go). A failure leaves raft to retry the
// install.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var m manifest
	if err := json.NewDecoder(rc).Decode(&m); err != nil {
		return fmt.Errorf("shardlog: read snapshot manifest: %w", err)
	}
	// Refused before anything changes: raft then leaves its log and state
	// as they were, and the replica restarts on a log reconciled with the
	// snapshot, which is stored by now (reconcileSnapshot).
	if meta := f.installing.Swap(nil); meta != nil && f.raftLog != nil {
		if err := checkInstall(f.raftLog, f.dir, meta.Index, meta.Term); err != nil {
			f.logger.Warn("shardlog: snapshot install refused", "snapshot", meta.ID, "err", err)
			if errors.Is(err, ErrLogConflictsWithSnapshot) && f.reopen != nil {
				f.reopen(err) // the next open drops the conflicting log
			}
			return err
		}
	}
	if err := f.catchUp(m, "snapshot install"); err != nil {
		return err
	}
	return f.restoreSeal(m)
}

// restoreSeal records a snapshot's seal on a replica that lacks it.
func (f *fsm) restoreSeal(m manifest) error {
	if m.Seal == nil || f.seal == nil {
		return nil
	}
	_, err := f.seal.set(*m.Seal)
	return err
}

type fsmSnapshot struct {
	log *Log
	m   manifest
}

// Persist makes the segments durable up to the manifest before writing it:
// once the manifest is stored raft may compact the entries it covers.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.log.Sync(); err != nil {
		sink.Cancel()
		return fmt.Errorf("shardlog: sync before snapshot: %w", err)
	}
	if err := json.NewEncoder(sink).Encode(s.m); err != nil {
		sink.Cancel()
		return fmt.Errorf("shardlog: write manifest: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
