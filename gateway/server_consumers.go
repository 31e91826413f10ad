package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"regexp"
	"sort"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Enhanced fan-out consumers: registered in the stream's metadata through
// the metadata leader, read from the local copy.

// DefaultListConsumers is ListStreamConsumers' page size when none is given.
const DefaultListConsumers = 100

var consumerNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,128}$`)

func checkConsumerName(name string) *Error {
	if name == "" {
		return validation("consumer_name is required")
	}
	if !consumerNamePattern.MatchString(name) {
		return validation("consumer name %q must match [a-zA-Z0-9_.-]{1,128}", truncate(name))
	}
	return nil
}

// RegisterStreamConsumer implements riffle.v1.Streams. The consumer is
// CREATING in the response and ACTIVE once the metadata leader has
// activated it (within moments); only ACTIVE consumers can subscribe.
func (s *Server) RegisterStreamConsumer(ctx context.Context, req *rifflev1.RegisterStreamConsumerRequest) (*rifflev1.RegisterStreamConsumerResponse, error) {
	st, err := s.writableStream(ctx, req.StreamName, req.StreamArn)
	if err != nil {
		return nil, err
	}
	if verr := checkConsumerName(req.ConsumerName); verr != nil {
		return nil, verr
	}
	if len(req.Tags) > 0 {
		if verr := checkTags(req.Tags, cluster.MaxTagsPerResource); verr != nil {
			return nil, verr
		}
	}
	c := cluster.Consumer{Name: req.ConsumerName, Status: cluster.ConsumerCreating, CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	cmd := cluster.Command{RegisterConsumer: &cluster.RegisterConsumerCmd{Stream: st.Name, Name: c.Name, CreatedAt: c.CreatedAt, Tags: req.Tags}}
	if err := s.host.ProposeMeta(ctx, cmd); err != nil {
		return nil, err
	}
	s.logger.Info("consumer registered", "stream", st.Name, "consumer", c.Name)
	// Built from the command, not read back: the leader may already have
	// activated it, and Kinesis answers CREATING.
	return &rifflev1.RegisterStreamConsumerResponse{Consumer: &rifflev1.Consumer{
		ConsumerName:              c.Name,
		ConsumerArn:               c.ARN(st.Name),
		ConsumerStatus:            consumerStatus(c.Status),
		ConsumerCreationTimestamp: timestamppb.New(c.CreatedAt),
	}}, nil
}

// DeregisterStreamConsumer implements riffle.v1.Streams. The consumer turns
// DELETING at once (its subscriptions end within about a second) and is
// removed by the metadata leader soon after.
func (s *Server) DeregisterStreamConsumer(ctx context.Context, req *rifflev1.DeregisterStreamConsumerRequest) (*rifflev1.DeregisterStreamConsumerResponse, error) {
	st, c, err := s.consumer(ctx, req.StreamName, req.StreamArn, req.ConsumerName, req.ConsumerArn)
	if err != nil {
		return nil, err
	}
	cmd := cluster.Command{DeregisterConsumer: &cluster.DeregisterConsumerCmd{Stream: st.Name, Name: c.Name}}
	if err := s.host.ProposeMeta(ctx, cmd); err != nil {
		return nil, err
	}
	s.logger.Info("consumer deregistered", "stream", st.Name, "consumer", c.Name)
	return &rifflev1.DeregisterStreamConsumerResponse{}, nil
}

// DescribeStreamConsumer implements riffle.v1.Streams.
func (s *Server) DescribeStreamConsumer(ctx context.Context, req *rifflev1.DescribeStreamConsumerRequest) (*rifflev1.DescribeStreamConsumerResponse, error) {
	st, c, err := s.consumer(ctx, req.StreamName, req.StreamArn, req.ConsumerName, req.ConsumerArn)
	if err != nil {
		return nil, err
	}
	return &rifflev1.DescribeStreamConsumerResponse{ConsumerDescription: &rifflev1.ConsumerDescription{
		ConsumerName:              c.Name,
		ConsumerArn:               c.ARN(st.Name),
		ConsumerStatus:            consumerStatus(c.Status),
		ConsumerCreationTimestamp: timestamppb.New(c.CreatedAt),
		StreamArn:                 st.ARN(),
	}}, nil
}

// listConsumersToken continues a ListStreamConsumers listing: the stream
// (by id, so that a recreated stream does not continue an old listing) and
// the last name returned.
type listConsumersToken struct {
	StreamID uint64 `json:"s"`
	After    string `json:"a"`
}

// ListStreamConsumers implements riffle.v1.Streams. Consumers are listed by
// name, so that a listing continues correctly while others register.
func (s *Server) ListStreamConsumers(ctx context.Context, req *rifflev1.ListStreamConsumersRequest) (*rifflev1.ListStreamConsumersResponse, error) {
	limit, verr := limitOrDefault("max_results", req.MaxResults, DefaultListConsumers)
	if verr != nil {
		return nil, verr
	}
	var st *cluster.Stream
	after := ""
	if req.NextToken != "" {
		var tok listConsumersToken
		b, err := base64.RawURLEncoding.DecodeString(req.NextToken)
		if err != nil || json.Unmarshal(b, &tok) != nil {
			return nil, invalidArgument("next_token is malformed")
		}
		var ok bool
		if st, ok = s.host.Meta().State().StreamByID(tok.StreamID); !ok {
			return nil, invalidArgument("next_token belongs to a stream that no longer exists")
		}
		if (req.StreamName != "" || req.StreamArn != "") && !s.names(st, req.StreamName, req.StreamArn) {
			return nil, invalidArgument("next_token belongs to another stream than the one named")
		}
		after = tok.After
	} else {
		var err error
		if st, err = s.stream(ctx, req.StreamName, req.StreamArn); err != nil {
			return nil, err
		}
	}
	if ts := req.StreamCreationTimestamp; ts != nil && !ts.AsTime().Equal(st.CreatedAt) {
		return nil, notFound("stream %s created at %s not found (the stream of that name was created at %s)",
			st.Name, ts.AsTime().UTC().Format(time.RFC3339Nano), st.CreatedAt.UTC().Format(time.RFC3339Nano))
	}
	consumers := append([]*cluster.Consumer(nil), st.Consumers...)
	sort.Slice(consumers, func(i, j int) bool { return consumers[i].Name < consumers[j].Name })
	start := sort.Search(len(consumers), func(i int) bool { return consumers[i].Name > after })
	end := min(start+limit, len(consumers))
	resp := &rifflev1.ListStreamConsumersResponse{}
	for _, c := range consumers[start:end] {
		resp.Consumers = append(resp.Consumers, &rifflev1.Consumer{
			ConsumerName:              c.Name,
			ConsumerArn:               c.ARN(st.Name),
			ConsumerStatus:            consumerStatus(c.Status),
			ConsumerCreationTimestamp: timestamppb.New(c.CreatedAt),
		})
	}
	if end < len(consumers) {
		b, _ := json.Marshal(listConsumersToken{StreamID: st.ID, After: consumers[end-1].Name})
		resp.NextToken = base64.RawURLEncoding.EncodeToString(b)
	}
	return resp, nil
}

// names reports whether a request's stream_name and stream_arn name st.
func (s *Server) names(st *cluster.Stream, name, arn string) bool {
	n, verr := streamNameOf(name, arn)
	return verr == nil && n == st.Name
}

// consumer finds a consumer named by its ARN, or by stream and name. When
// both are given they must agree.
func (s *Server) consumer(ctx context.Context, streamName, streamARN, name, arn string) (*cluster.Stream, *cluster.Consumer, error) {
	if arn == "" {
		st, err := s.stream(ctx, streamName, streamARN)
		if err != nil {
			return nil, nil, err
		}
		if verr := checkConsumerName(name); verr != nil {
			return nil, nil, validation("consumer_arn, or consumer_name with stream_name or stream_arn, is required: %s", verr.Message)
		}
		c, ok := st.Consumer(name)
		if !ok && s.host.SyncMeta(ctx) == nil {
			if st, err = s.stream(ctx, streamName, streamARN); err != nil {
				return nil, nil, err
			}
			c, ok = st.Consumer(name)
		}
		if !ok || st.Status == cluster.StreamDeleting {
			return nil, nil, notFound("consumer %s of stream %s not found", name, st.Name)
		}
		return st, c, nil
	}
	st, c, err := s.consumerByARN(ctx, arn)
	if err != nil {
		return nil, nil, err
	}
	if (streamName != "" || streamARN != "") && !s.names(st, streamName, streamARN) {
		return nil, nil, invalidArgument("consumer_arn %q is not a consumer of the stream named", truncate(arn))
	}
	if name != "" && name != c.Name {
		return nil, nil, invalidArgument("consumer_arn %q and consumer_name %q name different consumers", truncate(arn), truncate(name))
	}
	return st, c, nil
}

// consumerByARN finds a registered consumer by ARN.
func (s *Server) consumerByARN(ctx context.Context, arn string) (*cluster.Stream, *cluster.Consumer, error) {
	streamName, name, _, err := cluster.ParseConsumerARN(arn)
	if err != nil {
		return nil, nil, invalidArgument("consumer_arn %q is not a Riffle consumer ARN (%s<stream>/consumer/<name>:<created ms>)", truncate(arn), cluster.StreamARN(""))
	}
	if verr := checkStreamName(streamName); verr != nil {
		return nil, nil, invalidArgument("consumer_arn %q: %s", truncate(arn), verr.Message)
	}
	if verr := checkConsumerName(name); verr != nil {
		return nil, nil, invalidArgument("consumer_arn %q: %s", truncate(arn), verr.Message)
	}
	st, c, err := s.host.Meta().State().ConsumerByARN(arn)
	if err != nil && s.host.SyncMeta(ctx) == nil {
		// Registered through another node a moment ago? Catch up first.
		st, c, err = s.host.Meta().State().ConsumerByARN(arn)
	}
	switch {
	case errors.Is(err, cluster.ErrStreamNotFound), err == nil && st.Status == cluster.StreamDeleting:
		return nil, nil, notFound("stream %s of consumer %s not found", streamName, truncate(arn))
	case errors.Is(err, cluster.ErrConsumerNotFound):
		return nil, nil, notFound("consumer %s not found (deregistered, or registered again under a new ARN)", truncate(arn))
	case err != nil:
		return nil, nil, err
	}
	return st, c, nil
}

func consumerStatus(s cluster.ConsumerStatus) rifflev1.ConsumerStatus {
	switch s {
	case cluster.ConsumerCreating:
		return rifflev1.ConsumerStatus_CONSUMER_STATUS_CREATING
	case cluster.ConsumerActive:
		return rifflev1.ConsumerStatus_CONSUMER_STATUS_ACTIVE
	case cluster.ConsumerDeleting:
		return rifflev1.ConsumerStatus_CONSUMER_STATUS_DELETING
	}
	return rifflev1.ConsumerStatus_CONSUMER_STATUS_UNSPECIFIED
}
