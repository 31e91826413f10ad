package gateway

import (
	"context"
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/riffle-streams/riffle/cluster"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Tag limits, as in Kinesis.
const (
	// MaxTagsPerStreamCall bounds AddTagsToStream and RemoveTagsFromStream;
	// TagResource and UntagResource take up to cluster.MaxTagsPerResource.
	MaxTagsPerStreamCall = 10
	MaxTagKeyLength      = 128
	MaxTagValueLength    = 256
	// DefaultListTagsLimit is ListTagsForStream's page without a limit.
	DefaultListTagsLimit = 50
)

// checkTagKey: 1 to 128 letters, digits, spaces and _ . : / = + - @, not
// starting with the reserved "aws:".
func checkTagKey(k string) *Error {
	if n := utf8.RuneCountInString(k); n < 1 || n > MaxTagKeyLength {
		return invalidArgument("tag key %q must be 1 to %d characters", truncate(k), MaxTagKeyLength)
	}
	if strings.HasPrefix(strings.ToLower(k), "aws:") {
		return invalidArgument("tag key %q: the prefix aws: is reserved", truncate(k))
	}
	return checkTagChars("key", k)
}

func checkTagChars(what, s string) *Error {
	if !utf8.ValidString(s) {
		return invalidArgument("tag %s %q is not UTF-8", what, truncate(s))
	}
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsNumber(r) && !unicode.IsSpace(r) && !strings.ContainsRune("_.:/=+-@", r) {
			return invalidArgument("tag %s %q: %q is not a letter, digit, space or one of _ . : / = + - @", what, truncate(s), r)
		}
	}
	return nil
}

func checkTags(tags map[string]string, most int) *Error {
	if len(tags) == 0 {
		return invalidArgument("tags must not be empty")
	}
	if len(tags) > most {
		return invalidArgument("%d tags in one call; at most %d", len(tags), most)
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if err := checkTagKey(k); err != nil {
			return err
		}
		v := tags[k]
		if utf8.RuneCountInString(v) > MaxTagValueLength {
			return invalidArgument("the value of tag %q is longer than %d characters", truncate(k), MaxTagValueLength)
		}
		if err := checkTagChars("value", v); err != nil {
			return err
		}
	}
	return nil
}

func checkTagKeys(keys []string, most int) *Error {
	if len(keys) == 0 {
		return invalidArgument("tag_keys must not be empty")
	}
	if len(keys) > most {
		return invalidArgument("%d tag keys in one call; at most %d", len(keys), most)
	}
	for _, k := range keys {
		if err := checkTagKey(k); err != nil {
			return err
		}
	}
	return nil
}

// tagList is tags sorted by key.
func tagList(tags map[string]string) []*rifflev1.Tag {
	out := make([]*rifflev1.Tag, 0, len(tags))
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		out = append(out, &rifflev1.Tag{Key: k, Value: tags[k]})
	}
	return out
}

// AddTagsToStream implements riffle.v1.Streams.
func (s *Server) AddTagsToStream(ctx context.Context, req *rifflev1.AddTagsToStreamRequest) (*rifflev1.AddTagsToStreamResponse, error) {
	st, err := s.stream(ctx, req.StreamName, req.StreamArn)
	if err != nil {
		return nil, err
	}
	if verr := checkTags(req.Tags, MaxTagsPerStreamCall); verr != nil {
		return nil, verr
	}
	if err := s.host.ProposeMeta(ctx, cluster.Command{Tags: &cluster.TagsCmd{Stream: st.Name, Set: req.Tags}}); err != nil {
		return nil, err
	}
	return &rifflev1.AddTagsToStreamResponse{}, nil
}

// RemoveTagsFromStream implements riffle.v1.Streams.
func (s *Server) RemoveTagsFromStream(ctx context.Context, req *rifflev1.RemoveTagsFromStreamRequest) (*rifflev1.RemoveTagsFromStreamResponse, error) {
	st, err := s.stream(ctx, req.StreamName, req.StreamArn)
	if err != nil {
		return nil, err
	}
	if verr := checkTagKeys(req.TagKeys, MaxTagsPerStreamCall); verr != nil {
		return nil, verr
	}
	if err := s.host.ProposeMeta(ctx, cluster.Command{Tags: &cluster.TagsCmd{Stream: st.Name, Remove: req.TagKeys}}); err != nil {
		return nil, err
	}
	return &rifflev1.RemoveTagsFromStreamResponse{}, nil
}

// ListTagsForStream implements riffle.v1.Streams: tags in key order, a page
// at a time.
func (s *Server) ListTagsForStream(ctx context.Context, req *rifflev1.ListTagsForStreamRequest) (*rifflev1.ListTagsForStreamResponse, error) {
	st, err := s.stream(ctx, req.StreamName, req.StreamArn)
	if err != nil {
		return nil, err
	}
	limit := int(req.Limit)
	switch {
	case limit == 0:
		limit = DefaultListTagsLimit
	case limit < 1 || limit > DefaultListTagsLimit:
		return nil, invalidArgument("limit %d must be between 1 and %d", req.Limit, DefaultListTagsLimit)
	}
	if req.ExclusiveStartTagKey != "" {
		if verr := checkTagKey(req.ExclusiveStartTagKey); verr != nil {
			return nil, verr
		}
	}
	all := tagList(st.Tags)
	from, _ := slices.BinarySearchFunc(all, req.ExclusiveStartTagKey, func(t *rifflev1.Tag, k string) int { return strings.Compare(t.Key, k) })
	if from < len(all) && req.ExclusiveStartTagKey != "" && all[from].Key == req.ExclusiveStartTagKey {
		from++
	}
	page := all[from:]
	more := len(page) > limit
	if more {
		page = page[:limit]
	}
	return &rifflev1.ListTagsForStreamResponse{Tags: page, HasMoreTags: more}, nil
}

// resource finds the stream, and the consumer if it is one, an ARN names.
func (s *Server) resource(ctx context.Context, arn string) (*cluster.Stream, *cluster.Consumer, error) {
	if arn == "" {
		return nil, nil, validation("resource_arn is required")
	}
	if strings.Contains(arn, "/consumer/") {
		return s.consumerByARN(ctx, arn)
	}
	st, err := s.stream(ctx, "", arn)
	return st, nil, err
}

func tagsCmd(st *cluster.Stream, c *cluster.Consumer) *cluster.TagsCmd {
	cmd := &cluster.TagsCmd{Stream: st.Name}
	if c != nil {
		cmd.Consumer, cmd.ConsumerCreated = c.Name, c.CreatedAt
	}
	return cmd
}

// TagResource implements riffle.v1.Streams.
func (s *Server) TagResource(ctx context.Context, req *rifflev1.TagResourceRequest) (*rifflev1.TagResourceResponse, error) {
	st, c, err := s.resource(ctx, req.ResourceArn)
	if err != nil {
		return nil, err
	}
	if verr := checkTags(req.Tags, cluster.MaxTagsPerResource); verr != nil {
		return nil, verr
	}
	cmd := tagsCmd(st, c)
	cmd.Set = req.Tags
	if err := s.host.ProposeMeta(ctx, cluster.Command{Tags: cmd}); err != nil {
		return nil, err
	}
	return &rifflev1.TagResourceResponse{}, nil
}

// UntagResource implements riffle.v1.Streams.
func (s *Server) UntagResource(ctx context.Context, req *rifflev1.UntagResourceRequest) (*rifflev1.UntagResourceResponse, error) {
	st, c, err := s.resource(ctx, req.ResourceArn)
	if err != nil {
		return nil, err
	}
	if verr := checkTagKeys(req.TagKeys, cluster.MaxTagsPerResource); verr != nil {
		return nil, verr
	}
	cmd := tagsCmd(st, c)
	cmd.Remove = req.TagKeys
	if err := s.host.ProposeMeta(ctx, cluster.Command{Tags: cmd}); err != nil {
		return nil, err
	}
	return &rifflev1.UntagResourceResponse{}, nil
}

// ListTagsForResource implements riffle.v1.Streams.
func (s *Server) ListTagsForResource(ctx context.Context, req *rifflev1.ListTagsForResourceRequest) (*rifflev1.ListTagsForResourceResponse, error) {
	st, c, err := s.resource(ctx, req.ResourceArn)
	if err != nil {
		return nil, err
	}
	tags := st.Tags
	if c != nil {
		tags = c.Tags
	}
	return &rifflev1.ListTagsForResourceResponse{Tags: tagList(tags)}, nil
}
