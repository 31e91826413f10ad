package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
	"github.com/riffle-streams/riffle/shardlog"
	"github.com/riffle-streams/riffle/shardlog/wal"
)

// HostOptions configures the part of a node that runs raft groups.
type HostOptions struct {
	// NodeID is this node's id and raft server id.
	NodeID string
	// DataDir holds meta/, shards/<group>/ and wal/ (the raft log entries
	// of every shard replica here).
	DataDir string
	// Transports gives each group its raft transport. Raft addresses are
	// node ids; the transport resolves them through membership.
	Transports Transports
	// Membership tells which nodes are alive and where they listen.
	Membership *Membership
	// BootstrapExpect is how many live members a new cluster waits for
	// before one of them bootstraps the metadata group.
	BootstrapExpect int
	// DialOptions are used for requests forwarded to peers.
	DialOptions []grpc.DialOption
	// MetaTiming and ShardTiming tune the raft groups.
	MetaTiming, ShardTiming shardlog.RaftTiming
	// SegmentMaxBytes and SegmentMaxAge set when shard segments roll.
	SegmentMaxBytes int64
	SegmentMaxAge   time.Duration
	// RetentionCheckInterval is how often expired segments are deleted
	// and, on the metadata leader, expired closed shards removed.
	RetentionCheckInterval time.Duration
	// Now is the clock retention and the expiry of closed shards read;
	// time.Now when nil. Tests set it ahead to expire records without
	// waiting out the 24-hour minimum retention.
	Now func() time.Time
	// DeadNodeGrace is how long a node may be gone before its replicas
	// are rebuilt on other nodes (default 60s).
	DeadNodeGrace time.Duration
	// BalanceInterval is how often a node hands leaderships to preferred
	// replicas (default 5s).
	BalanceInterval time.Duration
	// DefaultLimits are the per-shard limits of streams that do not set
	// their own (zero: unlimited). They are enforced where the work is done
	// (writes at the shard leader, reads at the serving replica), so every
	// node of a cluster should be given the same.
	DefaultLimits Limits
	// OnDemand tunes the scaling of ON_DEMAND streams; zero fields take
	// the defaults (OnDemandOptions).
	OnDemand OnDemandOptions
	// ScalingOpsPerDay and ModeSwitchesPerDay bound UpdateShardCount and
	// UpdateStreamMode calls per stream in a rolling 24 hours (Kinesis: 10
	// and 2, the defaults when zero); negative: no limit. The metadata
	// leader's setting applies.
	ScalingOpsPerDay, ModeSwitchesPerDay int
	// HibernateAfter is how long a shard must go without writes and
	// readers before its raft group closes on every replica until the next
	// request (hibernate.go); zero: DefaultHibernateAfter; negative: never.
	HibernateAfter time.Duration
	// Logger receives structured logs.
	Logger *slog.Logger
}

// Host runs this node's replica of the metadata group and of every shard
// placed on the node, keeps the running set equal to what the metadata
// assigns (reconciliation), and routes writes and metadata commands to the
// leaders that must apply them.
type Host struct {
	opts   HostOptions
	meta   *Meta
	wal    *wal.WAL   // every shard replica's raft log entries
	peers  *peerConns // forwarded requests
	bulk   *peerConns // catch-up copies
	logger *slog.Logger

	mu     sync.RWMutex
	shards map[string]*shardlog.Shard // by group id; owned by the reconciler
	// added is closed, and replaced, whenever a replica joins shards
	// (setShardLocked); under mu. WaitShard waits on it.
	added chan struct{}
	// copies holds the groups whose frozen replica is being copied here
	// (frozen_moves.go); under mu.
	copies map[string]bool
	// failed holds the replicas this node refuses to start (a damaged raft
	// store) and why; under mu. See replica_damage.go.
	failed map[string]error
	// rebuilds holds the failed replicas whose move is being asked for;
	// under mu.
	rebuilds map[string]bool

	// caughtUp is set once this node, as metadata leader, has applied the
	// whole log it found at startup.
	caughtUp atomic.Bool

	// draining is set once the node is shutting down: it keeps no
	// leadership it can hand over.
	draining atomic.Bool

	// removing holds groups whose removal is reported; reconciler-owned.
	removing map[string]bool
	// sealReports holds, per closed shard, the replica whose seal report
	// is started, so each runs once; reconciler-owned.
	sealReports map[string]*shardlog.Shard
	// swept is set once the stray replicas found at start are removed,
	// which waits until this metadata replica was known current (isCurrent,
	// metaCurrent but in tests); reconciler-owned.
	swept     bool
	isCurrent func() bool
	// moveReports holds, per shard moving onto this node, the replica
	// whose caught-up report is started; reconciler-owned.
	moveReports map[string]*shardlog.Shard

	// movesCompleted counts the replica moves this node finished as shard
	// leader.
	movesCompleted atomic.Uint64

	// hib holds the hibernating replicas and when each replica was last
	// used (hibernate.go).
	hib hibernation

	// throttles hold the per-shard limits' buckets of groups running here.
	throttles throttles
	// meters count the writes of ON_DEMAND shards this node leads.
	meters writeMeters

	// groups is the metadata leader's memory of consumer-group workers
	// (group_coordinator.go), made on first use.
	groups     *groupCoordinator
	groupsOnce sync.Once

	ctx    context.Context // ends when the host closes
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// ErrNoReplica: this node holds no replica of the shard.
var ErrNoReplica = errors.New("cluster: no local replica of the shard")

// ErrReplicaOpening: the metadata places a replica of the shard on this
// node and it has not opened yet (the node has just started, or the
// replica is being added here). It is not ErrNoReplica: a call for it
// waits here (WaitShard) instead of being passed to another node, which
// after a restart may be this one.
var ErrReplicaOpening = errors.New("cluster: this node's replica of the shard is still opening")

// replicaOpenWait bounds WaitShard.
const replicaOpenWait = 10 * time.Second

// setShardLocked records a replica that now serves on this node and
// wakes the calls waiting for it. h.mu is held.
func (h *Host) setShardLocked(gid string, r *shardlog.Shard) {
	h.shards[gid] = r
	close(h.added)
	h.added = make(chan struct{})
}

// WaitShard is Shard, except that for a replica this node is assigned but
// has not opened yet it waits until the replica runs, ctx ends or
// replicaOpenWait passes, and then returns ErrReplicaOpening.
func (h *Host) WaitShard(ctx context.Context, s *Stream, sh *Shard) (*shardlog.Shard, error) {
	ctx, cancel := context.WithTimeout(ctx, replicaOpenWait)
	defer cancel()
	for {
		h.mu.RLock()
		added := h.added
		h.mu.RUnlock()
		r, err := h.Shard(s, sh)
		if !errors.Is(err, ErrReplicaOpening) {
			return r, err
		}
		select {
		case <-added:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%s)", err, sh.ID())
		}
	}
}

// StartHost opens the metadata replica and starts the host's loops: cluster
// formation (a new cluster), reconciliation, the leader's controller and
// retention.
func StartHost(opts HostOptions) (*Host, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RetentionCheckInterval <= 0 {
		opts.RetentionCheckInterval = time.Minute
	}
	if opts.DeadNodeGrace <= 0 {
		opts.DeadNodeGrace = defaultDeadNodeGrace
	}
	if opts.BalanceInterval <= 0 {
		opts.BalanceInterval = defaultBalanceInterval
	}
	if opts.HibernateAfter == 0 {
		opts.HibernateAfter = DefaultHibernateAfter
	}
	if opts.BootstrapExpect <= 0 {
		opts.BootstrapExpect = 1
	}
	opts.OnDemand = opts.OnDemand.WithDefaults()
	if opts.ScalingOpsPerDay == 0 {
		opts.ScalingOpsPerDay = DefaultScalingOpsPerDay
	}
	if opts.ModeSwitchesPerDay == 0 {
		opts.ModeSwitchesPerDay = DefaultModeSwitchesPerDay
	}
	nodeWAL, err := openNodeWAL(opts.DataDir, opts.Logger)
	if err != nil {
		return nil, err
	}
	meta, err := OpenMeta(MetaOptions{
		Dir:       metaDir(opts.DataDir),
		LocalID:   serverID(opts.NodeID),
		Transport: opts.Transports.Transport(metaGroupID),
		Timing:    opts.MetaTiming,
		Logger:    opts.Logger,
	})
	if err != nil {
		nodeWAL.Close()
		return nil, err
	}
	h := &Host{opts: opts, meta: meta, wal: nodeWAL, logger: opts.Logger,
		peers:  &peerConns{dialOpts: opts.DialOptions, conns: map[string]*grpc.ClientConn{}},
		bulk:   &peerConns{dialOpts: opts.DialOptions, conns: map[string]*grpc.ClientConn{}},
		shards: map[string]*shardlog.Shard{}, added: make(chan struct{}), removing: map[string]bool{}, copies: map[string]bool{}, failed: map[string]error{}, rebuilds: map[string]bool{},
		sealReports: map[string]*shardlog.Shard{}, moveReports: map[string]*shardlog.Shard{}}
	h.hib.asleep, h.hib.refused = map[string]*sleeper{}, map[string]time.Time{}
	h.isCurrent = h.metaCurrent
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.wg.Add(7)
	go h.runHibernator()
	go h.runOnDemand()
	go h.runBalancer()
	go h.runFormation()
	go h.runReconciler()
	go h.runController()
	go h.runRetention()
	return h, nil
}

const metaGroupID = "meta"

// RegisterForward serves peers' forwarded requests on g.
func (h *Host) RegisterForward(g *grpc.Server) {
	internalv1.RegisterForwardServer(g, forwardServer{h: h})
}

// Meta is the local metadata replica.
func (h *Host) Meta() *Meta { return h.meta }

// NodeID is this node's id.
func (h *Host) NodeID() string { return h.opts.NodeID }

// Shard returns the local replica of a stream's shard, for a request: it
// counts as a use of the replica, and wakes it if it hibernates.
func (h *Host) Shard(s *Stream, sh *Shard) (*shardlog.Shard, error) {
	gid := s.GroupID(sh)
	h.mu.RLock()
	r, asleep := h.shards[gid], h.hib.asleep[gid] != nil
	if r != nil {
		// Under mu, so that sleep, which checks use under the write lock,
		// never closes a replica a request has just been handed.
		h.touch(gid)
	}
	h.mu.RUnlock()
	if r != nil {
		return r, nil
	}
	if asleep {
		return h.wake(s, sh, true)
	}
	if h.assignedHere(s, sh) {
		return nil, ErrReplicaOpening
	}
	return nil, ErrNoReplica
}

// assignedHere reports whether the metadata places a replica of the shard
// on this node that is about to open: not one this node refuses to start,
// nor a frozen one still being copied here (its peers serve it meanwhile).
func (h *Host) assignedHere(s *Stream, sh *Shard) bool {
	if s.Status == StreamDeleting || !slices.Contains(sh.Replicas, h.opts.NodeID) {
		return false
	}
	gid := s.GroupID(sh)
	h.mu.RLock()
	defer h.mu.RUnlock()
	_, failed := h.failed[gid]
	return !failed && !h.copies[gid]
}

// runningShard returns the local replica of a shard if it runs, for the
// node's own background work: it neither counts as a use nor wakes a
// hibernating replica.
func (h *Host) runningShard(s *Stream, sh *Shard) (*shardlog.Shard, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if r, ok := h.shards[s.GroupID(sh)]; ok {
		return r, nil
	}
	return nil, ErrNoReplica
}

// NotReady says why the node cannot serve yet, or returns nil: the
// metadata group must have a leader that has replayed its whole log, the
// cluster identity must be known, this metadata replica must have applied
// what it knows committed, and every replica the metadata assigns to this
// node must run and know its leader.
func (h *Host) NotReady() error {
	if err := h.metaNotReady(); err != nil {
		return err
	}
	if !h.metaCaughtUp() {
		stats := h.meta.Raft().Stats()
		return fmt.Errorf("metadata replica applied %s of %s committed entries", stats["applied_index"], stats["commit_index"])
	}
	st := h.meta.State()
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, s := range st.Streams {
		if s.Status == StreamDeleting {
			continue
		}
		for _, sh := range s.Shards {
			if !slices.Contains(sh.Replicas, h.opts.NodeID) {
				continue
			}
			gid := s.GroupID(sh)
			r := h.shards[gid]
			if r == nil && h.hib.asleep[gid] != nil {
				continue // at rest, ready to wake
			}
			if r == nil {
				if reason, failed := h.failed[gid]; failed {
					return fmt.Errorf("replica %s failed: %s", gid, reason)
				}
				return fmt.Errorf("replica %s not running", gid)
			}
			// A frozen replica runs no group and has no leader to know.
			if r.Leader() == "" && r.Raft() != nil {
				return fmt.Errorf("replica %s knows no leader", gid)
			}
		}
	}
	return nil
}

func (h *Host) metaNotReady() error {
	if h.metaLeaderID() == "" {
		return errors.New("no metadata leader known")
	}
	if h.meta.State().ClusterID == "" {
		return errors.New("cluster identity not known yet")
	}
	if h.meta.IsLeader() && !h.caughtUp.Load() {
		return errors.New("metadata leader replaying its log")
	}
	return nil
}

func (h *Host) metaLeaderID() string {
	_, id := h.meta.Raft().LeaderWithID()
	return string(id)
}

// Close stops the loops, every shard replica, the node's WAL and the
// metadata replica.
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
	errs = append(errs, h.wal.Close(), h.meta.Close())
	h.opts.Transports.Release(metaGroupID)
	errs = append(errs, h.peers.close(), h.bulk.close())
	return errors.Join(errs...)
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
