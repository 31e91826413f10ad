package cluster

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func applyOK(t *testing.T, st *State, cmd Command) *State {
	t.Helper()
	next, err := st.apply(&cmd)
	if err != nil {
		t.Fatalf("apply %+v: %v", cmd, err)
	}
	return next
}

func newStateWithStream(t *testing.T) *State {
	st := &State{Streams: map[string]*Stream{}}
	return applyOK(t, st, Command{CreateStream: &CreateStreamCmd{Name: "s", ShardCount: 1, Mode: ModeProvisioned,
		RetentionHours: 24, Placement: [][]string{{"n1"}}}})
}

// Consumers go CREATING -> ACTIVE -> DELETING -> gone, at most 20 per
// stream, and a stale status command never touches a re-registration.
func TestConsumerLifecycle(t *testing.T) {
	st := newStateWithStream(t)
	t0 := time.UnixMilli(1_700_000_000_000).UTC()
	st = applyOK(t, st, Command{RegisterConsumer: &RegisterConsumerCmd{Stream: "s", Name: "c", CreatedAt: t0}})
	c, _ := st.Streams["s"].Consumer("c")
	if c.Status != ConsumerCreating {
		t.Fatalf("status %s, want CREATING", c.Status)
	}
	if _, err := st.apply(&Command{RegisterConsumer: &RegisterConsumerCmd{Stream: "s", Name: "c", CreatedAt: t0}}); !errors.Is(err, ErrConsumerExists) {
		t.Fatalf("second register: %v, want ErrConsumerExists", err)
	}
	id := st.Streams["s"].ID
	st = applyOK(t, st, Command{ConsumerStatus: &ConsumerStatusCmd{StreamID: id, Name: "c", CreatedAt: t0, From: ConsumerCreating}})
	if c, _ := st.Streams["s"].Consumer("c"); c.Status != ConsumerActive {
		t.Fatalf("status %s, want ACTIVE", c.Status)
	}
	arn := c.ARN("s")
	if _, got, err := st.ConsumerByARN(arn); err != nil || got.Name != "c" {
		t.Fatalf("ConsumerByARN(%s) = %v, %v", arn, got, err)
	}
	if _, err := st.apply(&Command{DeleteStream: &DeleteStreamCmd{Name: "s"}}); !errors.Is(err, ErrStreamHasConsumers) {
		t.Fatalf("delete with consumers: %v, want ErrStreamHasConsumers", err)
	}
	st = applyOK(t, st, Command{DeregisterConsumer: &DeregisterConsumerCmd{Stream: "s", Name: "c"}})
	if c, _ := st.Streams["s"].Consumer("c"); c.Status != ConsumerDeleting {
		t.Fatalf("status %s, want DELETING", c.Status)
	}
	st = applyOK(t, st, Command{ConsumerStatus: &ConsumerStatusCmd{StreamID: id, Name: "c", CreatedAt: t0, From: ConsumerDeleting}})
	if _, ok := st.Streams["s"].Consumer("c"); ok {
		t.Fatal("consumer still there after removal")
	}
	// Registered again: the old ARN no longer names it, and a stale
	// activation of the old registration changes nothing.
	t1 := t0.Add(time.Second)
	st = applyOK(t, st, Command{RegisterConsumer: &RegisterConsumerCmd{Stream: "s", Name: "c", CreatedAt: t1}})
	if _, _, err := st.ConsumerByARN(arn); !errors.Is(err, ErrConsumerNotFound) {
		t.Fatalf("old ARN: %v, want ErrConsumerNotFound", err)
	}
	st = applyOK(t, st, Command{ConsumerStatus: &ConsumerStatusCmd{StreamID: id, Name: "c", CreatedAt: t0, From: ConsumerCreating}})
	if c, _ := st.Streams["s"].Consumer("c"); c.Status != ConsumerCreating {
		t.Fatalf("stale activation applied: %s", c.Status)
	}
	for i := 1; i < MaxConsumersPerStream; i++ {
		st = applyOK(t, st, Command{RegisterConsumer: &RegisterConsumerCmd{Stream: "s", Name: fmt.Sprint("c", i), CreatedAt: t1}})
	}
	if _, err := st.apply(&Command{RegisterConsumer: &RegisterConsumerCmd{Stream: "s", Name: "one-too-many", CreatedAt: t1}}); !errors.Is(err, ErrConsumerLimit) {
		t.Fatalf("21st consumer: %v, want ErrConsumerLimit", err)
	}
	st = applyOK(t, st, Command{DeleteStream: &DeleteStreamCmd{Name: "s", EnforceConsumerDeletion: true}})
	if n := len(st.Streams["s"].Consumers); n != 0 {
		t.Fatalf("%d consumers left on a deleted stream", n)
	}
}

func TestParseConsumerARN(t *testing.T) {
	c := &Consumer{Name: "app.v2", CreatedAt: time.UnixMilli(1234)}
	stream, name, ms, err := ParseConsumerARN(c.ARN("my-stream"))
	if err != nil || stream != "my-stream" || name != "app.v2" || ms != 1234 {
		t.Fatalf("got %q %q %d %v", stream, name, ms, err)
	}
	for _, bad := range []string{"", "arn:aws:kinesis:local:000000000000:stream/s", "arn:aws:kinesis:local:000000000000:stream/s/consumer/c",
		"arn:aws:kinesis:local:000000000000:stream/s/consumer/c:x", "arn:other:stream/s/consumer/c:1"} {
		if _, _, _, err := ParseConsumerARN(bad); err == nil {
			t.Errorf("ParseConsumerARN(%q) accepted", bad)
		}
	}
}

func TestLimitOverrides(t *testing.T) {
	zero, small := int64(0), int64(100)
	o := &LimitOverrides{WriteBytes: &zero, FanOutBytes: &small}
	got := o.Apply(KinesisLimits)
	want := KinesisLimits
	want.WriteBytes, want.FanOutBytes = 0, 100
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if (*LimitOverrides)(nil).Apply(KinesisLimits) != KinesisLimits {
		t.Fatal("nil overrides changed the defaults")
	}
}
