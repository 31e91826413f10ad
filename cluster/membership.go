package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/riffle-streams/riffle/shardlog"
)

// MembershipOptions configures gossip membership.
type MembershipOptions struct {
	// NodeID is the memberlist node name.
	NodeID string
	// BindAddr is the gossip listen address (host:port).
	BindAddr string
	// AdvertiseAddr is the gossip address peers use; BindAddr when empty.
	AdvertiseAddr string
	// GRPCAddr is carried in the node meta so peers can reach our API.
	GRPCAddr string
	// Join is the seed list; retried with backoff until one answers.
	Join []string
	// ClusterID is the cluster the node's data directory belongs to, empty
	// for a new node; a peer gossiping another one means refusal.
	ClusterID string
	// Fast shortens failure detection, for tests on loopback.
	Fast bool
	// Logger receives structured logs.
	Logger *slog.Logger
}

// Member is one node as gossip sees it.
type Member struct {
	ID        string
	GRPCAddr  string
	ClusterID string
	Alive     bool
	// Since is when the member last changed between alive and not.
	Since time.Time
	// GossipAddr is the member's gossip address (host:port), for
	// reconnecting to it after gossip lost it.
	GossipAddr string
	// Left: the member announced its departure (a shutdown), rather than
	// stopped answering.
	Left bool
}

// nodeMeta is what a node gossips about itself.
type nodeMeta struct {
	GRPC string `json:"grpc"`
	// ClusterID is the cluster this node's data belongs to, once known.
	ClusterID string `json:"cluster_id,omitempty"`
	// Started (unix nanoseconds) settles who is the duplicate when two
	// live nodes claim one id: the one that started later.
	Started int64 `json:"started"`
}

// ErrDuplicateNodeID: another live node already uses this node id.
var ErrDuplicateNodeID = errors.New("cluster: a live node already uses this node id")

// ErrForeignCluster: the data directory belongs to another cluster than the
// one the seeds are part of.
var ErrForeignCluster = errors.New("cluster: data directory belongs to another cluster")

// Membership tracks the cluster's nodes with memberlist (SWIM gossip).
type Membership struct {
	opts     MembershipOptions
	ml       *memberlist.Memberlist
	delegate *metaDelegate
	logger   *slog.Logger
	started  int64

	mu       sync.Mutex
	members  map[string]Member
	notify   chan struct{}
	conflict error
	refused  error // the last node of another cluster kept out (foreign)

	reconnectEvery time.Duration

	stop chan struct{}
	wg   sync.WaitGroup
}

// StartMembership starts gossip and, with a seed list, joins in the
// background until a seed answers.
func StartMembership(opts MembershipOptions) (*Membership, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Membership{opts: opts, logger: opts.Logger, members: map[string]Member{},
		notify: make(chan struct{}), stop: make(chan struct{}), started: time.Now().UnixNano(),
		reconnectEvery: reconnectInterval}
	cfg := memberlist.DefaultLANConfig()
	if opts.Fast {
		m.reconnectEvery = 200 * time.Millisecond
		cfg = memberlist.DefaultLocalConfig()
		cfg.ProbeInterval = 200 * time.Millisecond
		cfg.ProbeTimeout = 100 * time.Millisecond
		cfg.GossipInterval = 50 * time.Millisecond
		cfg.SuspicionMult = 2
	}
	cfg.Name = opts.NodeID
	host, port, err := splitHostPort(opts.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip address: %w", err)
	}
	cfg.BindAddr, cfg.BindPort = host, port
	if opts.AdvertiseAddr != "" {
		ah, ap, err := splitHostPort(opts.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("cluster: gossip advertise address: %w", err)
		}
		cfg.AdvertiseAddr, cfg.AdvertisePort = ah, ap
	}
	// A node restarted with the same id on a new address takes its name back
	// once the old incarnation is known dead.
	cfg.DeadNodeReclaimTime = time.Second
	m.delegate = &metaDelegate{}
	m.delegate.meta.Store(&nodeMeta{GRPC: opts.GRPCAddr, Started: m.started, ClusterID: opts.ClusterID})
	cfg.Delegate = m.delegate
	cfg.Events = (*memberEvents)(m)
	cfg.Conflict = (*memberEvents)(m)
	cfg.Merge = (*memberEvents)(m)
	cfg.Alive = (*memberEvents)(m)
	cfg.Logger = nil
	cfg.LogOutput = shardlog.LogWriter(opts.Logger, "memberlist")
	m.ml, err = memberlist.Create(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: start gossip: %w", err)
	}
	if len(opts.Join) > 0 {
		// One attempt now: joining merges the peers' view, so a live node
		// with our id shows up before this returns.
		n, _ := m.ml.Join(opts.Join)
		m.mu.Lock()
		refused := m.refused
		m.mu.Unlock()
		if n == 0 && refused != nil {
			// The seeds are another cluster's: this data directory is
			// not theirs (memberlist flattens the error, so it is kept).
			m.ml.Shutdown()
			return nil, refused
		}
		if n > 0 {
			err := m.Conflict()
			if err == nil {
				err = m.checkCluster()
			}
			if err != nil {
				m.ml.Shutdown()
				return nil, err
			}
			m.logger.Info("joined cluster", "seeds_reached", n)
		} else {
			m.wg.Add(1)
			go m.joinLoop()
		}
	}
	m.wg.Add(1)
	go m.reconnectLoop()
	return m, nil
}

// joinLoop retries the seed list with backoff while peers start.
func (m *Membership) joinLoop() {
	defer m.wg.Done()
	backoff := 200 * time.Millisecond
	for {
		n, err := m.ml.Join(m.opts.Join)
		if n > 0 {
			m.logger.Info("joined cluster", "seeds_reached", n)
			return
		}
		m.logger.Info("waiting for seeds", "seeds", m.opts.Join, "err", err)
		select {
		case <-time.After(backoff):
		case <-m.stop:
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// reconnectInterval is how often a node tries to reach one member that
// gossip counts as failed.
const reconnectInterval = 2 * time.Second

// reconnectProbe bounds the connection attempt that checks a failed
// member answers at all before joining it.
const reconnectProbe = 500 * time.Millisecond

// reconnectLoop heals gossip after a partition. Memberlist probes and
// syncs state with live members only, so once both sides of a partition
// have declared the other dead, nothing makes them meet again when the
// network heals: a fault run saw a node and its peers each count the other
// dead for 70 s after a 12 s partition, long enough for the metadata
// leader to rebuild replicas of a live node as if it were gone, and for
// new shards to be placed without it. So every reconnectInterval the node
// joins (a full state exchange) one failed member, chosen at random, at
// its last gossip address; a member that left on purpose is not retried
// (it joins again itself when it starts). A dead member costs a failed
// connection attempt per interval.
func (m *Membership) reconnectLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.reconnectEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-m.stop:
			return
		}
		var failed []Member
		for _, mem := range m.Members() {
			if !mem.Alive && !mem.Left && mem.GossipAddr != "" && mem.ID != m.opts.NodeID {
				failed = append(failed, mem)
			}
		}
		if len(failed) == 0 {
			continue
		}
		mem := failed[rand.IntN(len(failed))]
		// A short probe first: a dead member's address may take seconds
		// to refuse, and Shutdown waits for this loop.
		conn, err := net.DialTimeout("tcp", mem.GossipAddr, reconnectProbe)
		if err != nil {
			continue
		}
		conn.Close()
		if n, err := m.ml.Join([]string{mem.GossipAddr}); n > 0 {
			m.logger.Info("reconnected to a member gossip counted as failed", "member", mem.ID, "addr", mem.GossipAddr)
		} else {
			m.logger.Debug("reconnecting to a failed member", "member", mem.ID, "addr", mem.GossipAddr, "err", err)
		}
	}
}

// Members lists every node gossip has seen, sorted by id.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for _, mem := range m.members {
		out = append(out, mem)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Alive lists the ids of live members, sorted.
func (m *Membership) Alive() []string {
	var ids []string
	for _, mem := range m.Members() {
		if mem.Alive {
			ids = append(ids, mem.ID)
		}
	}
	return ids
}

// GRPCAddr returns a node's advertised gRPC address.
func (m *Membership) GRPCAddr(nodeID string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem, ok := m.members[nodeID]
	if !ok || mem.GRPCAddr == "" {
		return "", fmt.Errorf("cluster: no address known for node %s", nodeID)
	}
	return mem.GRPCAddr, nil
}

// Changed is closed at the next membership change after the call.
func (m *Membership) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.notify
}

// Conflict reports a duplicate node id detected by gossip.
func (m *Membership) Conflict() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.conflict
}

// checkCluster refuses to join peers of another cluster.
func (m *Membership) checkCluster() error {
	if m.opts.ClusterID == "" {
		return nil
	}
	for _, mem := range m.Members() {
		if mem.Alive && mem.ClusterID != "" && mem.ClusterID != m.opts.ClusterID {
			return fmt.Errorf("%w: this node's data is from cluster %s, node %s is in cluster %s",
				ErrForeignCluster, m.opts.ClusterID, mem.ID, mem.ClusterID)
		}
	}
	return nil
}

// SetClusterID gossips the cluster this node belongs to, once it is known.
func (m *Membership) SetClusterID(id string) {
	old := m.delegate.meta.Load()
	if old.ClusterID == id {
		return
	}
	meta := *old
	meta.ClusterID = id
	m.delegate.meta.Store(&meta)
	if err := m.ml.UpdateNode(5 * time.Second); err != nil {
		m.logger.Warn("gossiping the cluster id", "err", err)
	}
}

// Leave announces departure (a hint peers act on after a grace period),
// then stops gossip.
func (m *Membership) Leave(timeout time.Duration) error {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	m.wg.Wait()
	err := m.ml.Leave(timeout)
	return errors.Join(err, m.ml.Shutdown())
}

// Shutdown stops gossip without announcing departure, as a crash would.
func (m *Membership) Shutdown() error {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	m.wg.Wait()
	return m.ml.Shutdown()
}

// update records a member's state and wakes watchers.
func (m *Membership) update(n *memberlist.Node, alive bool) {
	var meta nodeMeta
	_ = json.Unmarshal(n.Meta, &meta)
	m.mu.Lock()
	prev, known := m.members[n.Name]
	mem := Member{ID: n.Name, GRPCAddr: meta.GRPC, ClusterID: meta.ClusterID, Alive: alive, Since: prev.Since,
		GossipAddr: n.Address(), Left: !alive && n.State == memberlist.StateLeft}
	if !known || prev.Alive != alive {
		mem.Since = time.Now()
	}
	if mem.GRPCAddr == "" {
		mem.GRPCAddr = prev.GRPCAddr
	}
	m.members[n.Name] = mem
	close(m.notify)
	m.notify = make(chan struct{})
	m.mu.Unlock()
	if !known || prev.Alive != alive || prev.GRPCAddr != mem.GRPCAddr {
		m.logger.Info("member changed", "member", n.Name, "alive", alive, "grpc", mem.GRPCAddr)
	}
}

// memberEvents receives memberlist's callbacks.
type memberEvents Membership

func (e *memberEvents) NotifyJoin(n *memberlist.Node)   { (*Membership)(e).update(n, true) }
func (e *memberEvents) NotifyLeave(n *memberlist.Node)  { (*Membership)(e).update(n, false) }
func (e *memberEvents) NotifyUpdate(n *memberlist.Node) { (*Membership)(e).update(n, true) }

// NotifyConflict is called on both nodes that claim one id; the one that
// started later is the duplicate.
func (e *memberEvents) NotifyConflict(existing, other *memberlist.Node) {
	m := (*Membership)(e)
	if existing.Name != m.opts.NodeID {
		m.logger.Warn("two nodes claim one id", "node_id", existing.Name, "addresses", []string{existing.Address(), other.Address()})
		return
	}
	var theirs nodeMeta
	_ = json.Unmarshal(other.Meta, &theirs)
	if theirs.Started == 0 || theirs.Started > m.started {
		m.logger.Error("another node started with this node's id and will be refused", "node_id", existing.Name, "other", other.Address())
		return
	}
	m.mu.Lock()
	m.conflict = fmt.Errorf("%w: %s is alive at %s", ErrDuplicateNodeID, existing.Name, other.Address())
	m.mu.Unlock()
}

// NotifyMerge refuses a state exchange (a join, or a reconnection) with
// nodes of another cluster: an address this node once knew may belong to
// another cluster's node now (a reused container or pod address, or a test
// process's port), and merging would make one cluster of two.
func (e *memberEvents) NotifyMerge(peers []*memberlist.Node) error {
	for _, p := range peers {
		if err := (*Membership)(e).foreign(p); err != nil {
			return err
		}
	}
	return nil
}

// NotifyAlive keeps nodes of another cluster out when gossip brings them.
func (e *memberEvents) NotifyAlive(p *memberlist.Node) error { return (*Membership)(e).foreign(p) }

// foreign returns ErrForeignCluster when p gossips a cluster id that is not
// this node's; a node that knows none yet (a new one) is not foreign.
func (m *Membership) foreign(p *memberlist.Node) error {
	ours := m.delegate.meta.Load().ClusterID
	if ours == "" {
		return nil
	}
	var theirs nodeMeta
	_ = json.Unmarshal(p.Meta, &theirs)
	if theirs.ClusterID != "" && theirs.ClusterID != ours {
		err := fmt.Errorf("%w: node %s at %s is in cluster %s, this node in %s", ErrForeignCluster, p.Name, p.Address(), theirs.ClusterID, ours)
		m.mu.Lock()
		m.refused = err
		m.mu.Unlock()
		return err
	}
	return nil
}

// metaDelegate serves the node meta; Riffle gossips nothing else.
type metaDelegate struct{ meta atomic.Pointer[nodeMeta] }

func (d *metaDelegate) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(d.meta.Load())
	return b
}
func (*metaDelegate) NotifyMsg([]byte)                           {}
func (*metaDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (*metaDelegate) LocalState(join bool) []byte                { return nil }
func (*metaDelegate) MergeRemoteState(buf []byte, join bool)     {}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return host, port, nil
}
