package tests

import (
	"context"
	"fmt"
	"testing"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// TestWALMetrics: a node's /metrics shows its write-ahead log, and the
// figures follow the writes: PutRecords calls over four shards add WAL
// records and bytes at least their data's size, each write syncs one or
// more records, and every shard replica is a group in it.
func TestWALMetrics(t *testing.T) {
	tn := startNode(t, tempDataDir(t))
	c, ctx := tn.client, context.Background()
	createStream(t, c, "walm", 4)
	metric := func(name string) float64 { t.Helper(); return adminMetric(t, tn, name) }
	records0, bytes0 := metric("riffle_wal_records_total"), metric("riffle_wal_bytes_total")
	const calls, per, size = 20, 50, 1000
	for i := range calls {
		req := &rifflev1.PutRecordsRequest{StreamName: "walm"}
		for j := range per {
			req.Records = append(req.Records, &rifflev1.PutRecordsRequestEntry{PartitionKey: fmt.Sprint(i, "-", j), Data: make([]byte, size)})
		}
		if out, err := c.PutRecords(ctx, req); err != nil || out.FailedRecordCount != 0 {
			t.Fatalf("PutRecords: %v %v", out, err)
		}
	}
	records, bytes := metric("riffle_wal_records_total")-records0, metric("riffle_wal_bytes_total")-bytes0
	writes := metric("riffle_wal_writes_total")
	if records < calls || bytes < calls*per*size {
		t.Errorf("after %d PutRecords of %d KB: %v WAL records, %v bytes", calls, per*size/1000, records, bytes)
	}
	if writes < 1 || writes > metric("riffle_wal_records_total") {
		t.Errorf("%v WAL writes for %v records", writes, metric("riffle_wal_records_total"))
	}
	if g := metric("riffle_wal_groups"); g < 4 {
		t.Errorf("riffle_wal_groups %v, want the stream's 4 replicas at least", g)
	}
	if s := metric("riffle_wal_segments"); s < 1 {
		t.Errorf("riffle_wal_segments %v", s)
	}
}
