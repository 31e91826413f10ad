package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// fakeNodes is an in-memory Nodes server: a drained node loses one replica
// per DescribeNode call, so that `node drain` sees progress before the end.
type fakeNodes struct {
	rifflev1.UnimplementedNodesServer
	mu    sync.Mutex
	nodes map[string]*rifflev1.NodeDescription
	order []string
}

func newFakeNodes() *fakeNodes {
	f := &fakeNodes{nodes: map[string]*rifflev1.NodeDescription{}}
	for i, id := range []string{"n1", "n2", "n3", "n4"} {
		role := rifflev1.MetadataRole_METADATA_ROLE_VOTER
		if i == 0 {
			role = rifflev1.MetadataRole_METADATA_ROLE_LEADER
		} else if i == 3 {
			role = rifflev1.MetadataRole_METADATA_ROLE_NONVOTER
		}
		f.nodes[id] = &rifflev1.NodeDescription{NodeId: id, Address: "127.0.0.1:" + string(rune('1'+i)) + "000",
			State: rifflev1.NodeState_NODE_STATE_ALIVE, Alive: true, Replicas: 3, MovableReplicas: 3, Leaders: 1, MetadataRole: role}
		f.order = append(f.order, id)
	}
	return f
}

func (f *fakeNodes) start(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	rifflev1.RegisterNodesServer(s, f)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func (f *fakeNodes) ListNodes(context.Context, *rifflev1.ListNodesRequest) (*rifflev1.ListNodesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &rifflev1.ListNodesResponse{}
	for _, id := range f.order {
		out.Nodes = append(out.Nodes, f.nodes[id])
	}
	return out, nil
}

func (f *fakeNodes) get(id string) (*rifflev1.NodeDescription, error) {
	n, ok := f.nodes[id]
	if !ok {
		return nil, brokerErr(codes.NotFound, "ResourceNotFoundException", false, "node %s not found", id)
	}
	return n, nil
}

func (f *fakeNodes) DescribeNode(_ context.Context, req *rifflev1.DescribeNodeRequest) (*rifflev1.DescribeNodeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.get(req.NodeId)
	if err != nil {
		return nil, err
	}
	if n.Draining && n.Replicas > 0 {
		n.Replicas--
		n.MovableReplicas--
		n.MovesOut = min(1, n.Replicas)
		n.Leaders = 0
		if n.Replicas == 0 {
			n.State = rifflev1.NodeState_NODE_STATE_DRAINED
		}
	}
	return &rifflev1.DescribeNodeResponse{Node: n}, nil
}

func (f *fakeNodes) DrainNode(_ context.Context, req *rifflev1.DrainNodeRequest) (*rifflev1.DrainNodeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.get(req.NodeId)
	if err != nil {
		return nil, err
	}
	if req.NodeId == "n1" {
		return nil, brokerErr(codes.InvalidArgument, "InvalidArgumentException", false, "drain refused: draining n1 would leave 2 nodes for shards of 3 replicas")
	}
	n.Draining, n.State = true, rifflev1.NodeState_NODE_STATE_DRAINING
	return &rifflev1.DrainNodeResponse{Node: n}, nil
}

func (f *fakeNodes) UndrainNode(_ context.Context, req *rifflev1.UndrainNodeRequest) (*rifflev1.UndrainNodeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.get(req.NodeId)
	if err != nil {
		return nil, err
	}
	n.Draining, n.State = false, rifflev1.NodeState_NODE_STATE_ALIVE
	return &rifflev1.UndrainNodeResponse{Node: n}, nil
}

// TestNodeListPrintsEveryNode checks the table and JSON of `node list`.
func TestNodeListPrintsEveryNode(t *testing.T) {
	addr := newFakeNodes().start(t)
	code, out, errOut := runCLI(t, "", "node", "list", "--addr", addr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "NODE") || !strings.Contains(lines[1], "leader") || !strings.Contains(lines[4], "nonvoter") {
		t.Fatalf("table:\n%s", out)
	}
	code, out, errOut = runCLI(t, "", "node", "list", "--addr", addr, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got struct{ Nodes []nodeJSON }
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(got.Nodes) != 4 || got.Nodes[0].MetadataRole != "leader" || got.Nodes[2].State != "alive" || got.Nodes[3].Replicas != 3 {
		t.Errorf("json nodes %+v", got.Nodes)
	}
}

// TestNodeDrainWaitsAndReportsProgress checks that `node drain` reports
// progress on stderr until the node is drained, prints it, and that
// unknown nodes and refused drains exit with the documented codes.
func TestNodeDrainWaitsAndReportsProgress(t *testing.T) {
	f := newFakeNodes()
	addr := f.start(t)
	code, out, errOut := runCLI(t, "", "node", "drain", "n3", "--addr", addr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "riffle: draining n3: 2 replicas left") || !strings.Contains(errOut, "n3 drained after") {
		t.Errorf("progress:\n%s", errOut)
	}
	if !strings.Contains(out, "n3") || !strings.Contains(out, "drained") {
		t.Errorf("output:\n%s", out)
	}

	code, _, errOut = runCLI(t, "", "node", "drain", "n9", "--addr", addr)
	if code != exitNotFound || !strings.Contains(errOut, "ResourceNotFoundException") {
		t.Errorf("unknown node: exit %d, %s", code, errOut)
	}
	code, _, errOut = runCLI(t, "", "node", "drain", "n1", "--addr", addr)
	if code != exitFailure || !strings.Contains(errOut, "InvalidArgumentException") || !strings.Contains(errOut, "drain refused") {
		t.Errorf("refused drain: exit %d, %s", code, errOut)
	}

	// --no-wait returns while the drain goes on; undrain and --cancel stop it.
	code, out, errOut = runCLI(t, "", "node", "drain", "n2", "--no-wait", "--json", "--addr", addr)
	var n nodeJSON
	if err := json.Unmarshal([]byte(out), &n); code != 0 || err != nil || n.State != "draining" {
		t.Errorf("--no-wait: exit %d, %v, %+v, %s", code, err, n, errOut)
	}
	for _, args := range [][]string{{"node", "undrain", "n2"}, {"node", "drain", "--cancel", "n2"}} {
		code, out, errOut = runCLI(t, "", append(args, "--addr", addr)...)
		if code != 0 || !strings.Contains(out, "alive") {
			t.Errorf("%v: exit %d, %s %s", args, code, out, errOut)
		}
	}
	if code, _, _ := runCLI(t, "", "node", "drain", "--addr", addr); code != exitUsage {
		t.Errorf("drain without a node: exit %d", code)
	}
	if code, _, _ := runCLI(t, "", "node", "drain", "n2", "--cancel", "--no-wait", "--addr", addr); code != exitUsage {
		t.Errorf("--cancel with --no-wait: exit %d", code)
	}
}
