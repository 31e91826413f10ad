package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// ListShards lists a stream's shards, filtered as Kinesis's ShardFilter
// says. Like Kinesis it never lists expired shards: a closed shard whose
// close lies more than the retention period back holds no record any more
// (cluster.Stream.ShardExpired). The choice is made from the metadata, not
// from a local replica's log, so every node gives the same answer whether
// or not it holds the shard, and a node's retention pass running late does
// not keep a drained shard listed.

// listShardsToken continues a ListShards listing. It carries the filter,
// so that next_token alone continues a filtered listing, as in Kinesis.
type listShardsToken struct {
	Stream string `json:"s"`
	// StreamID tells a recreated stream of the same name from the one
	// the listing started on.
	StreamID uint64    `json:"i,omitempty"`
	After    string    `json:"a"`
	Filter   int32     `json:"f,omitempty"`
	At       time.Time `json:"t,omitzero"`
}

// shardFilter is a validated ShardFilter; the zero type lists every
// retained shard (FROM_TRIM_HORIZON, Kinesis's default).
type shardFilter struct {
	typ rifflev1.ShardFilterType
	// shardID bounds AFTER_SHARD_ID.
	shardID string
	// at is the time of AT_TIMESTAMP and FROM_TIMESTAMP.
	at time.Time
}

// filterName is the filter type as Kinesis spells it.
func filterName(t rifflev1.ShardFilterType) string {
	return strings.TrimPrefix(t.String(), "SHARD_FILTER_TYPE_")
}

// knownFilter reports whether t is one of Kinesis's filter types.
func knownFilter(t rifflev1.ShardFilterType) bool {
	_, ok := rifflev1.ShardFilterType_name[int32(t)]
	return ok && t != rifflev1.ShardFilterType_SHARD_FILTER_TYPE_UNSPECIFIED
}

// parseShardFilter checks a request's filter: a type is required; shard_id
// goes with AFTER_SHARD_ID and only with it; timestamp goes with
// AT_TIMESTAMP and FROM_TIMESTAMP and only with them.
func parseShardFilter(f *rifflev1.ShardFilter) (shardFilter, *Error) {
	if f == nil {
		return shardFilter{}, nil
	}
	typ := f.GetType()
	if typ == rifflev1.ShardFilterType_SHARD_FILTER_TYPE_UNSPECIFIED {
		return shardFilter{}, validation("shard_filter.type is required")
	}
	if !knownFilter(typ) {
		return shardFilter{}, validation("shard_filter.type %d is not a filter type", int32(typ))
	}
	out := shardFilter{typ: typ}
	if typ == rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AFTER_SHARD_ID {
		if f.ShardId == "" {
			return shardFilter{}, invalidArgument("shard_filter type AFTER_SHARD_ID needs shard_id")
		}
		if verr := checkShardID(f.ShardId); verr != nil {
			return shardFilter{}, verr
		}
		out.shardID = f.ShardId
	} else if f.ShardId != "" {
		return shardFilter{}, invalidArgument("shard_filter.shard_id goes with type AFTER_SHARD_ID, not %s", filterName(typ))
	}
	timed := typ == rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TIMESTAMP || typ == rifflev1.ShardFilterType_SHARD_FILTER_TYPE_FROM_TIMESTAMP
	switch {
	case timed && f.Timestamp == nil:
		return shardFilter{}, invalidArgument("shard_filter type %s needs timestamp", filterName(typ))
	case timed:
		if err := f.Timestamp.CheckValid(); err != nil {
			return shardFilter{}, validation("shard_filter.timestamp: %v", err)
		}
		out.at = f.Timestamp.AsTime()
	case f.Timestamp != nil:
		return shardFilter{}, invalidArgument("shard_filter.timestamp goes with types AT_TIMESTAMP and FROM_TIMESTAMP, not %s", filterName(typ))
	}
	return out, nil
}

// filterShards returns, in index order, the shards of st that f selects at
// now. Pending children are never listed (a client must not see two open
// shards for one key) and expired shards are gone, as in Kinesis.
//
//   - FROM_TRIM_HORIZON (and no filter), AFTER_SHARD_ID: every retained shard
//     (the bound of AFTER_SHARD_ID is applied when paging).
//   - AT_TRIM_HORIZON: the retained shards none of whose parents is
//     retained: the generation a TRIM_HORIZON reader starts from.
//   - AT_LATEST: the open shards.
//   - AT_TIMESTAMP: the shards open at f.at, opened at or before it and not
//     closed before it.
//   - FROM_TIMESTAMP: the shards not closed before f.at: those open at it
//     and every shard opened later.
func filterShards(st *cluster.Stream, f shardFilter, now time.Time) []*cluster.Shard {
	retained := func(sh *cluster.Shard) bool { return !sh.Pending && !st.ShardExpired(sh, now) }
	retainedID := func(id string) bool {
		sh, ok := st.ShardByID(id)
		return ok && retained(sh)
	}
	var out []*cluster.Shard
	for _, sh := range st.Shards {
		if !retained(sh) {
			continue
		}
		closedAt, closed := st.ShardClosedAt(sh)
		keep := true
		switch f.typ {
		case rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TRIM_HORIZON:
			keep = !(sh.Parent != "" && retainedID(sh.Parent)) && !(sh.AdjacentParent != "" && retainedID(sh.AdjacentParent))
		case rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_LATEST:
			keep = sh.Open()
		case rifflev1.ShardFilterType_SHARD_FILTER_TYPE_AT_TIMESTAMP:
			keep = !st.ShardOpenedAt(sh).After(f.at) && (!closed || !closedAt.Before(f.at))
		case rifflev1.ShardFilterType_SHARD_FILTER_TYPE_FROM_TIMESTAMP:
			keep = !closed || !closedAt.Before(f.at)
		}
		if keep {
			out = append(out, sh)
		}
	}
	return out
}

// ListShards implements riffle.v1.Streams.
func (s *Server) ListShards(ctx context.Context, req *rifflev1.ListShardsRequest) (*rifflev1.ListShardsResponse, error) {
	limit, verr := limitOrDefault("max_results", req.MaxResults, DefaultListShards)
	if verr != nil {
		return nil, verr
	}
	name, arn, after := req.StreamName, req.StreamArn, req.ExclusiveStartShardId
	var filter shardFilter
	var streamID uint64
	if req.NextToken != "" {
		if name != "" || arn != "" || after != "" || req.ShardFilter != nil {
			return nil, invalidArgument("next_token cannot be combined with stream_name, stream_arn, exclusive_start_shard_id or shard_filter")
		}
		tok, verr := decodeListShardsToken(req.NextToken)
		if verr != nil {
			return nil, verr
		}
		name, after, streamID = tok.Stream, tok.After, tok.StreamID
		filter = shardFilter{typ: rifflev1.ShardFilterType(tok.Filter), at: tok.At}
	} else {
		if after != "" {
			if verr := checkShardID(after); verr != nil {
				return nil, verr
			}
		}
		if filter, verr = parseShardFilter(req.ShardFilter); verr != nil {
			return nil, verr
		}
		// Both bounds are exclusive: the later one decides.
		after = max(after, filter.shardID)
	}
	st, err := s.stream(ctx, name, arn)
	if err != nil {
		return nil, err
	}
	if streamID != 0 && streamID != st.ID {
		return nil, notFound("stream %s of next_token was deleted; list the new one from the start", st.Name)
	}
	shards, more, verr := pageShards(filterShards(st, filter, s.now()), after, limit)
	if verr != nil {
		return nil, verr
	}
	resp := &rifflev1.ListShardsResponse{Shards: shardsToProto(shards)}
	if more {
		b, _ := json.Marshal(listShardsToken{Stream: st.Name, StreamID: st.ID, After: shards[len(shards)-1].ID(),
			Filter: int32(filter.typ), At: filter.at})
		resp.NextToken = base64.RawURLEncoding.EncodeToString(b)
	}
	return resp, nil
}

// decodeListShardsToken reads a next_token; one that does not decode, or
// names no filter Kinesis has, was not written by ListShards.
func decodeListShardsToken(s string) (listShardsToken, *Error) {
	var tok listShardsToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &tok) != nil || tok.Stream == "" ||
		(tok.Filter != 0 && !knownFilter(rifflev1.ShardFilterType(tok.Filter))) {
		return listShardsToken{}, invalidArgument("next_token is malformed")
	}
	return tok, nil
}
