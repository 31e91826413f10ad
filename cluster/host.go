package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/riffle-streams/riffle/shardlog"
)

// HostOptions configures the part of a node that runs raft groups.
type HostOptions struct {
	// NodeID is this node's id and raft server id.
	NodeID string
	// DataDir holds meta/ and shards/<group>/.
	DataDir string
	// Transports gives each group its raft transport.
	Transports Transports
	// BootstrapMeta makes this node the first voter of a new metadata group.
	BootstrapMeta bool
	// MetaTiming and ShardTiming tune the raft groups.
	MetaTiming, ShardTiming shardlog.RaftTiming
	// SegmentMaxBytes and SegmentMaxAge set when shard segments roll.
	SegmentMaxBytes int64
	SegmentMaxAge   time.Duration
	// RetentionCheckInterval is how often expired segments are deleted.
	RetentionCheckInterval time.Duration
	// Logger receives structured logs.
	Logger *slog.Logger
}

// Host runs this node's replica of the metadata group and of every shard
// placed on the node, and keeps the running set equal to what the metadata
// assigns (reconciliation).
type Host struct {
	opts   HostOptions
	meta   *Meta
	logger *slog.Logger

	mu     sync.RWMutex
	shards map[string]*shardlog.Shard // by group id; owned by the reconciler

	// caughtUp is set once this node's metadata replica has applied the
	// whole log it found at startup.
	caughtUp atomic.Bool

	// removing holds groups whose removal is reported; reconciler-owned.
	removing map[string]bool

	ctx    context.Context // ends when the host closes
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// ErrNoReplica: this node holds no replica of the shard.
var ErrNoReplica = errors.New("cluster: no local replica of the shard")

// StartHost opens the metadata replica and starts reconciling.
func StartHost(opts HostOptions) (*Host, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RetentionCheckInterval <= 0 {
		opts.RetentionCheckInterval = time.Minute
	}
	self := raft.Server{ID: raft.ServerID(opts.NodeID), Address: opts.Transports.LocalAddress()}
	mo := MetaOptions{
		Dir:       filepath.Join(opts.DataDir, "meta"),
		LocalID:   self.ID,
		Transport: opts.Transports.Transport(metaGroupID),
		Timing:    opts.MetaTiming,
		Logger:    opts.Logger,
	}
	if opts.BootstrapMeta {
		mo.Bootstrap = []raft.Server{self}
	}
	meta, err := OpenMeta(mo)
	if err != nil {
		return nil, err
	}
	h := &Host{opts: opts, meta: meta, logger: opts.Logger,
		shards: map[string]*shardlog.Shard{}, removing: map[string]bool{}}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.wg.Add(3)
	go h.runReconciler()
	go h.runController()
	go h.runRetention()
	return h, nil
}

const metaGroupID = "meta"

// Meta is the local metadata replica.
func (h *Host) Meta() *Meta { return h.meta }

// NodeID is this node's id.
func (h *Host) NodeID() string { return h.opts.NodeID }

// Shard returns the local replica of a stream's shard.
func (h *Host) Shard(s *Stream, sh *Shard) (*shardlog.Shard, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if r, ok := h.shards[s.GroupID(sh)]; ok {
		return r, nil
	}
	return nil, ErrNoReplica
}

// leaderWait bounds how long a write waits for its shard to elect a leader
// (after a restart or a failover) before failing as retryable.
const leaderWait = 5 * time.Second

// Append writes entries to a shard through its leader. A write that finds
// no leader waits for an election and tries again: ErrNotLeader means
// nothing was appended, so the retry cannot duplicate.
func (h *Host) Append(ctx context.Context, s *Stream, sh *Shard, entries []shardlog.Entry) (shardlog.AppendResult, error) {
	r, err := h.Shard(s, sh)
	if err != nil {
		return shardlog.AppendResult{}, err
	}
	for attempt := 0; ; attempt++ {
		res, err := r.Append(ctx, entries)
		if !errors.Is(err, shardlog.ErrNotLeader) || attempt == 3 {
			return res, err
		}
		wctx, cancel := context.WithTimeout(ctx, leaderWait)
		werr := r.WaitLeader(wctx)
		cancel()
		if werr != nil || r.Leader() != raft.ServerID(h.opts.NodeID) {
			return res, err
		}
	}
}

// ShardsReady reports whether every local replica has a known leader.
func (h *Host) ShardsReady() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, r := range h.shards {
		if r.Leader() == "" {
			return false
		}
	}
	return true
}

// ProposeMeta replicates a metadata command through the metadata leader.
func (h *Host) ProposeMeta(ctx context.Context, cmd Command) error {
	return h.meta.Propose(ctx, cmd)
}

// Ready reports whether the node can serve: the metadata group has a leader
// and this replica has applied the log it started with.
func (h *Host) Ready() bool {
	_, id := h.meta.Raft().LeaderWithID()
	return id != "" && h.caughtUp.Load()
}

// Close stops reconciliation, every shard replica and the metadata replica.
func (h *Host) Close() error {
	h.cancel()
	h.wg.Wait()
	h.mu.Lock()
	var errs []error
	for gid, r := range h.shards {
		errs = append(errs, r.Close())
		h.opts.Transports.Release(gid)
	}
	h.shards = map[string]*shardlog.Shard{}
	h.mu.Unlock()
	errs = append(errs, h.meta.Close())
	h.opts.Transports.Release(metaGroupID)
	return errors.Join(errs...)
}

// runReconciler re-reads the metadata after every change and starts or
// stops shard replicas to match it.
func (h *Host) runReconciler() {
	defer h.wg.Done()
	for {
		changed := h.meta.Changed()
		h.reconcile(h.meta.State())
		select {
		case <-changed:
		case <-h.ctx.Done():
			return
		}
	}
}

func (h *Host) reconcile(st *State) {
	live := map[string]bool{}
	for _, s := range st.Streams {
		for _, sh := range s.Shards {
			gid := s.GroupID(sh)
			live[gid] = true
			h.mu.RLock()
			running := h.shards[gid]
			h.mu.RUnlock()
			assigned := slices.Contains(sh.Replicas, h.opts.NodeID)
			switch {
			case s.Status == StreamDeleting && assigned:
				h.removeReplica(s, sh, running)
			case s.Status != StreamDeleting && assigned && running == nil:
				h.startReplica(s, sh)
			}
		}
	}
	for gid := range h.removing {
		if !live[gid] {
			delete(h.removing, gid)
		}
	}
}

func (h *Host) startReplica(s *Stream, sh *Shard) {
	gid := s.GroupID(sh)
	var servers []raft.Server
	for _, n := range sh.Replicas {
		// A single-node cluster knows only its own address; peers' addresses
		// come from membership once there are several nodes.
		servers = append(servers, raft.Server{ID: raft.ServerID(n), Address: h.opts.Transports.LocalAddress()})
	}
	r, err := shardlog.OpenShard(shardlog.ShardOptions{
		GroupID:         gid,
		Dir:             h.shardDir(gid),
		LocalID:         raft.ServerID(h.opts.NodeID),
		Transport:       h.opts.Transports.Transport(gid),
		Bootstrap:       servers,
		Timing:          h.opts.ShardTiming,
		SegmentMaxBytes: h.opts.SegmentMaxBytes,
		SegmentMaxAge:   h.opts.SegmentMaxAge,
		Logger:          h.logger.With("stream", s.Name, "shard", sh.ID()),
	})
	if err != nil {
		h.logger.Error("cannot start shard replica", "stream", s.Name, "shard", sh.ID(), "group", gid, "err", err)
		h.opts.Transports.Release(gid)
		return
	}
	h.mu.Lock()
	h.shards[gid] = r
	h.mu.Unlock()
	h.logger.Info("shard replica started", "stream", s.Name, "shard", sh.ID(), "group", gid)
	if !sh.Ready {
		h.wg.Add(1)
		go h.reportReady(r, ShardReadyCmd{StreamID: s.ID, ShardIndex: sh.Index})
	}
}

// reportReady tells the metadata that a new shard's group has a leader.
func (h *Host) reportReady(r *shardlog.Shard, cmd ShardReadyCmd) {
	defer h.wg.Done()
	if err := r.WaitLeader(h.ctx); err != nil {
		return
	}
	h.proposeUntilDone(h.ctx, Command{ShardReady: &cmd})
}

// proposeUntilDone retries a metadata command with backoff until it commits
// or ctx ends; for reports that must eventually land.
func (h *Host) proposeUntilDone(ctx context.Context, cmd Command) {
	backoff := 50 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := h.ProposeMeta(pctx, cmd)
		cancel()
		if err == nil || ctx.Err() != nil {
			return
		}
		h.logger.Debug("metadata report will be retried", "err", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// removeReplica stops a deleted stream's replica, removes its data and
// reports it gone.
func (h *Host) removeReplica(s *Stream, sh *Shard, running *shardlog.Shard) {
	gid := s.GroupID(sh)
	if h.removing[gid] {
		return
	}
	if running != nil {
		h.mu.Lock()
		delete(h.shards, gid)
		h.mu.Unlock()
		if err := running.Close(); err != nil {
			h.logger.Warn("closing deleted shard replica", "group", gid, "err", err)
		}
		h.opts.Transports.Release(gid)
	}
	if err := os.RemoveAll(h.shardDir(gid)); err != nil {
		h.logger.Error("removing deleted shard data", "group", gid, "err", err)
		return
	}
	h.removing[gid] = true
	cmd := ReplicaStoppedCmd{StreamID: s.ID, ShardIndex: sh.Index, Node: h.opts.NodeID}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.proposeUntilDone(h.ctx, Command{ReplicaStopped: &cmd})
	}()
	h.logger.Info("shard replica removed", "stream", s.Name, "shard", sh.ID(), "group", gid)
}

func (h *Host) shardDir(gid string) string { return filepath.Join(h.opts.DataDir, "shards", gid) }

// runController does the metadata leader's duties.
func (h *Host) runController() {
	defer h.wg.Done()
	obs := make(chan raft.Observation, 4)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	h.meta.Raft().RegisterObserver(o)
	defer h.meta.Raft().DeregisterObserver(o)
	for {
		if h.meta.IsLeader() && h.catchUp() && h.meta.State().ClusterID == "" {
			h.bootstrapIdentity()
		}
		select {
		case <-obs:
		case <-h.meta.Changed():
		case <-h.ctx.Done():
			return
		}
	}
}

// catchUp makes sure a new leader has applied every entry of earlier terms
// before it acts on the state: after a restart the state is empty until the
// log is replayed.
func (h *Host) catchUp() bool {
	if h.caughtUp.Load() {
		return true
	}
	if err := h.meta.Raft().Barrier(10 * time.Second).Error(); err != nil {
		h.logger.Warn("metadata barrier failed", "err", err)
		return false
	}
	h.caughtUp.Store(true)
	return true
}

// bootstrapIdentity gives a new cluster its id and iterator signing key.
func (h *Host) bootstrapIdentity() {
	id, key := make([]byte, 8), make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		h.logger.Error("cluster identity", "err", err)
		return
	}
	if _, err := rand.Read(key); err != nil {
		h.logger.Error("cluster identity", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	cmd := Command{Bootstrap: &BootstrapCmd{ClusterID: hex.EncodeToString(id), IteratorKey: key}}
	if err := h.ProposeMeta(ctx, cmd); err != nil {
		h.logger.Warn("cluster identity not yet stored", "err", err)
		return
	}
	h.logger.Info("cluster bootstrapped", "cluster_id", hex.EncodeToString(id))
}

// runRetention deletes whole segments older than each stream's retention.
func (h *Host) runRetention() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.RetentionCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.applyRetention(time.Now())
		case <-h.ctx.Done():
			return
		}
	}
}

func (h *Host) applyRetention(now time.Time) {
	st := h.meta.State()
	for _, s := range st.Streams {
		cutoff := now.Add(-time.Duration(s.RetentionHours) * time.Hour).UnixMilli()
		for _, sh := range s.Shards {
			r, err := h.Shard(s, sh)
			if err != nil {
				continue
			}
			n, err := r.Log().DeleteBefore(cutoff)
			if err != nil {
				h.logger.Error("retention", "stream", s.Name, "shard", sh.ID(), "err", err)
			} else if n > 0 {
				h.logger.Info("retention deleted segments", "stream", s.Name, "shard", sh.ID(), "segments", n)
			}
		}
	}
}

// StreamByID finds a stream by its id.
func (st *State) StreamByID(id uint64) (*Stream, bool) { return st.streamByID(id) }

// CreateStream places a new stream's shards and proposes it.
func (h *Host) CreateStream(ctx context.Context, c CreateStreamCmd) error {
	st := h.meta.State()
	c.Placement = PlaceReplicas(h.members(), st.ReplicaLoad(), c.ShardCount, 3)
	return h.ProposeMeta(ctx, Command{CreateStream: &c})
}

// members lists the nodes that can hold replicas. A single node for now;
// membership replaces it.
func (h *Host) members() []string { return []string{h.opts.NodeID} }
