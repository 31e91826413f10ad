package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"
)

// Registered enhanced fan-out consumers live in their stream's metadata, so
// that every node can check a subscription's consumer from its local copy.

// ConsumerStatus follows Kinesis's consumer states.
type ConsumerStatus string

// Consumer states. A consumer is registered CREATING, turned ACTIVE by the
// metadata leader, deregistered to DELETING and then removed.
const (
	ConsumerCreating ConsumerStatus = "CREATING"
	ConsumerActive   ConsumerStatus = "ACTIVE"
	ConsumerDeleting ConsumerStatus = "DELETING"
)

// MaxConsumersPerStream is Kinesis's limit on registered consumers.
const MaxConsumersPerStream = 20

// Errors of consumer commands.
var (
	ErrConsumerExists   = errors.New("cluster: consumer already exists")
	ErrConsumerNotFound = errors.New("cluster: consumer not found")
	// ErrConsumerLimit: the stream has MaxConsumersPerStream consumers.
	ErrConsumerLimit = errors.New("cluster: too many consumers")
	// ErrStreamHasConsumers: DeleteStream without EnforceConsumerDeletion
	// on a stream with registered consumers.
	ErrStreamHasConsumers = errors.New("cluster: stream has registered consumers")
)

// Consumer is one registered consumer of a stream.
type Consumer struct {
	Name      string         `json:"name"`
	Status    ConsumerStatus `json:"status"`
	CreatedAt time.Time      `json:"created_at"`
	// Tags are replaced as a whole on change (TagsCmd), never modified.
	Tags map[string]string `json:"tags,omitempty"`
}

// ARN names the consumer: stream, name and creation time, so that a
// consumer registered again under the same name has a new ARN and old
// subscriptions cannot pass for it.
func (c *Consumer) ARN(stream string) string {
	return fmt.Sprintf("%s/consumer/%s:%d", StreamARN(stream), c.Name, c.CreatedAt.UnixMilli())
}

// ParseConsumerARN splits a consumer ARN into stream name, consumer name and
// creation time (ms).
func ParseConsumerARN(arn string) (stream, consumer string, createdMillis int64, err error) {
	rest, ok := strings.CutPrefix(arn, StreamARN(""))
	if !ok {
		return "", "", 0, fmt.Errorf("consumer ARN %q does not start with %s", arn, StreamARN(""))
	}
	stream, rest, ok = strings.Cut(rest, "/consumer/")
	if !ok || stream == "" {
		return "", "", 0, fmt.Errorf("consumer ARN %q has no /consumer/ part", arn)
	}
	consumer, ts, ok := strings.Cut(rest, ":")
	if !ok || consumer == "" {
		return "", "", 0, fmt.Errorf("consumer ARN %q has no creation time", arn)
	}
	createdMillis, err = strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", "", 0, fmt.Errorf("consumer ARN %q: creation time: %w", arn, err)
	}
	return stream, consumer, createdMillis, nil
}

// Consumer finds a registered consumer by name.
func (s *Stream) Consumer(name string) (*Consumer, bool) {
	for _, c := range s.Consumers {
		if c.Name == name {
			return c, true
		}
	}
	return nil, false
}

// ConsumerByARN finds a consumer of st by ARN; a consumer registered again
// under the same name does not match an older ARN.
func (st *State) ConsumerByARN(arn string) (*Stream, *Consumer, error) {
	streamName, name, created, err := ParseConsumerARN(arn)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalidCommand, err)
	}
	s, ok := st.Streams[streamName]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s", ErrStreamNotFound, streamName)
	}
	c, ok := s.Consumer(name)
	if !ok || c.CreatedAt.UnixMilli() != created {
		return s, nil, fmt.Errorf("%w: %s", ErrConsumerNotFound, arn)
	}
	return s, c, nil
}

// RegisterConsumerCmd registers a consumer, CREATING.
type RegisterConsumerCmd struct {
	Stream    string            `json:"stream"`
	Name      string            `json:"name"`
	CreatedAt time.Time         `json:"created_at"`
	Tags      map[string]string `json:"tags,omitempty"`
}

// ConsumerStatusCmd moves a consumer to ACTIVE (from CREATING) or removes
// it (from DELETING). CreatedAt identifies the registration, so a stale
// command never touches a consumer registered again under the same name.
type ConsumerStatusCmd struct {
	StreamID  uint64         `json:"stream_id"`
	Name      string         `json:"name"`
	CreatedAt time.Time      `json:"created_at"`
	From      ConsumerStatus `json:"from"`
}

// DeregisterConsumerCmd moves a consumer to DELETING.
type DeregisterConsumerCmd struct {
	Stream string `json:"stream"`
	Name   string `json:"name"`
}

func (st *State) registerConsumer(c *RegisterConsumerCmd) (*State, error) {
	s, ok := st.Streams[c.Stream]
	if !ok {
		return st, fmt.Errorf("%w: %s", ErrStreamNotFound, c.Stream)
	}
	if s.Status == StreamDeleting {
		return st, fmt.Errorf("%w: %s is %s", ErrStreamInUse, c.Stream, s.Status)
	}
	if _, ok := s.Consumer(c.Name); ok {
		return st, fmt.Errorf("%w: %s of stream %s", ErrConsumerExists, c.Name, c.Stream)
	}
	if len(s.Consumers) >= MaxConsumersPerStream {
		return st, fmt.Errorf("%w: stream %s has %d consumers, the most allowed", ErrConsumerLimit, c.Stream, MaxConsumersPerStream)
	}
	s = s.clone()
	if len(c.Tags) > MaxTagsPerResource {
		return st, fmt.Errorf("%w: %d tags, more than the %d allowed", ErrTagLimit, len(c.Tags), MaxTagsPerResource)
	}
	s.Consumers = append(s.Consumers, &Consumer{Name: c.Name, Status: ConsumerCreating, CreatedAt: c.CreatedAt, Tags: maps.Clone(c.Tags)})
	return st.withStream(s.Name, s), nil
}

func (st *State) deregisterConsumer(c *DeregisterConsumerCmd) (*State, error) {
	s, ok := st.Streams[c.Stream]
	if !ok {
		return st, fmt.Errorf("%w: %s", ErrStreamNotFound, c.Stream)
	}
	con, ok := s.Consumer(c.Name)
	if !ok {
		return st, fmt.Errorf("%w: %s of stream %s", ErrConsumerNotFound, c.Name, c.Stream)
	}
	if con.Status == ConsumerDeleting {
		return st, nil
	}
	s = s.clone()
	con, _ = s.Consumer(c.Name)
	con.Status = ConsumerDeleting
	return st.withStream(s.Name, s), nil
}

func (st *State) consumerStatus(c *ConsumerStatusCmd) (*State, error) {
	s, ok := st.streamByID(c.StreamID)
	if !ok {
		return st, nil
	}
	con, ok := s.Consumer(c.Name)
	if !ok || !con.CreatedAt.Equal(c.CreatedAt) || con.Status != c.From {
		return st, nil // stale: already moved on
	}
	s = s.clone()
	switch c.From {
	case ConsumerCreating:
		con, _ = s.Consumer(c.Name)
		con.Status = ConsumerActive
	case ConsumerDeleting:
		kept := s.Consumers[:0]
		for _, x := range s.Consumers {
			if x.Name != c.Name {
				kept = append(kept, x)
			}
		}
		s.Consumers = kept
	default:
		return st, fmt.Errorf("%w: consumer status change from %q", ErrInvalidCommand, c.From)
	}
	return st.withStream(s.Name, s), nil
}

// Limits are the per-shard limits in force for a stream on this node.
func (h *Host) Limits(s *Stream) Limits { return s.Limits.Apply(h.opts.DefaultLimits) }

// manageConsumers, on the metadata leader, activates newly registered
// consumers and removes deregistered ones. Subscriptions of a consumer that
// is DELETING or gone end on their next look at the metadata.
func (h *Host) manageConsumers(ctx context.Context) {
	for _, s := range h.meta.State().Streams {
		for _, c := range s.Consumers {
			if c.Status == ConsumerActive {
				continue
			}
			cmd := Command{ConsumerStatus: &ConsumerStatusCmd{StreamID: s.ID, Name: c.Name, CreatedAt: c.CreatedAt, From: c.Status}}
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := h.meta.Propose(pctx, cmd)
			cancel()
			if err != nil {
				h.logger.Warn("consumer status change not yet stored", "stream", s.Name, "consumer", c.Name, "err", err)
				return
			}
			h.logger.Info("consumer status changed", "stream", s.Name, "consumer", c.Name, "from", c.Status)
		}
	}
}
