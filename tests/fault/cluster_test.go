//go:build fault

package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// clusterNode is one compose service: its published gRPC and admin ports
// on the host and its address on the compose network
// (deploy/docker-compose.yml).
type clusterNode struct {
	service string
	addr    string // gRPC, from the host
	admin   string // admin HTTP, from the host
	ip      string // on the compose network, what peers see
}

// clusterNodes are the three nodes the cluster starts with and the
// workload's clients use.
var clusterNodes = []clusterNode{
	{"n1", "127.0.0.1:7450", "127.0.0.1:7452", "172.30.57.11"},
	{"n2", "127.0.0.1:7460", "127.0.0.1:7462", "172.30.57.12"},
	{"n3", "127.0.0.1:7470", "127.0.0.1:7472", "172.30.57.13"},
}

// spareNode is the compose file's fourth node (profile "spare"): it is not
// started with the cluster; the membership nemesis adds it and retires it.
var spareNode = clusterNode{"n4", "127.0.0.1:7480", "127.0.0.1:7482", "172.30.57.14"}

// spareIn is set while the spare node is a member of the cluster: from its
// start by the membership nemesis until it was drained and stopped. While
// it is in, the nemeses act on it as on any other node.
var spareIn atomic.Bool

// nodeNames are the workload's nodes: the three the cluster starts with.
func nodeNames() []string {
	var out []string
	for _, n := range clusterNodes {
		out = append(out, n.service)
	}
	return out
}

// faultNodes are the nodes that are members now, the ones faults hit and
// recovery waits for: the three, and the spare while it is in.
func faultNodes() []clusterNode {
	out := slices.Clone(clusterNodes)
	if spareIn.Load() {
		out = append(out, spareNode)
	}
	return out
}

// faultNodeNames are faultNodes' service names.
func faultNodeNames() []string {
	var out []string
	for _, n := range faultNodes() {
		out = append(out, n.service)
	}
	return out
}

func nodeByName(name string) clusterNode {
	for _, n := range append(slices.Clone(clusterNodes), spareNode) {
		if n.service == name {
			return n
		}
	}
	panic("no node " + name)
}

// dockerCluster drives the compose cluster from the host: docker for
// kill, start and pause, nsenter for iptables and tc in each container's
// network namespace. It remembers the network faults in force and applies
// them again to a node that restarts (a new container process has a new
// namespace without the rules).
type dockerCluster struct {
	t           testing.TB
	docker      []string
	compose     []string
	composeFile string
	project     string

	mu      sync.Mutex
	ids     map[string]string // container id by service (the spare's once created)
	net     netFaults         // in force on every running node
	stopped map[string]bool   // killed and not started again

	// work is the run's workload, for nemeses acting through the API.
	work *workload
}

// netFaults are the network faults in force. Loss is iptables' statistic
// match, which every kernel with iptables has; delay is tc netem where the
// kernel has sch_netem (some VM kernels do not), else a tbf bottleneck,
// which delays what queues behind it and drops the rest.
type netFaults struct {
	// drops[node] lists the peers whose packets node drops on input, so a
	// two-way cut names each side.
	drops map[string][]string
	// loss drops this share of the packets from every peer (0 for none).
	loss float64
	// qdiscs are tc root qdiscs for every node's eth0, the first that the
	// kernel has wins (none: no qdisc), e.g. netem and a tbf fallback.
	qdiscs []string
}

func newDockerCluster(t testing.TB) *dockerCluster {
	file := envOr("RIFFLE_E2E_COMPOSE_FILE", filepath.Join("..", "..", "deploy", "docker-compose.yml"))
	abs, err := filepath.Abs(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("compose file: %v (set RIFFLE_E2E_COMPOSE_FILE)", err)
	}
	c := &dockerCluster{
		t:           t,
		docker:      strings.Fields(envOr("RIFFLE_E2E_DOCKER", "docker")),
		compose:     strings.Fields(envOr("RIFFLE_E2E_COMPOSE", "docker-compose")),
		composeFile: abs,
		project:     envOr("RIFFLE_E2E_PROJECT", "riffle"),
		ids:         map[string]string{},
		stopped:     map[string]bool{},
	}
	for _, n := range clusterNodes {
		id, err := c.run(context.Background(), append(c.composeArgs(), "ps", "-q", n.service)...)
		if err != nil || id == "" || strings.ContainsAny(id, " \n") {
			t.Fatalf("compose project %s: no single container for %s (%q, %v); start the cluster with `make cluster-up`", c.project, n.service, id, err)
		}
		c.ids[n.service] = id
	}
	// The spare is in when an earlier run on this cluster left it running.
	spareIn.Store(false)
	if id, err := c.run(context.Background(), append(c.composeArgs(), "ps", "-q", spareNode.service)...); err == nil && id != "" && !strings.ContainsAny(id, " \n") {
		c.ids[spareNode.service] = id
		if c.state(spareNode.service) == "running" {
			spareIn.Store(true)
		} else {
			c.stopped[spareNode.service] = true
		}
	}
	for _, tool := range []string{"nsenter", "iptables", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run tests/fault/install-deps.sh", tool)
		}
	}
	return c
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (c *dockerCluster) composeArgs() []string {
	return append(append([]string{}, c.compose...), "-f", c.composeFile, "-p", c.project)
}

// run runs a command and returns its trimmed stdout; the error carries
// stderr.
func (c *dockerCluster) run(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func (c *dockerCluster) dockerCmd(args ...string) (string, error) {
	return c.run(context.Background(), append(append([]string{}, c.docker...), args...)...)
}

// kill sends SIGKILL to a node: no shutdown, no leave, no flush.
func (c *dockerCluster) kill(node string) error {
	c.mu.Lock()
	c.stopped[node] = true
	c.mu.Unlock()
	_, err := c.dockerCmd("kill", "-s", "KILL", c.ids[node])
	return err
}

// start starts a killed node on its volume and address, and applies the
// network faults in force to its new namespace.
func (c *dockerCluster) start(node string) error {
	if _, err := c.dockerCmd("start", c.ids[node]); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.stopped, node)
	c.mu.Unlock()
	return c.applyNet(node)
}

func (c *dockerCluster) pause(node string) error {
	_, err := c.dockerCmd("pause", c.ids[node])
	return err
}

func (c *dockerCluster) unpause(node string) error {
	_, err := c.dockerCmd("unpause", c.ids[node])
	return err
}

// state is docker's status of a node's container: running, paused, exited.
func (c *dockerCluster) state(node string) string {
	out, err := c.dockerCmd("inspect", "-f", "{{.State.Status}}", c.ids[node])
	if err != nil {
		return "unknown: " + err.Error()
	}
	return out
}

// waitStopped waits until a killed node's container has exited, so that
// nothing writes its files any more.
func (c *dockerCluster) waitStopped(node string) error {
	return waitFor(context.Background(), 30*time.Second, func() error {
		if st := c.state(node); st != "exited" && st != "dead" {
			return fmt.Errorf("%s is %s", node, st)
		}
		return nil
	})
}

// dataDir is where the host sees a node's /data: its named volume's
// mountpoint (deploy/docker-compose.yml), read from the container's mounts.
// Writing there needs the harness's root, like iptables does.
func (c *dockerCluster) dataDir(node string) (string, error) {
	dir, err := c.dockerCmd("inspect", "-f", `{{range .Mounts}}{{if eq .Destination "/data"}}{{.Source}}{{end}}{{end}}`, c.ids[node])
	if err != nil {
		return "", err
	}
	if dir == "" {
		return "", fmt.Errorf("%s has no mount at /data", node)
	}
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("%s's data volume is not reachable from the host (remote or rootless docker?): %w", node, err)
	}
	return dir, nil
}

// nsenter runs a host tool inside a running node's network namespace.
func (c *dockerCluster) nsenter(node string, argv ...string) error {
	pid, err := c.dockerCmd("inspect", "-f", "{{.State.Pid}}", c.ids[node])
	if err != nil {
		return err
	}
	if pid == "0" {
		return fmt.Errorf("%s is not running", node)
	}
	_, err = c.run(context.Background(), append([]string{"nsenter", "-t", pid, "-n"}, argv...)...)
	return err
}

// setNet replaces the network faults in force and applies them to every
// running node.
func (c *dockerCluster) setNet(f netFaults) error {
	c.mu.Lock()
	c.net = f
	c.mu.Unlock()
	var errs []error
	for _, n := range faultNodeNames() {
		errs = append(errs, c.applyNet(n))
	}
	return errors.Join(errs...)
}

// applyNet makes one node's namespace match the faults in force. A node
// that is down gets them when it starts.
func (c *dockerCluster) applyNet(node string) error {
	c.mu.Lock()
	f, down := c.net, c.stopped[node]
	drops := slices.Clone(f.drops[node])
	c.mu.Unlock()
	if down {
		return nil
	}
	if err := c.nsenter(node, "iptables", "-F", "INPUT"); err != nil {
		return err
	}
	for _, peer := range drops {
		if err := c.nsenter(node, "iptables", "-A", "INPUT", "-s", nodeByName(peer).ip, "-j", "DROP"); err != nil {
			return err
		}
	}
	if f.loss > 0 {
		for _, peer := range others(node) {
			if err := c.nsenter(node, "iptables", "-A", "INPUT", "-s", nodeByName(peer).ip,
				"-m", "statistic", "--mode", "random", "--probability", fmt.Sprint(f.loss), "-j", "DROP"); err != nil {
				return err
			}
		}
	}
	if len(f.qdiscs) == 0 {
		// Fails when there is none; that is the state wanted.
		c.nsenter(node, "tc", "qdisc", "del", "dev", "eth0", "root")
		return nil
	}
	var errs []error
	for _, q := range f.qdiscs {
		err := c.nsenter(node, append([]string{"tc", "qdisc", "replace", "dev", "eth0", "root"}, strings.Fields(q)...)...)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// healAll starts every stopped node, unpauses paused ones and lifts every
// network fault: the cluster whole again.
func (c *dockerCluster) healAll() error {
	var errs []error
	for _, n := range faultNodeNames() {
		switch c.state(n) {
		case "paused":
			errs = append(errs, c.unpause(n))
		case "exited", "dead", "created":
			errs = append(errs, c.start(n))
		}
	}
	errs = append(errs, c.setNet(netFaults{}))
	return errors.Join(errs...)
}

// leadership is what a node's admin endpoint says it leads.
type leadership struct {
	Node   string   `json:"node"`
	Meta   bool     `json:"meta"`
	Shards []string `json:"shards"`
}

func fetchLeadership(n clusterNode) (leadership, error) {
	hc := http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + n.admin + "/debug/leadership")
	if err != nil {
		return leadership{}, err
	}
	defer resp.Body.Close()
	var l leadership
	if resp.StatusCode != http.StatusOK {
		return l, fmt.Errorf("%s: %s", n.admin, resp.Status)
	}
	return l, json.NewDecoder(resp.Body).Decode(&l)
}

// failedReplicas is what a node's admin endpoint lists as the replicas it
// refuses to start, by group id, with the reason.
func failedReplicas(node string) (map[string]string, error) {
	hc := http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + nodeByName(node).admin + "/debug/replicas/failed")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: GET /debug/replicas/failed: %s", node, resp.Status)
	}
	var out map[string]string
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// setClockOffset steps a node's clock offset from the real time through
// its admin endpoint, which only an image built with the faultclock tag
// has (the Makefile's fault targets build it so).
func setClockOffset(node string, offset time.Duration) error {
	n := nodeByName(node)
	hc := http.Client{Timeout: 3 * time.Second}
	resp, err := hc.Post(fmt.Sprintf("http://%s/debug/clock?offset=%v", n.admin, offset), "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusNotFound:
		return fmt.Errorf("%s has no /debug/clock: the image was built without the faultclock tag", node)
	}
	return fmt.Errorf("%s: POST /debug/clock: %s", node, resp.Status)
}

// metaLeader returns the node that leads the metadata group, or "" when
// no node says it does.
func metaLeader() string {
	for _, n := range faultNodes() {
		if l, err := fetchLeadership(n); err == nil && l.Meta {
			return n.service
		}
	}
	return ""
}

// busiestShardLeader returns the node leading the most shard groups, or ""
// when none leads any.
func busiestShardLeader() string {
	best, most := "", 0
	for _, n := range faultNodes() {
		if l, err := fetchLeadership(n); err == nil && len(l.Shards) > most {
			best, most = n.service, len(l.Shards)
		}
	}
	return best
}

// dialNode connects to one node only, so that calls go through it, with a
// short reconnection back-off: after a restart the connection must come
// back in a second, not in gRPC's default of up to two minutes.
func dialNode(ctx context.Context, n clusterNode) (*client.Client, error) {
	return client.Dial(ctx, []string{n.addr}, client.WithDialOptions(grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: 2 * time.Second,
	})))
}

// askNode makes one call on a fresh connection to node n, within 3 s.
func askNode(ctx context.Context, n clusterNode, call func(context.Context, *client.Client) error) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, []string{n.addr})
	if err != nil {
		return err
	}
	defer cl.Close()
	return call(ctx, cl)
}

// serving asks a node's gRPC health service once.
func serving(ctx context.Context, n clusterNode) error {
	return askNode(ctx, n, func(ctx context.Context, cl *client.Client) error {
		resp, err := healthpb.NewHealthClient(cl.Conn()).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("health %v", s)
		}
		return nil
	})
}

// waitFor polls cond until it returns nil or timeout passes, returning its
// last error then.
func waitFor(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	interval := 50 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
		interval = min(2*interval, time.Second)
	}
}

// waitAllServing waits until every member node answers SERVING and counts
// every other member alive. The second half catches a gossip split that
// outlives its fault: health looks only at the node itself, and a soak
// once ran four minutes with a node that its peers, and it them, counted
// dead after a one-way partition healed, until a restart left a peer
// unable to address it at all (gossip reconnection fixed it; the CI-sized
// run's partition-oneway is the regression case).
func waitAllServing(ctx context.Context, timeout time.Duration) error {
	return waitFor(ctx, timeout, func() error {
		members := faultNodes()
		for _, n := range members {
			if err := serving(ctx, n); err != nil {
				return fmt.Errorf("%s: %w", n.service, err)
			}
		}
		for _, n := range members {
			if err := seesAllAlive(ctx, n, members); err != nil {
				return fmt.Errorf("%s: %w", n.service, err)
			}
		}
		return nil
	})
}

// seesAllAlive asks node n's ListNodes whether it counts every one of
// members alive.
func seesAllAlive(ctx context.Context, n clusterNode, members []clusterNode) error {
	return askNode(ctx, n, func(ctx context.Context, cl *client.Client) error {
		out, err := rifflev1.NewNodesClient(cl.Conn()).ListNodes(ctx, &rifflev1.ListNodesRequest{})
		if err != nil {
			return err
		}
		alive := map[string]bool{}
		for _, d := range out.GetNodes() {
			alive[d.GetNodeId()] = d.GetAlive()
		}
		for _, m := range members {
			if !alive[m.service] {
				return fmt.Errorf("gossip counts %s not alive", m.service)
			}
		}
		return nil
	})
}

// saveEvidence copies every node's log and data directory into dir, for a
// failed run.
func (c *dockerCluster) saveEvidence(dir string) {
	c.mu.Lock()
	_, spare := c.ids[spareNode.service]
	c.mu.Unlock()
	names := nodeNames()
	if spare {
		names = append(names, spareNode.service)
	}
	for _, n := range names {
		out, err := c.run(context.Background(), append(c.composeArgs(), "logs", "--no-color", "--timestamps", n)...)
		if err != nil {
			out = err.Error()
		}
		os.WriteFile(filepath.Join(dir, n+".log"), []byte(out+"\n"), 0o644)
		if _, err := c.dockerCmd("cp", c.ids[n]+":/data", filepath.Join(dir, n+"-data")); err != nil {
			c.t.Logf("copying %s's data: %v", n, err)
		}
	}
}
