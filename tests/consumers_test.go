package tests

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// TestStreamConsumers checks the consumer operations of enhanced fan-out on
// three nodes, mostly through nodes that do not lead the metadata group:
// a consumer is registered CREATING and turns ACTIVE; it can be described
// by ARN and by stream and name from any node; listings page through every
// consumer exactly once; a stream holds at most 20 (LimitExceeded beyond);
// bad names, unknown consumers and duplicates get Kinesis's exceptions; a
// stream with consumers is deleted only with enforce_consumer_deletion;
// DescribeStreamSummary counts consumers; a consumer registered again
// under the same name gets a new ARN and the old one no longer resolves.
func TestStreamConsumers(t *testing.T) {
	if testing.Short() {
		t.Skip("three nodes")
	}
	c := startCluster(t, 3)
	killAtEnd(t, c)
	leader := -1
	for i, n := range c.nodes {
		if n.Host().Meta().IsLeader() {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no metadata leader")
	}
	a, b := c.nodes[(leader+1)%3].client, c.nodes[(leader+2)%3].client
	ctx := context.Background()
	createStream(t, a, "cons", 2)
	streamARN := "arn:aws:kinesis:local:000000000000:stream/cons"

	reg, err := a.RegisterStreamConsumer(ctx, &rifflev1.RegisterStreamConsumerRequest{StreamArn: streamARN, ConsumerName: "c00"})
	if err != nil {
		t.Fatal(err)
	}
	con := reg.Consumer
	if con.ConsumerName != "c00" || con.ConsumerStatus != rifflev1.ConsumerStatus_CONSUMER_STATUS_CREATING ||
		!strings.HasPrefix(con.ConsumerArn, streamARN+"/consumer/c00:") || con.ConsumerCreationTimestamp == nil {
		t.Fatalf("RegisterStreamConsumer answered %v", con)
	}
	waitFor(t, 10*time.Second, "consumer ACTIVE", func() error {
		d, err := b.DescribeStreamConsumer(ctx, &rifflev1.DescribeStreamConsumerRequest{ConsumerArn: con.ConsumerArn})
		if err != nil {
			return err
		}
		if s := d.ConsumerDescription.ConsumerStatus; s != rifflev1.ConsumerStatus_CONSUMER_STATUS_ACTIVE {
			return fmt.Errorf("status %v", s)
		}
		return nil
	})
	d, err := b.DescribeStreamConsumer(ctx, &rifflev1.DescribeStreamConsumerRequest{StreamName: "cons", ConsumerName: "c00"})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.ConsumerDescription; got.ConsumerArn != con.ConsumerArn || got.StreamArn != streamARN ||
		!got.ConsumerCreationTimestamp.AsTime().Equal(con.ConsumerCreationTimestamp.AsTime()) {
		t.Fatalf("described by stream and name: %v; registered %v", got, con)
	}

	expectException(t, "duplicate name", "ResourceInUseException", codes.FailedPrecondition, func() error {
		_, err := b.RegisterStreamConsumer(ctx, &rifflev1.RegisterStreamConsumerRequest{StreamName: "cons", ConsumerName: "c00"})
		return err
	})
	for _, bad := range []string{"", "has space", "a/b", strings.Repeat("x", 129), "é"} {
		expectException(t, fmt.Sprintf("register %q", bad), "ValidationException", codes.InvalidArgument, func() error {
			_, err := a.RegisterStreamConsumer(ctx, &rifflev1.RegisterStreamConsumerRequest{StreamName: "cons", ConsumerName: bad})
			return err
		})
	}
	expectException(t, "unknown consumer name", "ResourceNotFoundException", codes.NotFound, func() error {
		_, err := a.DescribeStreamConsumer(ctx, &rifflev1.DescribeStreamConsumerRequest{StreamName: "cons", ConsumerName: "nobody"})
		return err
	})
	expectException(t, "unknown consumer ARN", "ResourceNotFoundException", codes.NotFound, func() error {
		_, err := a.DescribeStreamConsumer(ctx, &rifflev1.DescribeStreamConsumerRequest{ConsumerArn: streamARN + "/consumer/nobody:1"})
		return err
	})
	expectException(t, "consumer of an unknown stream", "ResourceNotFoundException", codes.NotFound, func() error {
		_, err := a.RegisterStreamConsumer(ctx, &rifflev1.RegisterStreamConsumerRequest{StreamName: "nostream", ConsumerName: "c"})
		return err
	})
	expectException(t, "malformed consumer ARN", "InvalidArgumentException", codes.InvalidArgument, func() error {
		_, err := a.DescribeStreamConsumer(ctx, &rifflev1.DescribeStreamConsumerRequest{ConsumerArn: "arn:nope"})
		return err
	})

	// Up to 20 consumers; the 21st is refused.
	for i := 1; i < 20; i++ {
		cl := []rifflev1.StreamsClient{a, b}[i%2]
		if _, err := cl.RegisterStreamConsumer(ctx, &rifflev1.RegisterStreamConsumerRequest{StreamName: "cons", ConsumerName: fmt.Sprintf("c%02d", i)}); err != nil {
			t.Fatalf("register consumer %d: %v", i, err)
		}
	}
	expectException(t, "21st consumer", "LimitExceededException", codes.ResourceExhausted, func() error {
		_, err := b.RegisterStreamConsumer(ctx, &rifflev1.RegisterStreamConsumerRequest{StreamName: "cons", ConsumerName: "c20"})
		return err
	})

	list := func(cl rifflev1.StreamsClient, pageSize int32) []*rifflev1.Consumer {
		t.Helper()
		var all []*rifflev1.Consumer
		req := &rifflev1.ListStreamConsumersRequest{StreamArn: streamARN, MaxResults: pageSize}
		for pages := 0; ; pages++ {
			out, err := cl.ListStreamConsumers(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if pageSize > 0 && len(out.Consumers) > int(pageSize) {
				t.Fatalf("page of %d consumers with max_results %d", len(out.Consumers), pageSize)
			}
			all = append(all, out.Consumers...)
			if out.NextToken == "" {
				return all
			}
			if pages > 100 {
				t.Fatal("listing does not end")
			}
			req = &rifflev1.ListStreamConsumersRequest{StreamArn: streamARN, NextToken: out.NextToken, MaxResults: pageSize}
		}
	}
	names := func(cs []*rifflev1.Consumer) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ConsumerName)
		}
		return out
	}
	var want []string
	for i := 0; i < 20; i++ {
		want = append(want, fmt.Sprintf("c%02d", i))
	}
	for _, size := range []int32{0, 7, 1, 20} {
		got := list(b, size)
		if fmt.Sprint(names(got)) != fmt.Sprint(want) {
			t.Fatalf("listed with max_results %d: %v, want %v", size, names(got), want)
		}
		if got[0].ConsumerArn != con.ConsumerArn {
			t.Fatalf("listed ARN %s, registered %s", got[0].ConsumerArn, con.ConsumerArn)
		}
	}
	expectException(t, "max_results too large", "ValidationException", codes.InvalidArgument, func() error {
		_, err := a.ListStreamConsumers(ctx, &rifflev1.ListStreamConsumersRequest{StreamArn: streamARN, MaxResults: 10001})
		return err
	})
	summary := func() int32 {
		t.Helper()
		s, err := a.DescribeStreamSummary(ctx, &rifflev1.DescribeStreamSummaryRequest{StreamName: "cons"})
		if err != nil {
			t.Fatal(err)
		}
		return s.StreamDescriptionSummary.ConsumerCount
	}
	if n := summary(); n != 20 {
		t.Fatalf("consumer_count %d, want 20", n)
	}

	expectException(t, "DeleteStream with consumers", "ResourceInUseException", codes.FailedPrecondition, func() error {
		_, err := b.DeleteStream(ctx, &rifflev1.DeleteStreamRequest{StreamName: "cons"})
		return err
	})
	waitActive(t, a, "cons") // refused, so still there

	// Deregister by ARN and by name; they disappear from listings.
	if _, err := b.DeregisterStreamConsumer(ctx, &rifflev1.DeregisterStreamConsumerRequest{ConsumerArn: con.ConsumerArn}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.DeregisterStreamConsumer(ctx, &rifflev1.DeregisterStreamConsumerRequest{StreamArn: streamARN, ConsumerName: "c01"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "deregistered consumers gone", func() error {
		if got := names(list(a, 0)); len(got) != 18 || slices.Contains(got, "c00") || slices.Contains(got, "c01") {
			return fmt.Errorf("listed %v", got)
		}
		return nil
	})
	if n := summary(); n != 18 {
		t.Fatalf("consumer_count %d, want 18", n)
	}
	expectException(t, "deregistered consumer", "ResourceNotFoundException", codes.NotFound, func() error {
		_, err := a.DescribeStreamConsumer(ctx, &rifflev1.DescribeStreamConsumerRequest{ConsumerArn: con.ConsumerArn})
		return err
	})
	again, err := a.RegisterStreamConsumer(ctx, &rifflev1.RegisterStreamConsumerRequest{StreamName: "cons", ConsumerName: "c00"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Consumer.ConsumerArn == con.ConsumerArn {
		t.Fatalf("registered again under the same name with the same ARN %s", con.ConsumerArn)
	}
	expectException(t, "old ARN of a name registered again", "ResourceNotFoundException", codes.NotFound, func() error {
		_, err := b.DescribeStreamConsumer(ctx, &rifflev1.DescribeStreamConsumerRequest{ConsumerArn: con.ConsumerArn})
		return err
	})

	if _, err := b.DeleteStream(ctx, &rifflev1.DeleteStreamRequest{StreamName: "cons", EnforceConsumerDeletion: true}); err != nil {
		t.Fatalf("DeleteStream with enforce_consumer_deletion: %v", err)
	}
	expectException(t, "consumer of a deleted stream", "ResourceNotFoundException", codes.NotFound, func() error {
		_, err := b.DescribeStreamConsumer(ctx, &rifflev1.DescribeStreamConsumerRequest{ConsumerArn: again.Consumer.ConsumerArn})
		return err
	})
}
