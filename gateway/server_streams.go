package gateway

import (
	"context"
	"encoding/base64"
	"sort"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// CreateStream implements riffle.v1.Streams.
func (s *Server) CreateStream(ctx context.Context, req *rifflev1.CreateStreamRequest) (*rifflev1.CreateStreamResponse, error) {
	if err := checkStreamName(req.StreamName); err != nil {
		return nil, err
	}
	mode := cluster.ModeProvisioned
	shardCount := req.ShardCount
	switch req.GetStreamModeDetails().GetStreamMode() {
	case rifflev1.StreamMode_STREAM_MODE_UNSPECIFIED, rifflev1.StreamMode_STREAM_MODE_PROVISIONED:
	case rifflev1.StreamMode_STREAM_MODE_ON_DEMAND:
		// Kinesis refuses a shard count with ON_DEMAND: the cluster picks it.
		if req.ShardCount != 0 {
			return nil, invalidArgument("shard_count must not be set for an ON_DEMAND stream (it starts with %d shards)", cluster.OnDemandInitialShards)
		}
		mode, shardCount = cluster.ModeOnDemand, cluster.OnDemandInitialShards
	default:
		return nil, validation("unknown stream mode %v", req.StreamModeDetails.StreamMode)
	}
	if shardCount < 1 {
		return nil, validation("shard_count %d must be at least 1", req.ShardCount)
	}
	if req.ShardCount > MaxShardsPerStream {
		return nil, newError(LimitExceeded, "shard_count %d exceeds the limit of %d shards per stream", req.ShardCount, MaxShardsPerStream)
	}
	if len(req.Tags) > MaxTags {
		return nil, validation("%d tags exceed the limit of %d", len(req.Tags), MaxTags)
	}
	if len(req.Tags) > 0 {
		if verr := checkTags(req.Tags, MaxTags); verr != nil {
			return nil, verr
		}
	}
	limits, verr := limitOverrides(req.ShardLimits)
	if verr != nil {
		return nil, verr
	}
	err := s.host.CreateStream(ctx, cluster.CreateStreamCmd{
		Name:           req.StreamName,
		ShardCount:     int(shardCount),
		Mode:           mode,
		RetentionHours: DefaultRetentionHours,
		CreatedAt:      s.now().UTC().Truncate(1e6),
		Tags:           req.Tags,
		Limits:         limits,
	})
	if err != nil {
		return nil, err
	}
	s.logger.Info("stream created", "stream", req.StreamName, "shards", shardCount, "mode", mode)
	return &rifflev1.CreateStreamResponse{}, nil
}

// DeleteStream implements riffle.v1.Streams.
func (s *Server) DeleteStream(ctx context.Context, req *rifflev1.DeleteStreamRequest) (*rifflev1.DeleteStreamResponse, error) {
	st, err := s.stream(ctx, req.StreamName, req.StreamArn)
	if err != nil {
		return nil, err
	}
	if err := s.host.ProposeMeta(ctx, cluster.Command{DeleteStream: &cluster.DeleteStreamCmd{
		Name: st.Name, EnforceConsumerDeletion: req.EnforceConsumerDeletion}}); err != nil {
		return nil, err
	}
	s.logger.Info("stream deleted", "stream", st.Name)
	return &rifflev1.DeleteStreamResponse{}, nil
}

// DescribeStream implements riffle.v1.Streams.
func (s *Server) DescribeStream(ctx context.Context, req *rifflev1.DescribeStreamRequest) (*rifflev1.DescribeStreamResponse, error) {
	st, err := s.stream(ctx, req.StreamName, req.StreamArn)
	if err != nil {
		return nil, err
	}
	limit, verr := limitOrDefault("limit", req.Limit, DefaultDescribeLimit)
	if verr != nil {
		return nil, verr
	}
	shards, more, verr := pageShards(listedShards(st), req.ExclusiveStartShardId, limit)
	if verr != nil {
		return nil, verr
	}
	return &rifflev1.DescribeStreamResponse{StreamDescription: &rifflev1.StreamDescription{
		StreamName:              st.Name,
		StreamArn:               st.ARN(),
		StreamStatus:            streamStatus(st.Status),
		StreamModeDetails:       streamMode(st.Mode),
		Shards:                  shardsToProto(shards),
		HasMoreShards:           more,
		RetentionPeriodHours:    int32(st.RetentionHours),
		StreamCreationTimestamp: timestamppb.New(st.CreatedAt),
	}}, nil
}

// DescribeStreamSummary implements riffle.v1.Streams.
func (s *Server) DescribeStreamSummary(ctx context.Context, req *rifflev1.DescribeStreamSummaryRequest) (*rifflev1.DescribeStreamSummaryResponse, error) {
	st, err := s.stream(ctx, req.StreamName, req.StreamArn)
	if err != nil {
		return nil, err
	}
	return &rifflev1.DescribeStreamSummaryResponse{StreamDescriptionSummary: &rifflev1.StreamDescriptionSummary{
		StreamName:              st.Name,
		StreamArn:               st.ARN(),
		StreamStatus:            streamStatus(st.Status),
		StreamModeDetails:       streamMode(st.Mode),
		RetentionPeriodHours:    int32(st.RetentionHours),
		StreamCreationTimestamp: timestamppb.New(st.CreatedAt),
		OpenShardCount:          int32(st.OpenShardCount()),
		ConsumerCount:           int32(len(st.Consumers)),
		ShardLimits:             shardLimitsProto(s.host.Limits(st)),
	}}, nil
}

// ListStreams implements riffle.v1.Streams.
func (s *Server) ListStreams(ctx context.Context, req *rifflev1.ListStreamsRequest) (*rifflev1.ListStreamsResponse, error) {
	limit, verr := limitOrDefault("limit", req.Limit, DefaultListStreams)
	if verr != nil {
		return nil, verr
	}
	after := req.ExclusiveStartStreamName
	if req.NextToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(req.NextToken)
		if err != nil || after != "" {
			return nil, invalidArgument("next_token is malformed or combined with exclusive_start_stream_name")
		}
		after = string(b)
	}
	state := s.host.Meta().State()
	names := state.SortedStreamNames()
	start := sort.SearchStrings(names, after)
	if after != "" && start < len(names) && names[start] == after {
		start++
	}
	end := min(start+limit, len(names))
	resp := &rifflev1.ListStreamsResponse{HasMoreStreams: end < len(names)}
	for _, n := range names[start:end] {
		st := state.Streams[n]
		resp.StreamNames = append(resp.StreamNames, n)
		resp.StreamSummaries = append(resp.StreamSummaries, &rifflev1.StreamSummary{
			StreamName: n, StreamArn: st.ARN(), StreamStatus: streamStatus(st.Status),
			StreamModeDetails: streamMode(st.Mode), StreamCreationTimestamp: timestamppb.New(st.CreatedAt),
		})
	}
	if resp.HasMoreStreams {
		resp.NextToken = base64.RawURLEncoding.EncodeToString([]byte(names[end-1]))
	}
	return resp, nil
}

// IncreaseStreamRetentionPeriod implements riffle.v1.Streams.
func (s *Server) IncreaseStreamRetentionPeriod(ctx context.Context, req *rifflev1.IncreaseStreamRetentionPeriodRequest) (*rifflev1.IncreaseStreamRetentionPeriodResponse, error) {
	return &rifflev1.IncreaseStreamRetentionPeriodResponse{}, s.setRetention(ctx, req.StreamName, req.StreamArn, req.RetentionPeriodHours, true)
}

// DecreaseStreamRetentionPeriod implements riffle.v1.Streams.
func (s *Server) DecreaseStreamRetentionPeriod(ctx context.Context, req *rifflev1.DecreaseStreamRetentionPeriodRequest) (*rifflev1.DecreaseStreamRetentionPeriodResponse, error) {
	return &rifflev1.DecreaseStreamRetentionPeriodResponse{}, s.setRetention(ctx, req.StreamName, req.StreamArn, req.RetentionPeriodHours, false)
}

func (s *Server) setRetention(ctx context.Context, name, arn string, hours int32, increase bool) error {
	st, err := s.stream(ctx, name, arn)
	if err != nil {
		return err
	}
	if verr := checkRetention(hours); verr != nil {
		return verr
	}
	return s.host.ProposeMeta(ctx, cluster.Command{SetRetention: &cluster.SetRetentionCmd{
		Name: st.Name, Hours: int(hours), Increase: increase}})
}

// pageShards returns up to limit shards after the one named after.
func pageShards(shards []*cluster.Shard, after string, limit int) ([]*cluster.Shard, bool, *Error) {
	start := 0
	if after != "" {
		if err := checkShardID(after); err != nil {
			return nil, false, err
		}
		start = len(shards)
		for i, sh := range shards {
			if sh.ID() > after {
				start = i
				break
			}
		}
	}
	end := min(start+limit, len(shards))
	return shards[start:end], end < len(shards), nil
}

func shardsToProto(shards []*cluster.Shard) []*rifflev1.Shard {
	out := make([]*rifflev1.Shard, len(shards))
	for i, sh := range shards {
		out[i] = &rifflev1.Shard{
			ShardId:               sh.ID(),
			ParentShardId:         sh.Parent,
			AdjacentParentShardId: sh.AdjacentParent,
			HashKeyRange:          &rifflev1.HashKeyRange{StartingHashKey: sh.HashStart, EndingHashKey: sh.HashEnd},
			SequenceNumberRange: &rifflev1.SequenceNumberRange{
				StartingSequenceNumber: sh.StartingSequence(),
				EndingSequenceNumber:   sh.EndingSequence,
			},
		}
	}
	return out
}

func streamStatus(s cluster.StreamStatus) rifflev1.StreamStatus {
	switch s {
	case cluster.StreamCreating:
		return rifflev1.StreamStatus_STREAM_STATUS_CREATING
	case cluster.StreamActive:
		return rifflev1.StreamStatus_STREAM_STATUS_ACTIVE
	case cluster.StreamUpdating:
		return rifflev1.StreamStatus_STREAM_STATUS_UPDATING
	case cluster.StreamDeleting:
		return rifflev1.StreamStatus_STREAM_STATUS_DELETING
	}
	return rifflev1.StreamStatus_STREAM_STATUS_UNSPECIFIED
}

func streamMode(m cluster.StreamMode) *rifflev1.StreamModeDetails {
	if m == cluster.ModeOnDemand {
		return &rifflev1.StreamModeDetails{StreamMode: rifflev1.StreamMode_STREAM_MODE_ON_DEMAND}
	}
	return &rifflev1.StreamModeDetails{StreamMode: rifflev1.StreamMode_STREAM_MODE_PROVISIONED}
}
