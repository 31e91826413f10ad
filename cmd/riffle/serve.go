package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/riffle-streams/riffle/cluster"
	"github.com/riffle-streams/riffle/gateway/kinesis"
	"github.com/riffle-streams/riffle/node"
	"github.com/riffle-streams/riffle/shardlog"
)

// runServe starts one node and runs it until SIGINT or SIGTERM.
func runServe(args []string) error {
	envErrors = nil
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var cfg node.Config
	var join, logLevel, logFormat, shardLimits, kinesisCredentials string
	var raftMultiplier int
	fs.StringVar(&cfg.NodeID, "node-id", envString("RIFFLE_NODE_ID", node.DefaultNodeID), "node id, stable across restarts (RIFFLE_NODE_ID)")
	fs.StringVar(&cfg.DataDir, "data-dir", envString("RIFFLE_DATA_DIR", node.DefaultDataDir), "data directory (RIFFLE_DATA_DIR)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", envString("RIFFLE_GRPC_ADDR", node.DefaultGRPCAddr), "gRPC listen address (RIFFLE_GRPC_ADDR)")
	fs.StringVar(&cfg.AdvertiseAddr, "advertise-addr", envString("RIFFLE_ADVERTISE_ADDR", ""), "gRPC address announced to peers; default --grpc-addr (RIFFLE_ADVERTISE_ADDR)")
	fs.StringVar(&cfg.GossipAddr, "gossip-addr", envString("RIFFLE_GOSSIP_ADDR", node.DefaultGossipAddr), "memberlist gossip address (RIFFLE_GOSSIP_ADDR)")
	fs.StringVar(&cfg.GossipAdvertiseAddr, "gossip-advertise-addr", envString("RIFFLE_GOSSIP_ADVERTISE_ADDR", ""), "gossip address announced to peers; default the advertise host with the gossip port (RIFFLE_GOSSIP_ADVERTISE_ADDR)")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", envString("RIFFLE_ADMIN_ADDR", node.DefaultAdminAddr), "admin HTTP address: health, metrics, pprof; empty disables (RIFFLE_ADMIN_ADDR)")
	fs.StringVar(&cfg.KinesisAddr, "kinesis-addr", envString("RIFFLE_KINESIS_ADDR", node.DefaultKinesisAddr), "Kinesis HTTP API address, for AWS SDKs and the AWS CLI (endpoint http://HOST:PORT); empty disables (RIFFLE_KINESIS_ADDR)")
	fs.StringVar(&kinesisCredentials, "kinesis-credentials", envString("RIFFLE_KINESIS_CREDENTIALS", ""), "AWS shared-credentials file (profiles with aws_access_key_id and aws_secret_access_key) whose keys Kinesis API requests must be signed with; empty: any well-formed signature is taken, for development only (RIFFLE_KINESIS_CREDENTIALS)")
	fs.StringVar(&cfg.KinesisRegion, "kinesis-region", envString("RIFFLE_KINESIS_REGION", "us-east-1"), "the region Kinesis API signatures must name when --kinesis-credentials is set (RIFFLE_KINESIS_REGION)")
	fs.StringVar(&join, "join", envString("RIFFLE_JOIN", ""), "comma-separated gossip addresses of peers to join (RIFFLE_JOIN)")
	fs.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", envInt("RIFFLE_BOOTSTRAP_EXPECT", 0), "members to wait for before bootstrapping; default 1 (RIFFLE_BOOTSTRAP_EXPECT)")
	fs.DurationVar(&cfg.DeadNodeGrace, "dead-node-grace", envDuration("RIFFLE_DEAD_NODE_GRACE", 60*time.Second), "how long a node may be gone before its replicas are rebuilt on other nodes (RIFFLE_DEAD_NODE_GRACE)")
	fs.StringVar(&shardLimits, "shard-limits", envString("RIFFLE_SHARD_LIMITS", "kinesis"), "per-shard limits of streams that set none: kinesis (writes 1 MiB/s and 1000 records/s, GetRecords 2 MiB/s and 5 calls/s, fan-out 2 MiB/s per consumer) or unlimited; every node of a cluster should have the same (RIFFLE_SHARD_LIMITS)")
	fs.DurationVar(&cfg.SubscriptionLifetime, "subscription-lifetime", envDuration("RIFFLE_SUBSCRIPTION_LIFETIME", 5*time.Minute), "how long a SubscribeToShard call lasts before it ends and the client resubscribes (RIFFLE_SUBSCRIPTION_LIFETIME)")
	fs.Float64Var(&cfg.OnDemand.SplitThreshold, "ondemand-split-threshold", envFloat("RIFFLE_ONDEMAND_SPLIT_THRESHOLD", cluster.DefaultSplitThreshold), "ON_DEMAND streams: split a shard whose writes stay at or above this fraction of its write limit (records or bytes) for --ondemand-split-after (RIFFLE_ONDEMAND_SPLIT_THRESHOLD)")
	fs.DurationVar(&cfg.OnDemand.SplitAfter, "ondemand-split-after", envDuration("RIFFLE_ONDEMAND_SPLIT_AFTER", cluster.DefaultSplitAfter), "ON_DEMAND streams: how long a shard must stay hot to be split (RIFFLE_ONDEMAND_SPLIT_AFTER)")
	fs.Float64Var(&cfg.OnDemand.MergeThreshold, "ondemand-merge-threshold", envFloat("RIFFLE_ONDEMAND_MERGE_THRESHOLD", cluster.DefaultMergeThreshold), "ON_DEMAND streams: merge two adjacent shards whose combined writes stay under this fraction of one shard's write limit for --ondemand-merge-after (RIFFLE_ONDEMAND_MERGE_THRESHOLD)")
	fs.DurationVar(&cfg.OnDemand.MergeAfter, "ondemand-merge-after", envDuration("RIFFLE_ONDEMAND_MERGE_AFTER", cluster.DefaultMergeAfter), "ON_DEMAND streams: how long a pair must stay cold to be merged (RIFFLE_ONDEMAND_MERGE_AFTER)")
	fs.DurationVar(&cfg.OnDemand.Interval, "ondemand-interval", envDuration("RIFFLE_ONDEMAND_INTERVAL", 0), "ON_DEMAND streams: how often the metadata leader polls write rates; default 1s, at most a tenth of the shorter window (RIFFLE_ONDEMAND_INTERVAL)")
	fs.IntVar(&cfg.OnDemand.MaxShards, "ondemand-max-shards", envInt("RIFFLE_ONDEMAND_MAX_SHARDS", cluster.DefaultOnDemandMaxShards), "ON_DEMAND streams: most open shards the cluster splits a stream into (RIFFLE_ONDEMAND_MAX_SHARDS)")
	fs.IntVar(&cfg.ScalingOpsPerDay, "scaling-ops-per-day", envInt("RIFFLE_SCALING_OPS_PER_DAY", cluster.DefaultScalingOpsPerDay), "UpdateShardCount calls allowed per stream in a rolling 24 hours; negative: no limit (RIFFLE_SCALING_OPS_PER_DAY)")
	fs.IntVar(&cfg.ModeSwitchesPerDay, "mode-switches-per-day", envInt("RIFFLE_MODE_SWITCHES_PER_DAY", cluster.DefaultModeSwitchesPerDay), "UpdateStreamMode calls allowed per stream in a rolling 24 hours; negative: no limit (RIFFLE_MODE_SWITCHES_PER_DAY)")
	fs.DurationVar(&cfg.HibernateAfter, "hibernate-after", envDuration("RIFFLE_HIBERNATE_AFTER", cluster.DefaultHibernateAfter), "how long a shard goes without writes and readers before its raft group sleeps on every replica, costing no CPU until the next request; 0 never (RIFFLE_HIBERNATE_AFTER)")
	fs.IntVar(&raftMultiplier, "raft-multiplier", envInt("RIFFLE_RAFT_MULTIPLIER", 1), "scales every raft group's heartbeat, election, lease and commit timeouts (1 s, 1 s, 500 ms, 50 ms at 1), 1 to 10: higher spends less CPU on idle shards, takes longer to replace a failed leader, and lets reads served by followers see the last write before a pause later (RIFFLE_RAFT_MULTIPLIER)")
	fs.StringVar(&logLevel, "log-level", envString("RIFFLE_LOG_LEVEL", "info"), "debug, info, warn or error (RIFFLE_LOG_LEVEL)")
	fs.StringVar(&logFormat, "log-format", envString("RIFFLE_LOG_FORMAT", "text"), "text or json (RIFFLE_LOG_FORMAT)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if len(envErrors) > 0 {
		return usageError{errors.Join(envErrors...)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("serve takes no arguments, got %q", fs.Args())}
	}
	if cfg.SubscriptionLifetime <= 0 {
		return usageError{fmt.Errorf("--subscription-lifetime must be positive, got %v", cfg.SubscriptionLifetime)}
	}
	switch {
	case cfg.HibernateAfter < 0:
		return usageError{fmt.Errorf("--hibernate-after must be 0 (never) or positive, got %v", cfg.HibernateAfter)}
	case cfg.HibernateAfter == 0:
		cfg.HibernateAfter = -1 // node.Config: negative is never
	}
	if err := checkOnDemand(cfg); err != nil {
		return usageError{err}
	}
	timing, err := raftTiming(raftMultiplier)
	if err != nil {
		return usageError{err}
	}
	cfg.Raft = timing
	if join != "" {
		cfg.Join = strings.Split(join, ",")
	}
	if kinesisCredentials != "" {
		if cfg.KinesisCredentials, err = kinesis.LoadCredentials(kinesisCredentials); err != nil {
			return usageError{fmt.Errorf("--kinesis-credentials: %w", err)}
		}
	}
	limits, err := parseShardLimits(shardLimits)
	if err != nil {
		return usageError{err}
	}
	cfg.ShardLimits = limits
	logger, err := newLogger(logLevel, logFormat)
	if err != nil {
		return usageError{err}
	}
	cfg.Logger = logger
	slog.SetDefault(logger)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return n.Shutdown(shutdownCtx)
}

// raftTiming scales hashicorp/raft's default timeouts by --raft-multiplier,
// as Consul's raft_multiplier does. An idle group's leader sends each
// follower a heartbeat every tenth of the heartbeat timeout and an empty
// AppendEntries every commit timeout (50 ms to 100 ms at 1), which is what
// idle shards cost; a follower learns that the last write before a pause
// committed on the next one, so reads served by followers see it up to a
// commit timeout later.
func raftTiming(multiplier int) (shardlog.RaftTiming, error) {
	if multiplier < 1 || multiplier > 10 {
		return shardlog.RaftTiming{}, fmt.Errorf("--raft-multiplier (RIFFLE_RAFT_MULTIPLIER) must be 1 to 10, got %d", multiplier)
	}
	m := time.Duration(multiplier)
	return shardlog.RaftTiming{HeartbeatTimeout: m * time.Second, ElectionTimeout: m * time.Second,
		LeaderLease: m * 500 * time.Millisecond, CommitTimeout: m * 50 * time.Millisecond}, nil
}

// parseShardLimits reads --shard-limits: the cluster's default per-shard
// limits, which streams may override when they are created.
func parseShardLimits(s string) (cluster.Limits, error) {
	switch s {
	case "kinesis":
		return cluster.KinesisLimits, nil
	case "unlimited":
		return cluster.Limits{}, nil
	}
	return cluster.Limits{}, fmt.Errorf("--shard-limits (RIFFLE_SHARD_LIMITS) must be kinesis or unlimited, got %q", s)
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, errors.New("--log-format must be text or json")
}

func envString(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// envErrors collects environment variables that did not parse; serve
// refuses to start with any, rather than silently using the default.
var envErrors []error

func envDuration(name string, def time.Duration) time.Duration {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		envErrors = append(envErrors, fmt.Errorf("%s=%q: not a duration (e.g. 60s)", name, v))
		return def
	}
	return d
}

// checkOnDemand refuses on-demand settings that cannot work.
func checkOnDemand(cfg node.Config) error {
	o := cfg.OnDemand
	switch {
	case o.SplitThreshold <= 0 || o.MergeThreshold <= 0:
		return fmt.Errorf("--ondemand-split-threshold and --ondemand-merge-threshold must be positive, got %v and %v", o.SplitThreshold, o.MergeThreshold)
	case o.MergeThreshold >= o.SplitThreshold:
		return fmt.Errorf("--ondemand-merge-threshold (%v) must be below --ondemand-split-threshold (%v), or a merged pair would split again", o.MergeThreshold, o.SplitThreshold)
	case o.SplitAfter <= 0 || o.MergeAfter <= 0 || o.Interval < 0:
		return fmt.Errorf("--ondemand-split-after and --ondemand-merge-after must be positive and --ondemand-interval not negative")
	case o.MaxShards < cluster.OnDemandInitialShards:
		return fmt.Errorf("--ondemand-max-shards must be at least %d, got %d", cluster.OnDemandInitialShards, o.MaxShards)
	case cfg.ScalingOpsPerDay == 0 || cfg.ModeSwitchesPerDay == 0:
		return errors.New("--scaling-ops-per-day and --mode-switches-per-day must not be 0 (negative: no limit)")
	}
	return nil
}

func envFloat(name string, def float64) float64 {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		envErrors = append(envErrors, fmt.Errorf("%s=%q: not a number", name, v))
		return def
	}
	return f
}

func envInt(name string, def int) int {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		envErrors = append(envErrors, fmt.Errorf("%s=%q: not a whole number", name, v))
		return def
	}
	return n
}
