package shardlog

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Catch-up. A snapshot is only a manifest of the records the segments held,
// and raft compacts its log behind snapshots. A replica that was away while
// that happened is sent the manifest alone (or, after a crash during such an
// install, finds it in its own snapshot store at startup) and must copy the
// records it lacks from another replica before it can go on applying
// entries. The copy goes through a Fetcher, which the cluster provides:
// this package knows nothing about peers.

// FetchRequest asks for the committed records [From, To) of the shard.
type FetchRequest struct {
	From, To uint64
	// Leader is the group's leader as this replica knows it, empty when
	// unknown: the replica most likely to hold every record.
	Leader raft.ServerID
}

// FetchedChunk is a run of records copied from a peer's replica.
type FetchedChunk struct {
	// Horizon is the peer's trim horizon when it read Records. When it is
	// above the offset asked for, retention deleted the records below it.
	Horizon TrimHorizon
	// Records are consecutive, in offset order, as the peer stores them
	// (LastInBatch included). They start at the offset following the
	// previous chunk's records (at From for the first chunk) or, when
	// Horizon.Offset is above that offset, at Horizon.Offset.
	Records []Record
}

// Fetcher copies the records req asks for from other replicas of the shard,
// handing them to sink chunk by chunk, and returns once it has delivered
// every record below req.To, or failed to. It may switch replicas midway,
// resuming after the last record delivered. An error from sink ends the
// fetch with that error. ctx ends when the replica closes.
type Fetcher func(ctx context.Context, req FetchRequest, sink func(FetchedChunk) error) error

// catchUp makes the log hold every record m names, fetching the ones it
// lacks from peers. It returns an error wrapping ErrMissingData when it
// cannot: raft then retries the snapshot install later, and at startup the
// replica refuses to start.
func (f *fsm) catchUp(m manifest, why string) error {
	next := f.log.NextOffset()
	if next >= m.NextOffset {
		return nil
	}
	if f.fetch == nil {
		return fmt.Errorf("shardlog: replica holds records below %d, snapshot needs %d and no peer to fetch from: %w",
			next, m.NextOffset, ErrMissingData)
	}
	req := FetchRequest{From: next, To: m.NextOffset}
	if f.leader != nil {
		req.Leader = f.leader()
	}
	f.logger.Info("shardlog: fetching missing records from peers", "reason", why,
		"from", req.From, "to", req.To, "leader", req.Leader)
	start := time.Now()
	im := &importer{log: f.log}
	ferr := f.fetch(f.ctx, req, im.take)
	if err := f.log.Sync(); err != nil && ferr == nil {
		ferr = err
	}
	elapsed := time.Since(start)
	if got := f.log.NextOffset(); got < m.NextOffset {
		return fmt.Errorf("shardlog: fetched records up to %d of %d in %v (%v): %w",
			got, m.NextOffset, elapsed.Round(time.Millisecond), ferr, ErrMissingData)
	}
	if ferr != nil {
		// Everything needed arrived; what failed came after it.
		f.logger.Warn("shardlog: fetch ended with an error after catching up", "err", ferr)
	}
	f.logger.Info("shardlog: caught up from peers", "reason", why,
		"from", req.From, "nextOffset", f.log.NextOffset(), "trimOffset", f.log.TrimOffset(),
		"records", im.records, "bytes", im.bytes, "elapsed", elapsed.Round(time.Millisecond),
		"MiBps", fmt.Sprintf("%.1f", float64(im.bytes)/(1<<20)/max(elapsed.Seconds(), 1e-9)))
	return nil
}

// importer takes fetched chunks into the log, whole batches at a time: a
// chunk may end inside a batch, whose start then waits for the next chunk.
type importer struct {
	log     *Log
	pending []Record // the start of a batch whose last record has not arrived
	records int      // imported, for the log line
	bytes   int64
}

func (im *importer) take(c FetchedChunk) error {
	if c.Horizon.Offset > im.log.NextOffset() {
		// The peer no longer holds what this log lacks: start where the
		// peer's records start. A pending partial batch is below that.
		im.pending = nil
		if err := im.log.RestartAt(c.Horizon); err != nil {
			return err
		}
	}
	recs := c.Records
	if len(im.pending) > 0 {
		recs = append(im.pending, recs...)
	}
	cut := len(recs)
	for cut > 0 && !recs[cut-1].LastInBatch {
		cut--
	}
	if err := im.log.Import(recs[:cut]); err != nil {
		return err
	}
	for _, r := range recs[:cut] {
		im.bytes += int64(len(r.PartitionKey) + len(r.Data))
	}
	im.records += cut
	im.pending = append([]Record(nil), recs[cut:]...)
	return nil
}
