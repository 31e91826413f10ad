package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/riffle-streams/riffle/shardlog"
)

// MetaOptions configures the metadata raft group.
type MetaOptions struct {
	// Dir holds the group's raft.db and snapshots.
	Dir string
	// LocalID is this node's raft server id.
	LocalID raft.ServerID
	// Transport carries the group's raft RPCs.
	Transport raft.Transport
	// Bootstrap is the initial configuration, applied only when Dir holds no
	// raft state yet; empty for a node that joins an existing cluster.
	Bootstrap []raft.Server
	// Timing tunes the raft group.
	Timing shardlog.RaftTiming
	// Logger receives structured logs.
	Logger *slog.Logger
}

// Meta is this node's replica of the metadata group. Every node holds one,
// so routing always reads a local copy.
type Meta struct {
	raft  *raft.Raft
	store *raftboltdb.BoltStore
	fsm   *metaFSM
}

// OpenMeta opens or creates the metadata replica in opts.Dir.
func OpenMeta(opts MetaOptions) (*Meta, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	// A damaged metadata store stops the node from starting: the metadata
	// replica would otherwise vote with a lost term, vote or log (see
	// shardlog.OpenCheckedRaftStore), and without it the node cannot serve.
	store, err := shardlog.OpenCheckedRaftStore(filepath.Join(opts.Dir, shardlog.RaftStateFile))
	if err != nil {
		return nil, fmt.Errorf("cluster: open metadata raft log: %w", err)
	}
	hlog := shardlog.NewHCLogger("meta-raft", opts.Logger)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(opts.Dir, 2, hlog)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: metadata snapshots: %w", err)
	}
	cfg := raft.DefaultConfig()
	cfg.LocalID = opts.LocalID
	cfg.Logger = hlog
	cfg.SnapshotThreshold = 1024
	opts.Timing.Apply(cfg)

	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: inspect metadata raft state: %w", err)
	}
	if !has && len(opts.Bootstrap) > 0 {
		if err := raft.BootstrapCluster(cfg, store, store, snaps, opts.Transport, raft.Configuration{Servers: opts.Bootstrap}); err != nil {
			store.Close()
			return nil, fmt.Errorf("cluster: bootstrap metadata group: %w", err)
		}
	}
	f := newMetaFSM()
	r, err := raft.NewRaft(cfg, f, store, store, snaps, opts.Transport)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: start metadata raft: %w", err)
	}
	return &Meta{raft: r, store: store, fsm: f}, nil
}

// State is the latest applied metadata. Never modify it.
func (m *Meta) State() *State { return m.fsm.current() }

// Changed is closed at the next applied change after the call.
func (m *Meta) Changed() <-chan struct{} { return m.fsm.changed() }

// IsLeader reports whether this replica leads the metadata group.
func (m *Meta) IsLeader() bool { return m.raft.State() == raft.Leader }

// Raft exposes the group for membership changes and observation.
func (m *Meta) Raft() *raft.Raft { return m.raft }

// Propose replicates cmd and returns the raft index it was applied at and
// the state machine's verdict. Only the leader proposes (ErrNotLeader
// elsewhere); bounded by ctx.
func (m *Meta) Propose(ctx context.Context, cmd Command) (uint64, error) {
	if !m.IsLeader() {
		return 0, ErrNotLeader
	}
	data, err := json.Marshal(&cmd)
	if err != nil {
		return 0, fmt.Errorf("cluster: encode command: %w", err)
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := m.raft.Apply(data, timeout)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return 0, ErrNotLeader
		}
		if err != nil {
			return 0, fmt.Errorf("cluster: metadata commit: %w", err)
		}
		if rerr, ok := f.Response().(error); ok {
			return f.Index(), rerr
		}
		return f.Index(), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("cluster: metadata commit: %w", ctx.Err())
	}
}

// WaitApplied blocks until this replica has applied the entry at index.
func (m *Meta) WaitApplied(ctx context.Context, index uint64) error {
	for {
		changed := m.fsm.changed()
		// Not raft.AppliedIndex: raft advances it when it hands entries
		// to the FSM, before they are applied, so a lookup could still
		// miss what the leader has acknowledged.
		if m.fsm.appliedIndex() >= index {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("cluster: waiting for metadata index %d: %w", index, ctx.Err())
		}
	}
}

// WaitLeader blocks until the group has a leader or ctx ends.
func (m *Meta) WaitLeader(ctx context.Context) error {
	for {
		if _, id := m.raft.LeaderWithID(); id != "" {
			return nil
		}
		ch := make(chan raft.Observation, 1)
		o := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
			_, ok := o.Data.(raft.LeaderObservation)
			return ok
		})
		m.raft.RegisterObserver(o)
		if _, id := m.raft.LeaderWithID(); id != "" {
			m.raft.DeregisterObserver(o)
			return nil
		}
		select {
		case <-ch:
			m.raft.DeregisterObserver(o)
		case <-ctx.Done():
			m.raft.DeregisterObserver(o)
			return ctx.Err()
		}
	}
}

// Close stops the group.
func (m *Meta) Close() error {
	err := m.raft.Shutdown().Error()
	if cerr := m.store.Close(); err == nil {
		err = cerr
	}
	return err
}

// metaFSM applies commands to the State by copy-on-write.
type metaFSM struct {
	mu      sync.Mutex
	state   *State
	applied uint64 // index of the last command applied, accepted or not
	notify  chan struct{}
}

func newMetaFSM() *metaFSM {
	return &metaFSM{state: &State{Streams: map[string]*Stream{}}, notify: make(chan struct{})}
}

func (f *metaFSM) current() *State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *metaFSM) changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notify
}

func (f *metaFSM) appliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// publish installs the state after the entry at index; watchers wake even
// when a refused command left the state as it was.
func (f *metaFSM) publish(st *State, index uint64) {
	st.indexRoutes()
	f.mu.Lock()
	f.state = st
	f.applied = max(f.applied, index)
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
}

func (f *metaFSM) Apply(l *raft.Log) interface{} {
	if l.Type != raft.LogCommand {
		return nil
	}
	var cmd Command
	if err := json.Unmarshal(l.Data, &cmd); err != nil {
		return fmt.Errorf("%w: undecodable command at %d: %v", ErrInvalidCommand, l.Index, err)
	}
	next, err := f.current().apply(&cmd)
	f.publish(next, l.Index)
	return err
}

// snapshotState is the snapshot's form: the state and the index of the last
// command in it, so that a replica restored from it knows how far it has
// applied (WaitApplied).
type snapshotState struct {
	*State
	AppliedIndex uint64 `json:"applied_index,omitempty"`
}

func (f *metaFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	snap := snapshotState{State: f.state, AppliedIndex: f.applied}
	f.mu.Unlock()
	data, err := json.Marshal(snap)
	if err != nil {
		return nil, err
	}
	return metaSnapshot(data), nil
}

func (f *metaFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st := &State{}
	snap := snapshotState{State: st}
	if err := json.NewDecoder(rc).Decode(&snap); err != nil {
		return fmt.Errorf("cluster: decode metadata snapshot: %w", err)
	}
	if st.Streams == nil {
		st.Streams = map[string]*Stream{}
	}
	for _, s := range st.Streams {
		for _, sh := range s.Shards {
			if err := sh.parse(); err != nil {
				return fmt.Errorf("cluster: metadata snapshot: stream %s: %w", s.Name, err)
			}
		}
	}
	f.mu.Lock()
	st.indexRoutes()
	f.state, f.applied = st, snap.AppliedIndex
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
	return nil
}

type metaSnapshot []byte

func (s metaSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s metaSnapshot) Release() {}

// appliedAfterBarrier, on the leader, waits until every committed command
// is applied and returns the index of the last one applied: a follower that
// has applied that far holds every acknowledged change.
func (m *Meta) appliedAfterBarrier(timeout time.Duration) (uint64, error) {
	if err := m.raft.Barrier(timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, ErrNotLeader
		}
		return 0, fmt.Errorf("cluster: metadata barrier: %w", err)
	}
	return m.fsm.appliedIndex(), nil
}
