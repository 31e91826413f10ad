package cluster

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMembershipReconnectsAfterBothSidesDeclaredDead: when two nodes each
// count the other dead (a partition that outlasted failure detection),
// gossip alone never brings them together again, since memberlist only
// talks to members it thinks alive. The reconnect loop must. Here node b
// stops without leaving, so a declares it dead, then b starts again on its
// address knowing no seed: only a's reconnect can merge them.
func TestMembershipReconnectsAfterBothSidesDeclaredDead(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(id, bind string, join []string) *Membership {
		t.Helper()
		m, err := StartMembership(MembershipOptions{NodeID: id, BindAddr: bind, GRPCAddr: "127.0.0.1:1", Join: join, Fast: true, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Shutdown() })
		return m
	}
	a := start("a", "127.0.0.1:0", nil)
	aAddr := fmt.Sprintf("127.0.0.1:%d", a.ml.LocalNode().Port)
	b := start("b", "127.0.0.1:0", []string{aAddr})
	bAddr := fmt.Sprintf("127.0.0.1:%d", b.ml.LocalNode().Port)
	waitUntil(t, "a and b see each other", func() bool {
		return slices.Equal(a.Alive(), []string{"a", "b"}) && slices.Equal(b.Alive(), []string{"a", "b"})
	})

	b.Shutdown() // no leave: a must find b dead
	waitUntil(t, "a counts b dead", func() bool { return slices.Equal(a.Alive(), []string{"a"}) })
	if mem := member(a, "b"); mem.Left || mem.GossipAddr != bAddr {
		t.Fatalf("a's record of b = %+v, want failed (not left) at %s", mem, bAddr)
	}

	var b2 *Membership
	deadline := time.Now().Add(5 * time.Second)
	for b2 == nil {
		m, err := StartMembership(MembershipOptions{NodeID: "b", BindAddr: bAddr, GRPCAddr: "127.0.0.1:1", Fast: true, Logger: quiet})
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("restarting b on %s: %v", bAddr, err)
			}
			time.Sleep(50 * time.Millisecond) // the port is released asynchronously
			continue
		}
		b2 = m
	}
	t.Cleanup(func() { b2.Shutdown() })
	waitUntil(t, "a and the restarted b, which knows no seed, see each other", func() bool {
		return slices.Equal(a.Alive(), []string{"a", "b"}) && slices.Equal(b2.Alive(), []string{"a", "b"})
	})
}

func member(m *Membership, id string) Member {
	for _, mem := range m.Members() {
		if mem.ID == id {
			return mem
		}
	}
	return Member{}
}

// TestMembershipRefusesAnotherCluster: a node of another cluster that
// reaches this one (a reconnection to an address another cluster's node
// took over, or a wrong seed) is refused, and neither side's members
// change.
func TestMembershipRefusesAnotherCluster(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func(id, cluster string) *Membership {
		t.Helper()
		m, err := StartMembership(MembershipOptions{NodeID: id, BindAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:1", ClusterID: cluster, Fast: true, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Shutdown() })
		m.SetClusterID(cluster)
		return m
	}
	a := start("a", "cluster-a")
	b := start("b", "cluster-b")
	if n, err := b.ml.Join([]string{fmt.Sprintf("127.0.0.1:%d", a.ml.LocalNode().Port)}); n > 0 || err == nil || !strings.Contains(err.Error(), ErrForeignCluster.Error()) {
		t.Fatalf("b joined a's cluster: %d nodes reached, err %v; want refused with ErrForeignCluster", n, err)
	}
	if got := a.Alive(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("a's members after the refused join: %v", got)
	}
	if got := b.Alive(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("b's members after the refused join: %v", got)
	}
}
