package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Once a node acknowledges a stream or consumer creation, every other node
// finds it: a lookup that misses in a node's copy of the metadata first
// catches up with the metadata leader (read your writes across nodes).
func TestCreationsAreVisibleThroughEveryNode(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	createStream(t, c.nodes[0].client, "visible", 1)
	for i := range 10 {
		via, then := c.nodes[i%3].client, c.nodes[(i+1)%3].client
		name := fmt.Sprintf("c%d", i)
		reg, err := via.RegisterStreamConsumer(ctx, &rifflev1.RegisterStreamConsumerRequest{StreamName: "visible", ConsumerName: name})
		if err != nil {
			t.Fatalf("register %s: %v", name, err)
		}
		if _, err := then.DescribeStreamConsumer(ctx, &rifflev1.DescribeStreamConsumerRequest{ConsumerArn: reg.Consumer.ConsumerArn}); err != nil {
			t.Fatalf("consumer %s registered through node %d, described through node %d: %v", name, i%3+1, (i+1)%3+1, err)
		}
		if _, err := then.DescribeStreamConsumer(ctx, &rifflev1.DescribeStreamConsumerRequest{StreamName: "visible", ConsumerName: name}); err != nil {
			t.Fatalf("consumer %s by name through node %d: %v", name, (i+1)%3+1, err)
		}
		stream := fmt.Sprintf("s%d", i)
		if _, err := via.CreateStream(ctx, &rifflev1.CreateStreamRequest{StreamName: stream, ShardCount: 1}); err != nil {
			t.Fatalf("create %s: %v", stream, err)
		}
		if _, err := then.DescribeStreamSummary(ctx, &rifflev1.DescribeStreamSummaryRequest{StreamName: stream}); err != nil {
			t.Fatalf("stream %s created through node %d, described through node %d: %v", stream, i%3+1, (i+1)%3+1, err)
		}
	}
}
