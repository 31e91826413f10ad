package cluster

import (
	"context"
	"errors"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// How the metadata leader learns each shard's write rate. A shard's writes
// are admitted on its leader, so each node counts, per shard of an
// ON_DEMAND stream it leads, the records and bytes it appended (two atomic
// adds per append) and keeps a small sample of their hash keys. The
// metadata leader polls every live node with the Forward RPC
// ShardWriteRates once per OnDemandOptions.Interval and turns two
// successive counts of a node into a rate (onDemandView.observe). Nothing goes through raft: a poll costs
// one small RPC per node, and only while some stream is ON_DEMAND.

// hashSamples is how many recent hash keys a meter keeps for the median.
const hashSamples = 64

// samplesPerAppend bounds the keys hashed per append, so that a batch of
// 500 records costs a few MD5 sums, not 500.
const samplesPerAppend = 4

// writeMeter counts what one shard's leader on this node appended.
type writeMeter struct {
	streamID, index uint64
	epoch           uint64
	records, bytes  atomic.Uint64

	mu     sync.Mutex
	hashes [hashSamples]*big.Int
	next   int // where the next sample goes
}

// writeMeters are this node's meters by group id. The zero value is ready.
type writeMeters struct {
	epochs atomic.Uint64
	mu     sync.Mutex
	groups map[string]*writeMeter
}

func (m *writeMeters) get(s *Stream, sh *Shard) *writeMeter {
	gid := s.GroupID(sh)
	m.mu.Lock()
	defer m.mu.Unlock()
	wm := m.groups[gid]
	if wm == nil {
		if m.groups == nil {
			m.groups = map[string]*writeMeter{}
		}
		wm = &writeMeter{streamID: s.ID, index: sh.Index, epoch: m.epochs.Add(1)}
		m.groups[gid] = wm
	}
	return wm
}

// record counts appended entries and samples their hash keys.
func (wm *writeMeter) record(entries []shardlog.Entry) {
	if len(entries) == 0 {
		return
	}
	var size uint64
	for _, e := range entries {
		size += uint64(len(e.PartitionKey) + len(e.Data))
	}
	wm.records.Add(uint64(len(entries)))
	wm.bytes.Add(size)
	step := max(len(entries)/samplesPerAppend, 1)
	var keys []*big.Int
	for i := 0; i < len(entries) && len(keys) < samplesPerAppend; i += step {
		keys = append(keys, PartitionHash(entries[i].PartitionKey))
	}
	wm.mu.Lock()
	for _, k := range keys {
		wm.hashes[wm.next] = k
		wm.next = (wm.next + 1) % hashSamples
	}
	wm.mu.Unlock()
}

// median is the median of the sampled hash keys inside r, nil without any.
// Keys outside r come from explicit hash keys (the sample hashes partition
// keys) and are left out.
func (wm *writeMeter) median(r HashRange) *big.Int {
	wm.mu.Lock()
	var in []*big.Int
	for _, k := range wm.hashes {
		if k != nil && r.Contains(k) {
			in = append(in, k)
		}
	}
	wm.mu.Unlock()
	if len(in) == 0 {
		return nil
	}
	slices.SortFunc(in, func(a, b *big.Int) int { return a.Cmp(b) })
	return in[len(in)/2]
}

// recordWrite counts a write appended on this node as the shard's leader,
// for on-demand scaling: entries is what was appended.
func (h *Host) recordWrite(s *Stream, sh *Shard, entries []shardlog.Entry) {
	if s.Mode != ModeOnDemand || len(entries) == 0 {
		return
	}
	h.meters.get(s, sh).record(entries)
}

// writeCounts reports this node's meters of open shards it still runs, and
// forgets the others.
func (h *Host) writeCounts() []*internalv1.ShardWriteCount {
	st := h.meta.State()
	h.meters.mu.Lock()
	meters := make(map[string]*writeMeter, len(h.meters.groups))
	for gid, wm := range h.meters.groups {
		meters[gid] = wm
	}
	h.meters.mu.Unlock()
	var out []*internalv1.ShardWriteCount
	for gid, wm := range meters {
		s, ok := st.StreamByID(wm.streamID)
		var sh *Shard
		if ok {
			sh, _ = s.ShardByIndex(wm.index)
		}
		if sh == nil || !sh.Open() || s.Mode != ModeOnDemand {
			h.meters.mu.Lock()
			delete(h.meters.groups, gid)
			h.meters.mu.Unlock()
			continue
		}
		c := &internalv1.ShardWriteCount{StreamId: wm.streamID, ShardIndex: wm.index, Epoch: wm.epoch,
			Records: wm.records.Load(), Bytes: wm.bytes.Load()}
		if m := wm.median(sh.HashRange()); m != nil {
			c.MedianHashKey = m.String()
		}
		out = append(out, c)
	}
	return out
}

// ShardWriteRates implements the internal Forward service.
func (s forwardServer) ShardWriteRates(ctx context.Context, _ *internalv1.ShardWriteRatesRequest) (*internalv1.ShardWriteRatesResponse, error) {
	return &internalv1.ShardWriteRatesResponse{Shards: s.h.writeCounts()}, nil
}

// pollWriteCounts asks every live node, this one included, for its counts,
// in parallel; a node that does not answer within the interval is left out
// and reported in failed.
func (h *Host) pollWriteCounts(ctx context.Context, timeout time.Duration) (counts map[string][]*internalv1.ShardWriteCount, failed []string) {
	nodes := h.opts.Membership.Alive()
	counts = make(map[string][]*internalv1.ShardWriteCount, len(nodes))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range nodes {
		if id == h.opts.NodeID {
			mu.Lock()
			counts[id] = h.writeCounts()
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			client, err := h.forwardClient(id)
			var resp *internalv1.ShardWriteRatesResponse
			if err == nil {
				resp, err = client.ShardWriteRates(pctx, &internalv1.ShardWriteRatesRequest{})
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case status.Code(err) == codes.Unimplemented:
				// A node of an older version, during a rolling upgrade:
				// the shards it leads look idle until it is upgraded,
				// which is better than stalling every stream's decisions.
				counts[id] = nil
			case err != nil:
				failed = append(failed, id)
			default:
				counts[id] = resp.Shards
			}
		})
	}
	wg.Wait()
	return counts, failed
}

// recordAppended counts what an append on the local leader wrote: all of
// entries on success, the admitted prefix when the limits refused the rest.
func (h *Host) recordAppended(s *Stream, sh *Shard, entries []shardlog.Entry, err error) {
	n := len(entries)
	if err != nil {
		var throttled *ThrottledError
		if !errors.As(err, &throttled) {
			return
		}
		n = min(throttled.Admitted, n)
	}
	h.recordWrite(s, sh, entries[:n])
}
