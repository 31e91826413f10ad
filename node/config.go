package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"time"

	"github.com/riffle-streams/riffle/cluster"
	"github.com/riffle-streams/riffle/gateway/kinesis"
	"github.com/riffle-streams/riffle/shardlog"
)

// Config is the configuration of one node process. Every field has a flag and
// an environment variable in `riffle serve`.
type Config struct {
	// NodeID names the node in the cluster; stable across restarts.
	NodeID string
	// DataDir holds the metadata group, every shard's raft log and segments.
	DataDir string
	// GRPCAddr is where the public and internal gRPC API listens.
	GRPCAddr string
	// AdvertiseAddr is the gRPC address other nodes and clients are told to
	// use; defaults to GRPCAddr.
	AdvertiseAddr string
	// GossipAddr is the memberlist bind address.
	GossipAddr string
	// GossipAdvertiseAddr is the gossip address peers use. Empty: the host
	// of AdvertiseAddr with the port of GossipAddr when GossipAddr binds all
	// interfaces, else GossipAddr.
	GossipAdvertiseAddr string
	// FastGossip shortens failure detection, for tests on loopback.
	FastGossip bool
	// AdminAddr serves /healthz, /readyz, /metrics and /debug/pprof; empty
	// disables it.
	AdminAddr string
	// KinesisAddr serves Kinesis's own HTTP API (every AWS SDK and the AWS
	// CLI); empty disables it.
	KinesisAddr string
	// KinesisCredentials, when set, are the access keys Kinesis API
	// requests must be signed with (kinesis.LoadCredentials reads them
	// from a shared-credentials file); empty, any well-formed signature is
	// taken.
	KinesisCredentials kinesis.Credentials
	// KinesisRegion is the region Kinesis API signatures must name;
	// kinesis.DefaultRegion when empty.
	KinesisRegion string
	// Join is the seed list of other nodes' gossip addresses.
	Join []string
	// BootstrapExpect is how many members must be present before the
	// metadata group is bootstrapped; 1 without Join.
	BootstrapExpect int
	// Raft tunes every raft group's timeouts; zero values take defaults.
	Raft shardlog.RaftTiming
	// RetentionCheckInterval is how often expired segments are deleted
	// and expired closed shards removed.
	RetentionCheckInterval time.Duration
	// SegmentMaxBytes is the size at which shard segments roll; zero keeps
	// shardlog's default (64 MiB). Tests set it small to get many segments.
	SegmentMaxBytes int64
	// Clock is the time shard leaders stamp arrival times with, and the
	// time retention, the expiry of closed shards and shard iterators
	// read; time.Now when nil. Tests set it ahead to expire
	// records without waiting out the 24-hour minimum retention.
	Clock func() time.Time
	// DeadNodeGrace is how long a node may be gone before its replicas are
	// rebuilt elsewhere; 60s when zero.
	DeadNodeGrace time.Duration
	// HibernateAfter is how long a shard goes without writes and readers
	// before its raft group sleeps (zero: cluster.DefaultHibernateAfter;
	// negative: never).
	HibernateAfter time.Duration
	// BalanceInterval is how often shard leaderships move to preferred
	// replicas; 5s when zero.
	BalanceInterval time.Duration
	// ShardLimits are the per-shard throughput limits of streams that do
	// not set their own; the zero value is unlimited. `riffle serve`
	// defaults to Kinesis's (cluster.KinesisLimits).
	ShardLimits cluster.Limits
	// OnDemand tunes the scaling of ON_DEMAND streams (thresholds,
	// windows, poll interval, shard cap); zero fields take the defaults of
	// cluster.OnDemandOptions.
	OnDemand cluster.OnDemandOptions
	// ScalingOpsPerDay and ModeSwitchesPerDay bound UpdateShardCount and
	// UpdateStreamMode calls per stream in a rolling 24 hours; zero takes
	// Kinesis's 10 and 2, negative is unlimited.
	ScalingOpsPerDay, ModeSwitchesPerDay int
	// SubscriptionLifetime is how long a SubscribeToShard call lasts before
	// it ends cleanly; 5 minutes when zero.
	SubscriptionLifetime time.Duration
	// SubscriptionHeartbeat is the longest a subscription to a quiet shard
	// goes without an event; 5 seconds when zero.
	SubscriptionHeartbeat time.Duration
	// Logger receives structured logs; slog.Default() when nil.
	Logger *slog.Logger
}

// Defaults from DESIGN.md: one node on loopback.
const (
	DefaultDataDir    = "./riffle-data"
	DefaultGRPCAddr   = "127.0.0.1:7450"
	DefaultGossipAddr = "127.0.0.1:7451"
	DefaultAdminAddr  = "127.0.0.1:7452"
	// DefaultKinesisAddr is the port of the Kinesis emulators (kinesalite,
	// LocalStack's kinesis-mock), so tools set up for them find Riffle.
	DefaultKinesisAddr = "127.0.0.1:4567"
	DefaultNodeID      = "n1"
)

var nodeIDPattern = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,64}$`)

// withDefaults fills unset fields and checks the rest.
func (c Config) withDefaults() (Config, error) {
	if c.NodeID == "" {
		c.NodeID = DefaultNodeID
	}
	if !nodeIDPattern.MatchString(c.NodeID) {
		return c, fmt.Errorf("node: node id %q must match %s", c.NodeID, nodeIDPattern)
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.GRPCAddr == "" {
		c.GRPCAddr = DefaultGRPCAddr
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.GRPCAddr
	}
	if c.GossipAddr == "" {
		c.GossipAddr = DefaultGossipAddr
	}
	for _, a := range []string{c.GRPCAddr, c.AdvertiseAddr, c.GossipAddr} {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return c, fmt.Errorf("node: address %q: %w", a, err)
		}
	}
	if c.GossipAdvertiseAddr == "" {
		c.GossipAdvertiseAddr = c.GossipAddr
		gh, gp, _ := net.SplitHostPort(c.GossipAddr)
		if ah, _, _ := net.SplitHostPort(c.AdvertiseAddr); (gh == "" || gh == "0.0.0.0" || gh == "::") && ah != "" {
			c.GossipAdvertiseAddr = net.JoinHostPort(ah, gp)
		}
	}
	if c.BootstrapExpect == 0 {
		c.BootstrapExpect = 1
	}
	if c.BootstrapExpect < 0 {
		return c, errors.New("node: bootstrap-expect must be at least 1")
	}
	if c.RetentionCheckInterval == 0 {
		c.RetentionCheckInterval = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
