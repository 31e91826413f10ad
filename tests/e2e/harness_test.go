//go:build e2e

// Package e2e tests a three-node Riffle cluster running in Docker
// (deploy/docker-compose.yml) from the host, through the nodes' published
// gRPC ports, and injects faults with docker itself (kill, start).
//
// `make e2e` builds the image, starts a fresh cluster, runs this package
// and tears the cluster down. Against a cluster that is already up
// (`make cluster-up`):
//
//	go test -tags e2e -count=1 -v ./tests/e2e/...
//
// The tests do not start the cluster themselves and fail, saying so, when it
// is not there. Environment (the Makefile sets all of it):
//
//	RIFFLE_E2E_DOCKER        docker command (default docker)
//	RIFFLE_E2E_COMPOSE       compose command (default docker-compose; "docker compose" works)
//	RIFFLE_E2E_COMPOSE_FILE  compose file (default ../../deploy/docker-compose.yml)
//	RIFFLE_E2E_PROJECT       compose project (default riffle)
//	RIFFLE_E2E_MAX_OUTAGE    longest write outage allowed when a node dies (default 15s)
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// clusterNode is one compose service and the host address of its published
// gRPC port (deploy/docker-compose.yml).
type clusterNode struct {
	service string
	addr    string
}

var clusterNodes = []clusterNode{
	{service: "n1", addr: "127.0.0.1:7450"},
	{service: "n2", addr: "127.0.0.1:7460"},
	{service: "n3", addr: "127.0.0.1:7470"},
}

// Deadlines of the polls. They are generous: a slow CI machine runs three
// nodes and the tests on two cores.
const (
	clusterReadyTimeout = 60 * time.Second  // every node SERVING before a test
	metadataTimeout     = 30 * time.Second  // a new stream ACTIVE on every node
	healthyTimeout      = 120 * time.Second // a restarted container healthy again
	catchUpTimeout      = 90 * time.Second  // every node serving every acked record
	callTimeout         = 5 * time.Second   // one gRPC call
)

// dockerEnv says how to reach docker and the compose project.
type dockerEnv struct {
	docker      []string
	compose     []string
	composeFile string
	project     string
}

func loadDockerEnv(t *testing.T) dockerEnv {
	t.Helper()
	file := envOr("RIFFLE_E2E_COMPOSE_FILE", filepath.Join("..", "..", "deploy", "docker-compose.yml"))
	abs, err := filepath.Abs(file)
	if err != nil {
		t.Fatalf("compose file %s: %v", file, err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("compose file: %v (set RIFFLE_E2E_COMPOSE_FILE)", err)
	}
	return dockerEnv{
		docker:      strings.Fields(envOr("RIFFLE_E2E_DOCKER", "docker")),
		compose:     strings.Fields(envOr("RIFFLE_E2E_COMPOSE", "docker-compose")),
		composeFile: abs,
		project:     envOr("RIFFLE_E2E_PROJECT", "riffle"),
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// maxWriteOutage is the longest a writer may go without an acknowledged
// batch while a node dies: failure detection, a raft election of the shards
// the dead node led, and the client's retries.
func maxWriteOutage(t *testing.T) time.Duration {
	t.Helper()
	v := envOr("RIFFLE_E2E_MAX_OUTAGE", "15s")
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("RIFFLE_E2E_MAX_OUTAGE=%q: %v", v, err)
	}
	return d
}

// cluster is the compose cluster as one test sees it: a client per node.
type cluster struct {
	t       *testing.T
	env     dockerEnv
	clients map[string]*client.Client // by service name
}

// connectCluster checks that every node of the compose cluster is SERVING and
// connects to each. The clients are closed when the test ends.
func connectCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t, env: loadDockerEnv(t), clients: map[string]*client.Client{}}
	for _, n := range clusterNodes {
		c.containerID(n.service) // fails at once when the cluster was never started
		eventually(t, clusterReadyTimeout, n.service+" SERVING at "+n.addr+" (is the cluster up? `make cluster-up`)",
			func() error { return checkServing(n.addr) })
		c.clients[n.service] = dialNode(t, n)
	}
	return c
}

// node returns the clusterNode of a service.
func (c *cluster) node(service string) clusterNode {
	for _, n := range clusterNodes {
		if n.service == service {
			return n
		}
	}
	c.t.Fatalf("no node %q in the compose cluster", service)
	return clusterNode{}
}

// streams returns the Streams API through one node.
func (c *cluster) streams(service string) rifflev1.StreamsClient {
	cl, ok := c.clients[service]
	if !ok {
		c.t.Fatalf("no client for node %q", service)
	}
	return cl.Streams()
}

// reconnect replaces the client of a node, after a restart: the old one may
// sit in gRPC's reconnection back-off for many seconds.
func (c *cluster) reconnect(service string) {
	c.t.Helper()
	if old, ok := c.clients[service]; ok {
		old.Close()
	}
	c.clients[service] = dialNode(c.t, c.node(service))
}

// dialNode connects to one node only, so that calls go through that node.
func dialNode(t *testing.T, n clusterNode) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, []string{n.addr})
	if err != nil {
		t.Fatalf("dial %s at %s: %v", n.service, n.addr, err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// checkServing asks a node's gRPC health service once.
func checkServing(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cl, err := client.Dial(ctx, []string{addr})
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := healthpb.NewHealthClient(cl.Conn()).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health status %v", s)
	}
	return nil
}

// eventually polls cond until it returns nil, failing the test with cond's
// last error when timeout passes first.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	interval := 20 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(interval)
		interval = min(2*interval, 500*time.Millisecond)
	}
}

// ---- docker and docker-compose ---------------------------------------------

// run runs a command and returns its trimmed stdout; the error names the
// command and carries its exit status and stderr.
func run(ctx context.Context, argv []string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.Is(err, exec.ErrNotFound) || !errors.As(err, &exitErr) {
			return "", fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
		}
		return "", fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// docker runs a docker command, failing the test on error.
func (c *cluster) docker(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := run(ctx, append(append([]string{}, c.env.docker...), args...))
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// compose runs a docker-compose command on the cluster's project, failing
// the test on error.
func (c *cluster) compose(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	argv := append(append([]string{}, c.env.compose...), "-f", c.env.composeFile, "-p", c.env.project)
	out, err := run(ctx, append(argv, args...))
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// containerID finds the container of a compose service. Asking compose keeps
// the tests independent of its naming scheme (riffle_n1_1 in v1,
// riffle-n1-1 in v2).
func (c *cluster) containerID(service string) string {
	c.t.Helper()
	id := c.compose("ps", "-q", service)
	if id == "" || strings.ContainsAny(id, " \n") {
		c.t.Fatalf("compose project %s (%s): want one container for %s, got %q; start the cluster with `make cluster-up`",
			c.env.project, c.env.composeFile, service, id)
	}
	return id
}

// killNode sends SIGKILL to a node's container: no shutdown, no leave.
func (c *cluster) killNode(service string) {
	c.t.Helper()
	c.t.Logf("docker kill %s", service)
	c.docker("kill", c.containerID(service))
}

// startNode starts a stopped node's container on its old volume and address.
func (c *cluster) startNode(service string) {
	c.t.Helper()
	c.t.Logf("docker start %s", service)
	c.docker("start", c.containerID(service))
}

// containerState returns "status/health", e.g. "running/healthy".
func (c *cluster) containerState(service string) string {
	c.t.Helper()
	return c.docker("inspect", "-f", "{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}", c.containerID(service))
}

// waitHealthy waits until docker reports a node's container healthy (its
// healthcheck runs `riffle health` inside), then until the host reaches it.
func (c *cluster) waitHealthy(service string) {
	c.t.Helper()
	start := time.Now()
	eventually(c.t, healthyTimeout, service+" healthy", func() error {
		switch state := c.containerState(service); {
		case state == "running/healthy":
			return nil
		case strings.HasPrefix(state, "exited/"), strings.HasPrefix(state, "dead/"):
			c.t.Fatalf("%s stopped while waiting for it to become healthy (%s); its log:\n%s",
				service, state, c.logs(service, 50))
		default:
			return fmt.Errorf("container %s; last health check: %s", state, c.lastHealthCheck(service))
		}
		return nil
	})
	addr := c.node(service).addr
	eventually(c.t, clusterReadyTimeout, service+" SERVING at "+addr, func() error { return checkServing(addr) })
	c.t.Logf("%s healthy after %v", service, time.Since(start).Round(100*time.Millisecond))
}

// lastHealthCheck describes the container's last health check: exit code
// and output of `riffle health`.
func (c *cluster) lastHealthCheck(service string) string {
	c.t.Helper()
	out := c.docker("inspect", "-f", "{{if .State.Health}}{{json .State.Health.Log}}{{else}}[]{{end}}", c.containerID(service))
	var checks []struct {
		ExitCode int
		Output   string
	}
	if err := json.Unmarshal([]byte(out), &checks); err != nil {
		return fmt.Sprintf("unreadable (%v): %s", err, out)
	}
	if len(checks) == 0 {
		return "none yet"
	}
	last := checks[len(checks)-1]
	return fmt.Sprintf("exit %d %q", last.ExitCode, strings.TrimSpace(last.Output))
}

// logs returns the last lines of a node's log, for failure messages.
func (c *cluster) logs(service string, lines int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append(append([]string{}, c.env.compose...), "-f", c.env.composeFile, "-p", c.env.project,
		"logs", "--no-color", "--tail", fmt.Sprint(lines), service)
	out, err := run(ctx, argv)
	if err != nil {
		return err.Error()
	}
	return out
}
