package tests

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// BenchmarkLeaderFailover measures, with the default raft timeouts, the time
// from killing a shard's leader (as a crash: no handoff) to the first write
// to that shard acknowledged through a surviving node. Each iteration kills
// the current leader and restarts it afterwards. Reports the median, p90
// and max over the iterations:
//
//	go test -run XXX -bench LeaderFailover -benchtime 10x ./tests/
func BenchmarkLeaderFailover(b *testing.B) {
	c := startClusterOpts(b, &testCluster{t: b, expect: 3, raft: shardlog.RaftTiming{}})
	createStream(b, c.nodes[0].client, "failover", 1)
	var took []time.Duration
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		leader := shardLeader(b, c, "failover")
		c.kill(leader)
		survivor := c.nodes[(leader+1)%3]
		start := time.Now()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := survivor.client.PutRecord(ctx, &rifflev1.PutRecordRequest{StreamName: "failover", PartitionKey: "k", Data: []byte(fmt.Sprint(it))})
			cancel()
			if err == nil {
				break
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("no write acknowledged a minute after killing the leader: %v", err)
			}
		}
		took = append(took, time.Since(start))
		b.StopTimer()
		c.restart(leader)
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "ms-median")
	b.ReportMetric(float64(took[len(took)*9/10].Milliseconds()), "ms-p90")
	b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "ms-max")
	b.Logf("failover times: %v", took)
}

// shardLeader finds the node leading shard 0 of a stream.
func shardLeader(t testing.TB, c *testCluster, stream string) int {
	t.Helper()
	leader := -1
	waitFor(t, 30*time.Second, "a shard leader", func() error {
		for i, n := range c.nodes {
			if n == nil || n.conn == nil {
				continue
			}
			st := n.Host().Meta().State().Streams[stream]
			if st == nil {
				continue
			}
			if r, err := n.Host().Shard(st, st.Shards[0]); err == nil && r.IsLeader() {
				leader = i
				return nil
			}
		}
		return fmt.Errorf("no leader")
	})
	return leader
}
