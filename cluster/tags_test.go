package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"
)

// Tags change by replacement, so readers of an earlier state never see a
// change; the 50-tag limit holds on the state a change applies to; a
// consumer's tags belong to one registration.
func TestTagsReplacedWithinTheLimit(t *testing.T) {
	st := newStateWithStream(t)
	before := st
	st = applyOK(t, st, Command{Tags: &TagsCmd{Stream: "s", Set: map[string]string{"team": "a", "env": "dev"}}})
	if len(before.Streams["s"].Tags) != 0 {
		t.Fatalf("the earlier state changed: %v", before.Streams["s"].Tags)
	}
	mid := st
	st = applyOK(t, st, Command{Tags: &TagsCmd{Stream: "s", Remove: []string{"env", "absent"}, Set: map[string]string{"team": "b"}}})
	if got := st.Streams["s"].Tags; !maps.Equal(got, map[string]string{"team": "b"}) {
		t.Fatalf("tags %v", got)
	}
	if got := mid.Streams["s"].Tags; !maps.Equal(got, map[string]string{"team": "a", "env": "dev"}) {
		t.Fatalf("the earlier state changed: %v", got)
	}
	many := map[string]string{}
	for i := range 50 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	if _, err := st.apply(&Command{Tags: &TagsCmd{Stream: "s", Set: many}}); !errors.Is(err, ErrTagLimit) {
		t.Fatalf("51 tags: %v, want ErrTagLimit", err)
	}
	if got := st.Streams["s"].Tags; len(got) != 1 {
		t.Fatalf("a refused change left %d tags", len(got))
	}
	// Removing in the same change makes room.
	st = applyOK(t, st, Command{Tags: &TagsCmd{Stream: "s", Remove: []string{"team"}, Set: many}})
	if len(st.Streams["s"].Tags) != 50 {
		t.Fatalf("%d tags", len(st.Streams["s"].Tags))
	}

	t0 := time.UnixMilli(1_700_000_000_000).UTC()
	st = applyOK(t, st, Command{RegisterConsumer: &RegisterConsumerCmd{Stream: "s", Name: "c", CreatedAt: t0, Tags: map[string]string{"owner": "x"}}})
	st = applyOK(t, st, Command{Tags: &TagsCmd{Stream: "s", Consumer: "c", ConsumerCreated: t0, Set: map[string]string{"tier": "1"}}})
	c, _ := st.Streams["s"].Consumer("c")
	if !maps.Equal(c.Tags, map[string]string{"owner": "x", "tier": "1"}) || len(st.Streams["s"].Tags) != 50 {
		t.Fatalf("consumer tags %v, stream %d", c.Tags, len(st.Streams["s"].Tags))
	}
	if _, err := st.apply(&Command{Tags: &TagsCmd{Stream: "s", Consumer: "c", ConsumerCreated: t0.Add(time.Second), Set: map[string]string{"a": "b"}}}); !errors.Is(err, ErrConsumerNotFound) {
		t.Fatalf("another registration's tags: %v", err)
	}
	// Tags survive the metadata's snapshot encoding.
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var decoded State
	if err := json.Unmarshal(b, &decoded); err != nil {
		t.Fatal(err)
	}
	dc, _ := decoded.Streams["s"].Consumer("c")
	if !maps.Equal(decoded.Streams["s"].Tags, st.Streams["s"].Tags) || !maps.Equal(dc.Tags, c.Tags) {
		t.Fatal("tags lost in the snapshot encoding")
	}
	if _, err := st.apply(&Command{Tags: &TagsCmd{Stream: "nope", Set: map[string]string{"a": "b"}}}); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("a missing stream: %v", err)
	}
}
