package shardlog

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// cut disconnects replica i's transport from the others, both ways.
func (g *raftTrio) cut(i int) {
	for j, tr := range g.trans {
		if j != i && tr != nil {
			tr.Disconnect(raft.ServerAddress(trioID(i)))
			g.trans[i].Disconnect(raft.ServerAddress(trioID(j)))
		}
	}
}

// mend connects replica i's transport to the others again.
func (g *raftTrio) mend(i int) {
	for j, tr := range g.trans {
		if j != i && tr != nil {
			tr.Connect(raft.ServerAddress(trioID(i)), g.trans[i])
			g.trans[i].Connect(raft.ServerAddress(trioID(j)), tr)
		}
	}
}

// TestShardInstallOverDivergentLog is the fault run's "log not found"
// panic (hashicorp/raft#697): a leader cut off from its followers appends
// entries nobody else gets; the others elect a leader, commit more than
// the trailing entries in a later term and compact; when the old leader
// comes back its log runs past their snapshot and conflicts with it, so
// the only way to bring it up to date is that snapshot. Raft would empty
// its log and go on believing it holds entries it does not. Instead the
// install is refused and the replica asks to be reopened (as the host
// does for it); reopened on a log reconciled with the snapshot, it fetches
// the snapshot's records, follows the leader, and holds every
// acknowledged record in the leader's order.
func TestShardInstallOverDivergentLog(t *testing.T) {
	if testing.Short() {
		t.Skip("three replicas and a few hundred writes")
	}
	// A lease long enough that the cut-off leader takes the entries
	// below before it steps down.
	g := &raftTrio{t: t, timing: RaftTiming{HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond,
		LeaderLease: 500 * time.Millisecond, CommitTimeout: 5 * time.Millisecond}}
	g.start()
	old := g.leader()
	acked := appendN(t, g.shards[old], 4, 40, "before")
	base := g.shards[old].Raft().LastIndex()
	waitFor(t, func() bool {
		for _, s := range g.shards {
			if s.Raft().AppliedIndex() < base {
				return false
			}
		}
		return true
	})

	g.cut(old)
	const divergent = 300
	for range divergent {
		g.shards[old].Raft().Apply([]byte("never committed"), 0) // stored on the old leader only
	}
	waitFor(t, func() bool { return g.shards[old].Raft().LastIndex() >= base+divergent })

	var others []int
	for i := range 3 {
		if i != old {
			others = append(others, i)
		}
	}
	var nl int
	waitFor(t, func() bool {
		for _, i := range others {
			if g.shards[i].IsLeader() {
				nl = i
				return true
			}
		}
		return false
	})
	// One raft entry per write, past TrailingLogs (64), then snapshots
	// that compact the conflicting region away on both.
	for k, v := range appendN(t, g.shards[nl], 1, 150, "after-cut") {
		acked[k] = v
	}
	for _, i := range others {
		if err := g.shards[i].Raft().Snapshot().Error(); err != nil {
			t.Fatalf("snapshot on n%d: %v", i+1, err)
		}
	}
	first, _ := g.shards[nl].entries.FirstIndex()
	snapIndex := g.shards[nl].Raft().LastIndex()
	if first <= base+1 || g.shards[old].Raft().LastIndex() <= snapIndex {
		t.Fatalf("setup: leader's log starts at %d (must be past %d) and the old leader's ends at %d (must be past %d)",
			first, base+1, g.shards[old].Raft().LastIndex(), snapIndex)
	}

	g.mend(old)
	// The old leader either catches up, or refuses the install and asks
	// to be reopened, which the host would do.
	var refused error
	waitFor(t, func() bool {
		refused = g.shards[old].NeedsReopen()
		return refused != nil || g.shards[old].Raft().AppliedIndex() >= snapIndex
	})
	if refused != nil {
		if !errors.Is(refused, ErrLogConflictsWithSnapshot) {
			t.Fatalf("NeedsReopen = %v, want ErrLogConflictsWithSnapshot", refused)
		}
		g.close(old)
		g.open(old, logFetcher(g.shards[nl].Log(), 50))
	}
	for k, v := range appendN(t, g.shards[g.leader()], 2, 20, "after-mend") {
		acked[k] = v
	}
	leaderLog := g.shards[g.leader()].Log()
	waitFor(t, func() bool { return g.shards[old].Log().NextOffset() == leaderLog.NextOffset() })
	checkHolds(t, g.shards[old].Log(), acked)
	sameLog(t, g.shards[old].Log(), leaderLog)
	if err := g.shards[old].NeedsReopen(); err != nil {
		t.Fatalf("the reopened replica needs reopening again: %v", err)
	}
	if refused == nil {
		t.Error("the old leader caught up without a refused install: the divergent log never met the snapshot")
	}
}
