package cluster

import (
	"errors"
	"fmt"
	"maps"
	"time"
)

// MaxTagsPerResource is how many tags a stream or a consumer holds at most,
// as in Kinesis.
const MaxTagsPerResource = 50

// ErrTagLimit: a change would leave a resource with more than
// MaxTagsPerResource tags.
var ErrTagLimit = errors.New("cluster: too many tags")

// TagsCmd changes the tags of a stream, or of one registration of a
// consumer (Consumer and ConsumerCreated set): Remove first, then Set.
// The limit is checked here, on the state the change applies to, so two
// calls racing through different nodes cannot exceed it together.
type TagsCmd struct {
	Stream          string            `json:"stream"`
	Consumer        string            `json:"consumer,omitempty"`
	ConsumerCreated time.Time         `json:"consumer_created,omitzero"`
	Set             map[string]string `json:"set,omitempty"`
	Remove          []string          `json:"remove,omitempty"`
}

func (st *State) setTags(c *TagsCmd) (*State, error) {
	s, ok := st.Streams[c.Stream]
	if !ok {
		return st, fmt.Errorf("%w: %s", ErrStreamNotFound, c.Stream)
	}
	if s.Status == StreamDeleting {
		return st, fmt.Errorf("%w: %s is %s", ErrStreamInUse, c.Stream, s.Status)
	}
	cur := s.Tags
	if c.Consumer != "" {
		con, ok := s.Consumer(c.Consumer)
		if !ok || !con.CreatedAt.Equal(c.ConsumerCreated) {
			return st, fmt.Errorf("%w: %s of stream %s", ErrConsumerNotFound, c.Consumer, c.Stream)
		}
		cur = con.Tags
	}
	// States are shared by readers: the tags are replaced, never changed.
	next := make(map[string]string, len(cur)+len(c.Set))
	maps.Copy(next, cur)
	for _, k := range c.Remove {
		delete(next, k)
	}
	maps.Copy(next, c.Set)
	if len(next) > MaxTagsPerResource {
		return st, fmt.Errorf("%w: the change would leave %d tags, more than the %d allowed", ErrTagLimit, len(next), MaxTagsPerResource)
	}
	s = s.clone()
	if c.Consumer != "" {
		con, _ := s.Consumer(c.Consumer)
		con.Tags = next
	} else {
		s.Tags = next
	}
	return st.withStream(s.Name, s), nil
}
