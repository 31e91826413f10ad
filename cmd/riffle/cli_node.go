package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/riffle-streams/riffle/client"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

var nodeListCommand = &command{
	path:     "node list",
	synopsis: "",
	summary:  "list the cluster's nodes: state, replicas, leaderships, metadata role",
	details: `
Calls ListNodes (Riffle's Nodes service, not a Kinesis API). One row per
node gossip has seen or the metadata places replicas on:
  STATE     alive, dead, draining or drained
  REPLICAS  shard replicas placed on the node
  LEADERS   shard groups it leads ("?" when it could not be asked)
  MOVES     replica moves in flight onto (+) and off (-) it
  METADATA  its part in the metadata group: leader, voter, nonvoter, none
--json prints {"nodes":[{...}]}.`,
	newVerb: func() verb { return &nodeList{} },
}

var nodeDrainCommand = &command{
	path:     "node drain",
	synopsis: "NODE [--no-wait] [--wait D] [--cancel]",
	summary:  "move every replica, leadership and metadata vote off a node",
	details: `
Calls DrainNode: the node takes no new replicas, and the cluster moves its
replicas (of open shards) to other nodes one or two at a time, hands its
shard leaderships to other replicas and, when another node can take it,
its metadata vote. Writes and reads go on throughout. Prints progress to
stderr and the node once drained (--no-wait: at once); --wait bounds the
whole drain (default 30m). A drain that would leave fewer nodes than a
shard's replicas, or none, is refused (InvalidArgumentException). --cancel
is 'riffle node undrain'.`,
	newVerb: func() verb { return &nodeDrain{} },
}

var nodeUndrainCommand = &command{
	path:     "node undrain",
	synopsis: "NODE",
	summary:  "let a draining node take replicas again",
	details: `
Calls UndrainNode: moves in flight finish, and balancing brings replicas
back onto the node over time.`,
	newVerb: func() verb { return &nodeDrain{cancel: true} },
}

// nodeJSON is one node in --json output.
type nodeJSON struct {
	NodeID          string `json:"node_id"`
	Address         string `json:"address,omitempty"`
	State           string `json:"state"`
	Replicas        int32  `json:"replicas"`
	MovableReplicas int32  `json:"movable_replicas"`
	Leaders         int32  `json:"leaders"`
	MovesIn         int32  `json:"moves_in"`
	MovesOut        int32  `json:"moves_out"`
	MetadataRole    string `json:"metadata_role"`
}

func toNodeJSON(n *rifflev1.NodeDescription) nodeJSON {
	return nodeJSON{NodeID: n.GetNodeId(), Address: n.GetAddress(),
		State:    strings.ToLower(strings.TrimPrefix(n.GetState().String(), "NODE_STATE_")),
		Replicas: n.GetReplicas(), MovableReplicas: n.GetMovableReplicas(), Leaders: n.GetLeaders(),
		MovesIn: n.GetMovesIn(), MovesOut: n.GetMovesOut(),
		MetadataRole: strings.ToLower(strings.TrimPrefix(n.GetMetadataRole().String(), "METADATA_ROLE_"))}
}

func writeNodeTable(w io.Writer, nodes []nodeJSON) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tSTATE\tREPLICAS\tLEADERS\tMOVES\tMETADATA")
	for _, n := range nodes {
		leaders := strconv.Itoa(int(n.Leaders))
		if n.Leaders < 0 {
			leaders = "?"
		}
		moves := "-"
		if n.MovesIn+n.MovesOut > 0 {
			moves = fmt.Sprintf("+%d/-%d", n.MovesIn, n.MovesOut)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", n.NodeID, dash(n.Address), n.State, n.Replicas, leaders, moves, n.MetadataRole)
	}
	return tw.Flush()
}

type nodeList struct{ connFlags }

func (c *nodeList) bind(fs *flag.FlagSet) { c.connFlags.bind(fs) }

func (c *nodeList) validate(_ *flag.FlagSet, args []string) error { return noPositional(args) }

func (c *nodeList) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	callCtx, cancel := c.call(ctx)
	resp, err := rifflev1.NewNodesClient(cl.Conn()).ListNodes(callCtx, &rifflev1.ListNodesRequest{})
	cancel()
	if err != nil {
		return err
	}
	rows := make([]nodeJSON, 0, len(resp.GetNodes()))
	for _, n := range resp.GetNodes() {
		rows = append(rows, toNodeJSON(n))
	}
	if c.json {
		return writeJSON(std.out, map[string][]nodeJSON{"nodes": rows})
	}
	return writeNodeTable(std.out, rows)
}

// defaultDrainWait bounds how long `node drain` waits for the drain.
const defaultDrainWait = 30 * time.Minute

type nodeDrain struct {
	connFlags
	node   string
	cancel bool
	noWait bool
	wait   time.Duration
}

func (c *nodeDrain) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	if !c.cancel { // undrain takes no flags of its own
		fs.BoolVar(&c.noWait, "no-wait", false, "return once the drain has started")
		fs.DurationVar(&c.wait, "wait", defaultDrainWait, "how long to wait for the drain to finish")
		fs.BoolVar(&c.cancel, "cancel", false, "stop draining: the node takes replicas again")
	}
}

func (c *nodeDrain) validate(fs *flag.FlagSet, args []string) (err error) {
	if c.node, err = exactlyOne(args, "node id"); err != nil {
		return err
	}
	if c.wait < 0 {
		return fmt.Errorf("--wait must not be negative, got %v", c.wait)
	}
	if c.cancel && (isSet(fs, "no-wait") || isSet(fs, "wait")) {
		return errors.New("--cancel returns at once: --no-wait and --wait do not apply")
	}
	return nil
}

func (c *nodeDrain) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	nodes := rifflev1.NewNodesClient(cl.Conn())
	callCtx, cancel := c.call(ctx)
	var n *rifflev1.NodeDescription
	if c.cancel {
		var resp *rifflev1.UndrainNodeResponse
		resp, err = nodes.UndrainNode(callCtx, &rifflev1.UndrainNodeRequest{NodeId: c.node})
		n = resp.GetNode()
	} else {
		var resp *rifflev1.DrainNodeResponse
		resp, err = nodes.DrainNode(callCtx, &rifflev1.DrainNodeRequest{NodeId: c.node})
		n = resp.GetNode()
	}
	cancel()
	if err != nil {
		return err
	}
	if !c.cancel && !c.noWait {
		if n, err = c.waitDrained(ctx, nodes, std.err); err != nil {
			return err
		}
	}
	if c.json {
		return writeJSON(std.out, toNodeJSON(n))
	}
	return writeNodeTable(std.out, []nodeJSON{toNodeJSON(n)})
}

// waitDrained polls DescribeNode until the node is drained, telling
// progress whenever it changes and at least every ten seconds.
func (c *nodeDrain) waitDrained(ctx context.Context, nodes rifflev1.NodesClient, progress io.Writer) (*rifflev1.NodeDescription, error) {
	waitCtx, cancel := context.WithTimeout(ctx, c.wait)
	defer cancel()
	start := time.Now()
	last, lastAt := "", time.Time{}
	for {
		callCtx, callCancel := c.call(waitCtx)
		resp, err := nodes.DescribeNode(callCtx, &rifflev1.DescribeNodeRequest{NodeId: c.node})
		callCancel()
		switch {
		case err == nil:
			n := resp.GetNode()
			if n.GetState() == rifflev1.NodeState_NODE_STATE_DRAINED {
				fmt.Fprintf(progress, "riffle: %s drained after %s\n", c.node, time.Since(start).Round(time.Second))
				return n, nil
			}
			if !n.GetDraining() {
				return nil, fmt.Errorf("node %s is no longer draining (undrained meanwhile?)", c.node)
			}
			leaders := strconv.Itoa(int(n.GetLeaders()))
			if n.GetLeaders() < 0 {
				leaders = "?"
			}
			line := fmt.Sprintf("%d replicas left (%d to move), %d moves in flight, %s leaderships, metadata %s",
				n.GetReplicas(), n.GetMovableReplicas(), n.GetMovesOut(), leaders, toNodeJSON(n).MetadataRole)
			if line != last || time.Since(lastAt) > 10*time.Second {
				fmt.Fprintf(progress, "riffle: draining %s: %s\n", c.node, line)
				last, lastAt = line, time.Now()
			}
		case waitCtx.Err() != nil:
		case client.IsRetryable(err):
		default:
			return nil, err
		}
		if sleepCtx(waitCtx, 250*time.Millisecond) != nil {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("node %s not drained after %s (%s): %w", c.node, c.wait, last, context.DeadlineExceeded)
		}
	}
}
