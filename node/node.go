package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/riffle-streams/riffle/cluster"
	"github.com/riffle-streams/riffle/gateway"
	"github.com/riffle-streams/riffle/gateway/kinesis"
)

// MaxMessageBytes bounds gRPC messages. The public API needs a little over
// 10 MiB (GetRecords); raft's AppendEntries between nodes carry up to 16
// entries of up to about 5 MiB each.
const MaxMessageBytes = 128 << 20

// Node is one running Riffle process.
type Node struct {
	cfg     Config
	logger  *slog.Logger
	lock    *os.File
	members *cluster.Membership
	mux     *cluster.RaftMux
	host    *cluster.Host
	grpc    *grpc.Server
	gateway *gateway.Server
	grpcLn  net.Listener
	health  *health.Server
	admin   *http.Server
	adminLn net.Listener
	kinesis *http.Server
	// kinesisLn serves Kinesis's HTTP API; nil when disabled.
	kinesisLn net.Listener
	registry  *prometheus.Registry
	// clock is the fault clock (faultclock.go), nil unless built in.
	clock *offsetClock

	// clusterIDStored is owned by watchReadiness.
	clusterIDStored bool

	ctx    context.Context // ends at Shutdown
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start opens the node's data and starts serving. It returns once the
// listeners are up; readiness (a metadata leader) follows shortly after and
// shows on /readyz and the gRPC health service.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, logger: cfg.Logger.With("node", cfg.NodeID), registry: prometheus.NewRegistry()}
	n.clock = installFaultClock(&n.cfg)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.start(); err != nil {
		n.cancel()
		n.closeAll()
		return nil, err
	}
	n.logger.Info("node started", "grpc", n.GRPCAddr(), "admin", n.AdminAddr(), "kinesis", n.KinesisAddr(), "data_dir", cfg.DataDir)
	return n, nil
}

func (n *Node) start() error {
	cfg := n.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("node: data dir: %w", err)
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	n.lock = lock
	if err := checkIdentity(cfg.DataDir, cfg.NodeID); err != nil {
		return err
	}
	// Listen first: peers reach this node's raft groups through it.
	n.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("node: gRPC listener: %w", err)
	}
	if cfg.AdvertiseAddr == cfg.GRPCAddr {
		cfg.AdvertiseAddr = n.grpcLn.Addr().String() // a port 0 became real
		n.cfg.AdvertiseAddr = cfg.AdvertiseAddr
	}
	clusterID, err := readClusterID(cfg.DataDir)
	if err != nil {
		return err
	}
	n.members, err = cluster.StartMembership(cluster.MembershipOptions{
		NodeID:        cfg.NodeID,
		ClusterID:     clusterID,
		BindAddr:      cfg.GossipAddr,
		AdvertiseAddr: cfg.GossipAdvertiseAddr,
		GRPCAddr:      cfg.AdvertiseAddr,
		Join:          cfg.Join,
		Fast:          cfg.FastGossip,
		Logger:        n.logger,
	})
	if err != nil {
		return err
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	n.mux = cluster.NewRaftMux(cluster.RaftMuxOptions{
		LocalAddress: raft.ServerAddress(cfg.NodeID),
		Resolve: func(addr raft.ServerAddress) (string, error) {
			return n.members.GRPCAddr(string(addr))
		},
		DialOptions: dial,
		Logger:      n.logger,
	})
	n.host, err = cluster.StartHost(cluster.HostOptions{
		HibernateAfter:         cfg.HibernateAfter,
		NodeID:                 cfg.NodeID,
		DataDir:                cfg.DataDir,
		Transports:             n.mux,
		Membership:             n.members,
		BootstrapExpect:        cfg.BootstrapExpect,
		DialOptions:            append(dial, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(MaxMessageBytes), grpc.MaxCallRecvMsgSize(MaxMessageBytes))),
		MetaTiming:             cfg.Raft,
		ShardTiming:            cfg.Raft,
		RetentionCheckInterval: cfg.RetentionCheckInterval,
		SegmentMaxBytes:        cfg.SegmentMaxBytes,
		Now:                    cfg.Clock,
		BalanceInterval:        cfg.BalanceInterval,
		DeadNodeGrace:          cfg.DeadNodeGrace,
		DefaultLimits:          cfg.ShardLimits,
		OnDemand:               cfg.OnDemand,
		ScalingOpsPerDay:       cfg.ScalingOpsPerDay,
		ModeSwitchesPerDay:     cfg.ModeSwitchesPerDay,
		Logger:                 n.logger,
	})
	if err != nil {
		return err
	}
	n.mux.SetWake(n.host.WakeGroup)

	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gw := gateway.New(gateway.Options{Host: n.host, Registerer: n.registry, Logger: n.logger, Now: cfg.Clock,
		SubscriptionLifetime: cfg.SubscriptionLifetime, SubscriptionHeartbeat: cfg.SubscriptionHeartbeat})
	n.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		experimental.BufferPool(newBufferPool()),
		grpc.ChainUnaryInterceptor(gw.UnaryInterceptor),
		grpc.ChainStreamInterceptor(gw.StreamInterceptor),
	)
	gw.Register(n.grpc)
	gw.RegisterGroups(n.grpc)
	n.gateway = gw
	n.mux.Register(n.grpc)
	n.host.RegisterForward(n.grpc)
	n.health = health.NewServer()
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(n.grpc, n.health)
	reflection.Register(n.grpc)

	if cfg.AdminAddr != "" {
		n.adminLn, err = net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			return fmt.Errorf("node: admin listener: %w", err)
		}
		n.admin = &http.Server{Handler: n.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
	}
	if cfg.KinesisAddr != "" {
		n.kinesisLn, err = net.Listen("tcp", cfg.KinesisAddr)
		if err != nil {
			return fmt.Errorf("node: Kinesis API listener: %w", err)
		}
		protocols := new(http.Protocols)
		protocols.SetHTTP1(true)
		protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge: SubscribeToShard
		n.kinesis = &http.Server{
			Handler: kinesis.NewHandler(kinesis.Options{Gateway: gw, Registerer: n.registry, Logger: n.logger,
				Credentials: cfg.KinesisCredentials, Region: cfg.KinesisRegion}),
			ReadHeaderTimeout: 10 * time.Second,
			Protocols:         protocols,
		}
	}
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		if err := n.grpc.Serve(n.grpcLn); err != nil {
			n.logger.Error("gRPC server stopped", "err", err)
		}
	}()
	go n.watchReadiness()
	if n.admin != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.admin.Serve(n.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.logger.Error("admin server stopped", "err", err)
			}
		}()
	}
	if n.kinesis != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.kinesis.Serve(n.kinesisLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.logger.Error("Kinesis API server stopped", "err", err)
			}
		}()
	}
	return nil
}

// watchReadiness flips the gRPC health status once the metadata group has
// a leader and the cluster identity exists.
func (n *Node) watchReadiness() {
	defer n.wg.Done()
	serving := false
	for {
		changed := n.host.Meta().Changed()
		ready := n.Ready()
		if id := n.host.Meta().State().ClusterID; ready && id != "" {
			n.recordClusterID(id)
		}
		if ready != serving {
			serving = ready
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if ready {
				st = healthpb.HealthCheckResponse_SERVING
				n.logger.Info("node ready")
			}
			n.health.SetServingStatus("", st)
		}
		select {
		case <-changed:
		case <-time.After(250 * time.Millisecond): // elections do not touch the state
		case <-n.ctx.Done():
			return
		}
	}
}

// Ready reports whether the node can serve requests: the metadata group
// has a leader and an identity, and every local shard replica a leader.
func (n *Node) Ready() bool { return n.NotReady() == nil }

// NotReady says why the node cannot serve yet, or returns nil.
func (n *Node) NotReady() error { return n.host.NotReady() }

// GRPCAddr is the address the gRPC server listens on.
func (n *Node) GRPCAddr() string { return n.grpcLn.Addr().String() }

// AdminAddr is the admin HTTP address, empty when disabled.
func (n *Node) AdminAddr() string {
	if n.adminLn == nil {
		return ""
	}
	return n.adminLn.Addr().String()
}

// KinesisAddr is the Kinesis HTTP API's address, empty when disabled.
func (n *Node) KinesisAddr() string {
	if n.kinesisLn == nil {
		return ""
	}
	return n.kinesisLn.Addr().String()
}

// Host exposes the cluster host, for tests and tools in this module.
func (n *Node) Host() *cluster.Host { return n.host }

// Shutdown leaves the cluster, hands this node's leaderships to other
// replicas, stops serving (letting calls in flight finish until ctx ends),
// then stops every raft group and releases the data directory.
func (n *Node) Shutdown(ctx context.Context) error {
	n.health.Shutdown()
	// Leave first, so that no peer hands a leadership back to this node;
	// raft still reaches peers through the addresses gossip learned.
	if err := n.members.Leave(5 * time.Second); err != nil {
		n.logger.Warn("leaving the cluster", "err", err)
	}
	handoff, cancel := context.WithTimeout(ctx, 10*time.Second)
	n.host.HandOffLeadership(handoff)
	cancel()
	// Subscriptions last minutes: end them (clients resume elsewhere)
	// rather than wait for them.
	n.gateway.StopSubscriptions()
	if n.kinesis != nil {
		// Calls in flight get the same grace as gRPC's below; Kinesis
		// subscriptions ended with the line above.
		grace, cancel := context.WithTimeout(ctx, drainGrace)
		if n.kinesis.Shutdown(grace) != nil {
			n.kinesis.Close()
		}
		cancel()
	}
	stopped := make(chan struct{})
	go func() {
		n.grpc.GracefulStop()
		close(stopped)
	}()
	// Calls in flight get drainGrace to finish. Peers' raft pipelines and
	// catch-up streams never end on their own, so waiting for them would
	// always take the caller's whole deadline (10 s in tests, measured).
	drain := time.NewTimer(drainGrace)
	defer drain.Stop()
	select {
	case <-stopped:
	case <-drain.C:
		n.grpc.Stop()
		<-stopped
	case <-ctx.Done():
		n.grpc.Stop()
		<-stopped
	}
	n.gateway.StopPrefetching()
	if n.admin != nil {
		n.admin.Shutdown(ctx)
	}
	n.cancel()
	n.wg.Wait()
	err := n.closeAll()
	n.logger.Info("node stopped", "err", err)
	return err
}

// drainGrace is how long Shutdown lets calls in flight finish.
const drainGrace = 2 * time.Second

// Kill stops the node abruptly, as a crash would: no leave, no handoff, no
// draining of calls in flight. For fault-injection tests.
func (n *Node) Kill() {
	n.grpc.Stop()
	if n.admin != nil {
		n.admin.Close()
	}
	if n.kinesis != nil {
		n.kinesis.Close()
	}
	n.cancel()
	n.wg.Wait()
	n.closeAll()
}

// closeAll releases whatever start opened.
func (n *Node) closeAll() error {
	var errs []error
	if n.grpc != nil {
		n.grpc.Stop()
	} else if n.grpcLn != nil {
		n.grpcLn.Close()
	}
	if n.adminLn != nil && n.admin == nil {
		n.adminLn.Close()
	}
	if n.kinesisLn != nil && n.kinesis == nil {
		n.kinesisLn.Close()
	}
	if n.host != nil {
		errs = append(errs, n.host.Close())
	}
	if n.mux != nil {
		errs = append(errs, n.mux.Close())
	}
	if n.members != nil {
		errs = append(errs, n.members.Shutdown())
	}
	if n.lock != nil {
		errs = append(errs, n.lock.Close())
	}
	return errors.Join(errs...)
}

// readClusterID reads the cluster a data directory belongs to, empty for a
// directory that has not joined one yet.
func readClusterID(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cluster-id"))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("node: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// recordClusterID stores and gossips the cluster id once it is known.
func (n *Node) recordClusterID(id string) {
	if n.clusterIDStored {
		return
	}
	path := filepath.Join(n.cfg.DataDir, "cluster-id")
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		n.logger.Error("storing the cluster id", "err", err)
		return
	}
	n.members.SetClusterID(id)
	n.clusterIDStored = true
}

// checkIdentity refuses a data directory written by a node with another id.
func checkIdentity(dir, nodeID string) error {
	path := filepath.Join(dir, "node-id")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return os.WriteFile(path, []byte(nodeID+"\n"), 0o644)
	}
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if got := strings.TrimSpace(string(b)); got != nodeID {
		return fmt.Errorf("node: data directory %s belongs to node %q, not %q", dir, got, nodeID)
	}
	return nil
}
