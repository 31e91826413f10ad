//go:build fault

package fault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// nemesis is one kind of fault: inject starts it and returns what it did
// and how to heal it.
type nemesis struct {
	kind string
	// hold is how long the fault lasts before it is healed.
	hold   time.Duration
	inject func(c *dockerCluster, rng *rand.Rand) (desc string, heal func() error, err error)
}

// recoveryTimeout bounds the wait for every node to serve again after a
// fault is healed; longer is a failed recovery, reported as such.
const recoveryTimeout = 2 * time.Minute

// pauseHold is longer than raft's election timeout (1 s) and memberlist's
// failure detection (about 5 s), so the paused node is voted out and
// declared dead before it comes back with its old term and leases.
const pauseHold = 8 * time.Second

func pick(rng *rand.Rand, xs []string) string { return xs[rng.IntN(len(xs))] }

// others are the member nodes but one.
func others(node string) []string {
	var out []string
	for _, n := range faultNodeNames() {
		if n != node {
			out = append(out, n)
		}
	}
	return out
}

// killNodes kills the nodes and heals by starting them again.
func killNodes(c *dockerCluster, nodes []string) (func() error, error) {
	var errs []error
	for _, n := range nodes {
		errs = append(errs, c.kill(n))
	}
	heal := func() error {
		var errs []error
		for _, n := range nodes {
			errs = append(errs, c.start(n))
		}
		return errors.Join(errs...)
	}
	return heal, errors.Join(errs...)
}

// leaderOr names the node a leader-aimed fault hits: the leader found by
// find, or a random node when no node says it leads.
func leaderOr(rng *rand.Rand, find func() string) string {
	if n := find(); n != "" {
		return n
	}
	return pick(rng, faultNodeNames())
}

// nemeses are every fault the harness injects, by kind.
var nemeses = map[string]nemesis{
	"kill-one": {kind: "kill-one", hold: 8 * time.Second, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		n := pick(rng, faultNodeNames())
		heal, err := killNodes(c, []string{n})
		return "kill-one " + n, heal, err
	}},
	"kill-meta-leader": {kind: "kill-meta-leader", hold: 8 * time.Second, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		n := leaderOr(rng, metaLeader)
		heal, err := killNodes(c, []string{n})
		return "kill-meta-leader " + n, heal, err
	}},
	"kill-shard-leader": {kind: "kill-shard-leader", hold: 8 * time.Second, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		n := leaderOr(rng, busiestShardLeader)
		heal, err := killNodes(c, []string{n})
		return "kill-shard-leader " + n, heal, err
	}},
	"kill-majority": {kind: "kill-majority", hold: 8 * time.Second, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		nodes := others(pick(rng, faultNodeNames()))
		heal, err := killNodes(c, nodes)
		return "kill-majority " + strings.Join(nodes, ","), heal, err
	}},
	"kill-all": {kind: "kill-all", hold: 5 * time.Second, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		heal, err := killNodes(c, faultNodeNames())
		return "kill-all", heal, err
	}},
	"pause-one": {kind: "pause-one", hold: pauseHold, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		n := pick(rng, faultNodeNames())
		return "pause-one " + n, func() error { return c.unpause(n) }, c.pause(n)
	}},
	"pause-leader": {kind: "pause-leader", hold: pauseHold, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		n := leaderOr(rng, busiestShardLeader)
		return "pause-leader " + n, func() error { return c.unpause(n) }, c.pause(n)
	}},
	// One node cut off from both others, both ways: with three nodes this
	// is also the majority/minority split.
	"partition-isolate": {kind: "partition-isolate", hold: 12 * time.Second, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		n := pick(rng, faultNodeNames())
		drops := map[string][]string{n: others(n)}
		for _, o := range others(n) {
			drops[o] = []string{n}
		}
		return "partition-isolate " + n, healNet(c), c.setNet(netFaults{drops: drops})
	}},
	// A node isolated, then killed and started again inside the partition:
	// its new network namespace gets the rules again (applyNet on start),
	// so it comes back still cut off, with its raft state from disk.
	"kill-isolated": {kind: "kill-isolated", hold: 12 * time.Second, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		n := pick(rng, faultNodeNames())
		drops := map[string][]string{n: others(n)}
		for _, o := range others(n) {
			drops[o] = []string{n}
		}
		err := errors.Join(c.setNet(netFaults{drops: drops}), c.kill(n), c.start(n))
		return "kill-isolated " + n, healNet(c), err
	}},
	// Two nodes cut from each other, both still seeing the third: each
	// side sees a different majority, with the bridge in both.
	"partition-bridge": {kind: "partition-bridge", hold: 12 * time.Second, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		bridge := pick(rng, faultNodeNames())
		o := others(bridge)
		drops := map[string][]string{o[0]: {o[1]}, o[1]: {o[0]}}
		return fmt.Sprintf("partition-bridge %s-x-%s via %s", o[0], o[1], bridge), healNet(c), c.setNet(netFaults{drops: drops})
	}},
	// One node hears nobody, while everybody hears it: its heartbeats and
	// votes go out, the answers never come back.
	"partition-oneway": {kind: "partition-oneway", hold: 12 * time.Second, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		n := pick(rng, faultNodeNames())
		return "partition-oneway " + n + " deaf", healNet(c), c.setNet(netFaults{drops: map[string][]string{n: others(n)}})
	}},
	// A node killed, then some of its shard segment files damaged on disk
	// (random bytes flipped in some, others truncated; sealed and active
	// segments alike) before it starts again. It must find the damage when
	// it opens its replicas and fetch those records again from its peers
	// (or replay them from raft) before serving them; the checkers find
	// anything lost, changed or diverging.
	"corrupt-files": {kind: "corrupt-files", hold: 8 * time.Second, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		n := pick(rng, faultNodeNames())
		heal, err := killNodes(c, []string{n})
		if err == nil {
			err = c.waitStopped(n)
		}
		var dir string
		if err == nil {
			dir, err = c.dataDir(n)
		}
		var did []string
		if err == nil {
			did, err = corruptSegments(dir, rng, 4)
		}
		// With the spare in, every shard has a node holding none of it, to
		// rebuild a replica whose raft state is damaged on: half the time
		// one replica's raft log or raft store (term, vote, configuration)
		// is, and the fault heals once the node has refused that replica
		// and the cluster has rebuilt it elsewhere.
		if err == nil && spareIn.Load() && rng.IntN(2) == 0 {
			var group, what string
			if rng.IntN(2) == 0 {
				group, what, err = corruptWAL(dir, rng)
			} else {
				group, what, err = corruptRaftStore(dir, rng)
			}
			if group != "" {
				did = append(did, what)
				start := heal
				heal = func() error {
					if err := start(); err != nil {
						return err
					}
					return waitRebuilt(n, group)
				}
			}
		}
		return fmt.Sprintf("corrupt-files %s (%s)", n, strings.Join(did, "; ")), heal, err
	}},
	// Every node's outgoing packets delayed 100 ms +- 50 ms with tc netem;
	// where the kernel lacks sch_netem, the link squeezed to 128 kbit/s
	// with up to 500 ms of queue instead (what does not fit is dropped).
	"slow-link": {kind: "slow-link", hold: 15 * time.Second, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		return "slow-link netem 100ms+-50ms or tbf 128kbit", healNet(c), c.setNet(netFaults{qdiscs: []string{
			"netem delay 100ms 50ms", "tbf rate 128kbit burst 8kbit latency 500ms"}})
	}},
	// A fifth of the packets between nodes lost at random, every way.
	"packet-loss": {kind: "packet-loss", hold: 15 * time.Second, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		return "packet-loss 20%", healNet(c), c.setNet(netFaults{loss: 0.2})
	}},
	// One node's wall clock steps minutes to hours ahead or back, then
	// back to the real time (a second step, the other way). Aimed at the
	// busiest shard leader: its clock stamps arrival times.
	"clock-jump": {kind: "clock-jump", hold: 15 * time.Second, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		n := leaderOr(rng, busiestShardLeader)
		offset := time.Duration(2+rng.IntN(178)) * time.Minute
		if rng.IntN(2) == 0 {
			offset = -offset
		}
		heal := func() error { return setClockOffset(n, 0) }
		return fmt.Sprintf("clock-jump %s %+v", n, offset), heal, setClockOffset(n, offset)
	}},
}

// waitRebuilt waits until node, started again with damaged raft state in
// its replica of group, has refused to start that replica (it is listed on
// /debug/replicas/failed) and then no longer lists it: the replica was
// rebuilt on another node and its data here deleted. The refusal must be
// seen within a minute of the start, the rebuild within
// membershipTimeout. The polls are 100 ms apart, so that a quick rebuild
// is not missed between them.
func waitRebuilt(node, group string) error {
	seen := false
	deadline := time.Now().Add(time.Minute)
	for ; !seen; time.Sleep(100 * time.Millisecond) {
		failed, err := failedReplicas(node)
		seen = err == nil && failed[group] != ""
		if !seen && time.Now().After(deadline) {
			return fmt.Errorf("%s never refused its replica %s with a damaged raft log (last: %v %v)", node, group, failed, err)
		}
	}
	return waitFor(context.Background(), membershipTimeout, func() error {
		failed, err := failedReplicas(node)
		if err != nil {
			return err
		}
		if why := failed[group]; why != "" {
			return fmt.Errorf("%s's replica %s is still failed, not rebuilt elsewhere: %s", node, group, why)
		}
		return nil
	})
}

// The reshard nemesis injects other nemeses, so it joins the map after it
// is built.
func init() {
	// A split of a random open shard at a random key, or a merge of two
	// adjacent ones, through the API; half the time inside another fault,
	// injected first and healed after the hold. A reshard the cluster
	// refuses within reshardTimeout (the fault may prevent it) is in the
	// description, not a harness error: it is unavailability.
	nemeses["reshard"] = nemesis{kind: "reshard", hold: 5 * time.Second, inject: func(c *dockerCluster, rng *rand.Rand) (string, func() error, error) {
		var during string
		var heal func() error
		if rng.IntN(2) == 0 {
			companion := nemeses[pick(rng, reshardCompanions)]
			d, h, err := companion.inject(c, rng)
			if err != nil {
				return "reshard during " + d, h, err
			}
			during, heal = " during "+d, h
		}
		what, err := c.work.reshard(context.Background(), rng)
		desc := "reshard " + what + during
		if err != nil {
			desc = fmt.Sprintf("reshard%s refused: %v", during, err)
		}
		return desc, heal, nil
	}}
}

// reshardCompanions are the faults a reshard may run inside.
var reshardCompanions = []string{"kill-one", "kill-meta-leader", "kill-shard-leader", "pause-leader", "partition-isolate", "partition-oneway", "clock-jump"}

func healNet(c *dockerCluster) func() error {
	return func() error { return c.setNet(netFaults{}) }
}

// applyFault runs one nemesis window: inject, hold, heal, then wait until
// every node serves again. The window is recorded as a nemesis operation:
// ok when the cluster recovered, info (and an error) when it did not.
func applyFault(ctx context.Context, c *dockerCluster, rec *Recorder, rng *rand.Rand, n nemesis, logf func(string, ...any)) error {
	start := time.Now()
	desc, heal, err := n.inject(c, rng)
	rec.Record(Op{Type: Invoke, F: FNemesis, Process: "nemesis", Value: desc, Time: start})
	logf("nemesis: %s", desc)
	if err == nil {
		pause(ctx, n.hold)
	}
	if heal != nil {
		err = errors.Join(err, heal())
	}
	if err == nil {
		err = waitAllServing(ctx, recoveryTimeout)
	}
	if err != nil {
		rec.Record(Op{Type: Info, F: FNemesis, Process: "nemesis", Value: desc, Error: err.Error()})
		return fmt.Errorf("%s: %w", desc, err)
	}
	rec.Record(Op{Type: OK, F: FNemesis, Process: "nemesis", Value: desc})
	logf("nemesis: %s healed, every node serving after %v", desc, time.Since(start).Round(100*time.Millisecond))
	return nil
}
