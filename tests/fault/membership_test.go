//go:build fault

package fault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// The membership nemesis changes which nodes hold the shards while the
// workload runs. Each replica it moves is a raft configuration change of
// that shard's group (a non-voter added, caught up, promoted, the old voter
// removed), and a drain also moves shard leaderships and the metadata vote.
// Three nodes with three replicas a shard leave no room to move anything,
// so it works with the compose file's spare fourth node:
//
//   - spare out: it starts, joins the cluster and balancing moves replicas
//     onto it;
//   - spare in, half the time: it is drained and stopped (SIGTERM, so it
//     leaves gossip) once nothing a drain moves is left on it;
//   - spare in, otherwise: one of the three is drained onto the others and
//     then undrained, and balancing moves replicas back to it later, during
//     the faults that follow.
//
// Half the time the change runs inside another fault, injected after the
// change was asked for and healed before waiting for its end.
func init() {
	nemeses["membership"] = nemesis{kind: "membership", hold: 5 * time.Second, inject: injectMembership}
}

// membershipTimeout bounds each wait of the membership nemesis after its
// companion fault was healed: for the spare to serve, for balancing to put
// replicas on it, for a drain to finish. Longer is a failed recovery.
const membershipTimeout = 3 * time.Minute

// membershipCompanions are the faults a membership change may run inside.
var membershipCompanions = []string{"kill-one", "kill-shard-leader", "pause-leader", "partition-isolate", "partition-oneway", "packet-loss"}

func injectMembership(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
	ctx := context.Background()
	var desc string
	var finish func() error
	var err error
	switch {
	case !spareIn.Load():
		desc, finish, err = c.joinSpare(ctx)
	case rng.IntN(2) == 0:
		desc, finish, err = c.retireSpare(ctx)
	default:
		desc, finish, err = c.drainAndUndrain(ctx, pick(rng, nodeNames()))
	}
	if err != nil || finish == nil {
		return desc, nil, err
	}
	heal := finish
	if rng.IntN(2) == 0 {
		companion := nemeses[pick(rng, membershipCompanions)]
		d, h, err := companion.inject(c, rng)
		desc += " during " + d
		if h == nil {
			h = func() error { return nil }
		}
		heal = func() error { return errors.Join(h(), finish()) }
		if err != nil {
			return desc, heal, err
		}
	}
	return desc, heal, nil
}

// joinSpare starts the spare node (created on first use) and waits until
// it serves; the returned finish waits until balancing has placed replicas
// on it.
func (c *dockerCluster) joinSpare(ctx context.Context) (string, func() error, error) {
	n := spareNode.service
	c.mu.Lock()
	id := c.ids[n]
	c.mu.Unlock()
	if id == "" {
		if _, err := c.run(ctx, append(c.composeArgs(), "up", "-d", "--no-deps", n)...); err != nil {
			return "membership join " + n, nil, err
		}
		id, err := c.run(ctx, append(c.composeArgs(), "ps", "-q", n)...)
		if err != nil || id == "" {
			return "membership join " + n, nil, fmt.Errorf("no container for %s after up (%q): %v", n, id, err)
		}
		c.mu.Lock()
		c.ids[n] = id
		c.mu.Unlock()
	} else if err := c.start(n); err != nil {
		return "membership join " + n, nil, err
	}
	spareIn.Store(true)
	if err := c.applyNet(n); err != nil {
		return "membership join " + n, nil, err
	}
	if err := waitFor(ctx, membershipTimeout, func() error { return serving(ctx, spareNode) }); err != nil {
		return "membership join " + n, nil, fmt.Errorf("%s not serving: %w", n, err)
	}
	// A drain of an earlier stay outlives the process: the cluster keeps
	// it in its metadata until the node is undrained.
	if err := c.nodesCall(ctx, func(ctx context.Context, nc rifflev1.NodesClient) error {
		_, err := nc.UndrainNode(ctx, &rifflev1.UndrainNodeRequest{NodeId: n})
		return err
	}); err != nil {
		return "membership join " + n, nil, fmt.Errorf("undrain %s: %w", n, err)
	}
	finish := func() error {
		return c.waitNode(ctx, n, "to hold replicas", func(d *rifflev1.NodeDescription) bool { return d.GetReplicas() > 0 })
	}
	return "membership join " + n, finish, nil
}

// retireSpare drains the spare node; the returned finish waits until the
// drain is done and stops the node, which leaves the cluster.
func (c *dockerCluster) retireSpare(ctx context.Context) (string, func() error, error) {
	n := spareNode.service
	desc := "membership drain-and-stop " + n
	if refused, err := c.drain(ctx, n); err != nil || refused != nil {
		return refusedDesc(desc, refused), nil, err
	}
	finish := func() error {
		if err := c.waitNode(ctx, n, "drained", drained); err != nil {
			return err
		}
		if _, err := c.dockerCmd("stop", c.ids[n]); err != nil {
			return err
		}
		c.mu.Lock()
		c.stopped[n] = true
		c.mu.Unlock()
		spareIn.Store(false)
		return nil
	}
	return desc, finish, nil
}

// drainAndUndrain drains one of the three nodes; the returned finish waits
// until the drain is done and undrains it.
func (c *dockerCluster) drainAndUndrain(ctx context.Context, n string) (string, func() error, error) {
	desc := "membership drain-undrain " + n
	if refused, err := c.drain(ctx, n); err != nil || refused != nil {
		return refusedDesc(desc, refused), nil, err
	}
	finish := func() error {
		if err := c.waitNode(ctx, n, "drained", drained); err != nil {
			return err
		}
		return c.nodesCall(ctx, func(ctx context.Context, nc rifflev1.NodesClient) error {
			_, err := nc.UndrainNode(ctx, &rifflev1.UndrainNodeRequest{NodeId: n})
			return err
		})
	}
	return desc, finish, nil
}

func refusedDesc(desc string, refused error) string {
	if refused != nil {
		return fmt.Sprintf("%s refused: %v", desc, refused)
	}
	return desc
}

func drained(d *rifflev1.NodeDescription) bool {
	return d.GetState() == rifflev1.NodeState_NODE_STATE_DRAINED
}

// drain asks the cluster to drain node. A refusal (InvalidArgument: too
// few nodes left, say because an earlier fault's node is not back in
// gossip yet) is returned as refused, not as an error: the nemesis did
// nothing, and says so.
func (c *dockerCluster) drain(ctx context.Context, node string) (refused, err error) {
	err = c.nodesCall(ctx, func(ctx context.Context, nc rifflev1.NodesClient) error {
		_, err := nc.DrainNode(ctx, &rifflev1.DrainNodeRequest{NodeId: node})
		if status.Code(err) == codes.InvalidArgument {
			refused = err
			return nil
		}
		return err
	})
	return refused, err
}

// waitNode polls DescribeNode until cond holds for node, for at most
// membershipTimeout.
func (c *dockerCluster) waitNode(ctx context.Context, node, what string, cond func(*rifflev1.NodeDescription) bool) error {
	var last *rifflev1.NodeDescription
	nodes := nodeNames()
	attempt := 0
	err := waitFor(ctx, membershipTimeout, func() error {
		via := nodes[attempt%len(nodes)]
		attempt++
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		out, err := rifflev1.NewNodesClient(c.work.clients[via].Conn()).DescribeNode(cctx, &rifflev1.DescribeNodeRequest{NodeId: node})
		if err != nil {
			return fmt.Errorf("DescribeNode %s via %s: %w", node, via, err)
		}
		if last = out.GetNode(); !cond(last) {
			return fmt.Errorf("%s not %s", node, what)
		}
		return nil
	})
	if err != nil && last != nil {
		err = fmt.Errorf("%w (state %v, replicas %d, movable %d, moves in %d out %d, metadata %v)", err,
			last.GetState(), last.GetReplicas(), last.GetMovableReplicas(), last.GetMovesIn(), last.GetMovesOut(), last.GetMetadataRole())
	}
	return err
}

// nodesCall makes one Nodes API call through the three nodes in turn until
// one answers (a node down or cut off cannot), for at most reshardTimeout.
func (c *dockerCluster) nodesCall(ctx context.Context, call func(context.Context, rifflev1.NodesClient) error) error {
	nodes := nodeNames()
	attempt := 0
	return waitFor(ctx, reshardTimeout, func() error {
		node := nodes[attempt%len(nodes)]
		attempt++
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		if err := call(cctx, rifflev1.NewNodesClient(c.work.clients[node].Conn())); err != nil {
			return fmt.Errorf("via %s: %w", node, err)
		}
		return nil
	})
}
