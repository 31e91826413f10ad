package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// SplitShard implements riffle.v1.Streams. It returns once the split has
// started: the stream is UPDATING until the children take writes.
func (s *Server) SplitShard(ctx context.Context, req *rifflev1.SplitShardRequest) (*rifflev1.SplitShardResponse, error) {
	st, err := s.stream(ctx, req.StreamName, req.StreamArn)
	if err != nil {
		return nil, err
	}
	if verr := checkShardID(req.ShardToSplit); verr != nil {
		return nil, verr
	}
	if req.NewStartingHashKey == "" {
		return nil, validation("new_starting_hash_key is required")
	}
	if _, ok := st.ShardByID(req.ShardToSplit); !ok {
		return nil, notFound("shard %s of stream %s not found", req.ShardToSplit, st.Name)
	}
	return &rifflev1.SplitShardResponse{}, s.host.SplitShard(ctx, st.Name, req.ShardToSplit, req.NewStartingHashKey)
}

// MergeShards implements riffle.v1.Streams. It returns once the merge has
// started: the stream is UPDATING until the child takes writes.
func (s *Server) MergeShards(ctx context.Context, req *rifflev1.MergeShardsRequest) (*rifflev1.MergeShardsResponse, error) {
	st, err := s.stream(ctx, req.StreamName, req.StreamArn)
	if err != nil {
		return nil, err
	}
	for _, id := range []string{req.ShardToMerge, req.AdjacentShardToMerge} {
		if verr := checkShardID(id); verr != nil {
			return nil, verr
		}
		if _, ok := st.ShardByID(id); !ok {
			return nil, notFound("shard %s of stream %s not found", id, st.Name)
		}
	}
	if req.ShardToMerge == req.AdjacentShardToMerge {
		return nil, invalidArgument("a shard cannot be merged with itself")
	}
	return &rifflev1.MergeShardsResponse{}, s.host.MergeShards(ctx, st.Name, req.ShardToMerge, req.AdjacentShardToMerge)
}

// listedShards are the shards DescribeStream and ListShards show: a
// resharding's children appear once they take writes, so that a client
// never sees two open shards for one hash key.
func listedShards(st *cluster.Stream) []*cluster.Shard {
	out := make([]*cluster.Shard, 0, len(st.Shards))
	for _, sh := range st.Shards {
		if !sh.Pending {
			out = append(out, sh)
		}
	}
	return out
}

// placed is where one record of a write landed, or why it did not.
type placed struct {
	shard  *cluster.Shard
	offset uint64
	err    error
}

// maxReroutes bounds how many seals one write follows (a child may itself
// be split while the write waits).
const maxReroutes = 3

// switchWait bounds how long a write refused by a sealed parent waits for
// the hash-range switch to reach this node's metadata.
const switchWait = 10 * time.Second

// appendRouted writes recs, which the metadata routed to sh, and returns
// each record's placement in order. A write refused by a sealed parent was
// not applied (shardlog.ErrShardSealed proves it): it waits for the switch
// to the children and is routed again by hash, so it is neither lost nor
// acknowledged twice, and it lands after everything the parent holds.
func (s *Server) appendRouted(ctx context.Context, op string, st *cluster.Stream, sh *cluster.Shard, recs []record, depth int) []placed {
	out := make([]placed, len(recs))
	res, err := s.append(ctx, op, st, sh, recs)
	if errors.Is(err, shardlog.ErrShardSealed) && depth < maxReroutes {
		next, werr := s.waitClosed(ctx, st.ID, sh.Index)
		if werr == nil {
			s.appendByShard(ctx, op, next, recs, out, depth+1)
			return out
		}
		err = werr
	}
	admitted := 0
	var throttled *cluster.ThrottledError
	if errors.As(err, &throttled) {
		admitted = throttled.Admitted
	}
	for j := range recs {
		if err != nil && j >= admitted {
			out[j].err = err
			continue
		}
		out[j] = placed{shard: sh, offset: res.FirstOffset + uint64(j)}
	}
	return out
}

// appendByShard writes recs to the open shards of st covering their hash
// keys, the parts in parallel, and fills out in request order. Records of
// one key stay in one part, in request order. PutRecords uses it for a
// request, appendRouted for a part a sealed parent refused (depth counts
// those re-routings).
func (s *Server) appendByShard(ctx context.Context, op string, st *cluster.Stream, recs []record, out []placed, depth int) {
	type part struct {
		shard   *cluster.Shard
		indexes []int
		recs    []record
	}
	byShard := map[uint64]*part{}
	var parts []*part
	for i, r := range recs {
		sh, ok := st.ShardForHash(r.hash)
		if !ok {
			out[i].err = unavailable("no open shard of %s covers hash key %s (not applied; retry)", st.Name, r.hash)
			continue
		}
		p := byShard[sh.Index]
		if p == nil {
			p = &part{shard: sh}
			byShard[sh.Index] = p
			parts = append(parts, p)
		}
		p.indexes = append(p.indexes, i)
		p.recs = append(p.recs, r)
	}
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() {
			for j, pl := range s.appendRouted(ctx, op, st, p.shard, p.recs, depth) {
				out[p.indexes[j]] = pl
			}
		})
	}
	wg.Wait()
}

// waitClosed waits until this node's metadata shows the shard closed (the
// switch to its children applied) and returns the stream as it is then.
func (s *Server) waitClosed(ctx context.Context, streamID, index uint64) (*cluster.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, switchWait)
	defer cancel()
	for {
		changed := s.host.Meta().Changed()
		st, ok := s.host.Meta().State().StreamByID(streamID)
		if !ok || st.Status == cluster.StreamDeleting {
			return nil, notFound("the stream was deleted")
		}
		// A shard gone from the metadata expired after it closed.
		if sh, ok := st.ShardByIndex(index); !ok || sh.Closed() {
			return st, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			e := unavailable("shard %s is sealed and its children do not take writes yet (not applied; retry)", cluster.ShardID(index))
			e.Transient, e.RetryAfter = true, 200*time.Millisecond
			return nil, e
		}
	}
}

// UpdateShardCount implements riffle.v1.Streams. It returns once the
// scaling has started: the stream is UPDATING until its open shards are
// the target count's even ranges, reached by splits and merges.
func (s *Server) UpdateShardCount(ctx context.Context, req *rifflev1.UpdateShardCountRequest) (*rifflev1.UpdateShardCountResponse, error) {
	st, err := s.stream(ctx, req.StreamName, req.StreamArn)
	if err != nil {
		return nil, err
	}
	if req.ScalingType != rifflev1.ScalingType_SCALING_TYPE_UNIFORM_SCALING {
		return nil, validation("scaling_type must be UNIFORM_SCALING")
	}
	if req.TargetShardCount < 1 {
		return nil, validation("target_shard_count must be at least 1")
	}
	if req.TargetShardCount > MaxShardsPerStream {
		return nil, newError(LimitExceeded, "target_shard_count %d exceeds the limit of %d shards per stream", req.TargetShardCount, MaxShardsPerStream)
	}
	current, err := s.host.UpdateShardCount(ctx, st.Name, int(req.TargetShardCount))
	if err != nil {
		return nil, err
	}
	return &rifflev1.UpdateShardCountResponse{StreamName: st.Name, StreamArn: st.ARN(),
		CurrentShardCount: int32(current), TargetShardCount: req.TargetShardCount}, nil
}
