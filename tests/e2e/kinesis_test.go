//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// kinesisURLs are the nodes' published Kinesis endpoints
// (deploy/docker-compose.yml).
var kinesisURLs = map[string]string{"n1": "http://127.0.0.1:4567", "n2": "http://127.0.0.1:4577", "n3": "http://127.0.0.1:4587"}

func sdkClient(service string) *kinesis.Client {
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDE2E", "e2e", "")}
	return kinesis.NewFromConfig(cfg, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(kinesisURLs[service]) })
}

// TestKinesisSDKAcrossAKilledNode: an unmodified aws-sdk-go-v2 program
// writes through n1 and n2 while n3 is killed with SIGKILL and started
// again; every record the SDK saw acknowledged is then read back through
// every node, n3 included (issue 15).
func TestKinesisSDKAcrossAKilledNode(t *testing.T) {
	c := connectCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	name := aws.String(uniqueStreamName("e2e-kinesis"))
	k1, k2 := sdkClient("n1"), sdkClient("n2")
	if _, err := k1.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: name, ShardCount: aws.Int32(3)}); err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	if err := kinesis.NewStreamExistsWaiter(k2).Wait(ctx, &kinesis.DescribeStreamInput{StreamName: name}, time.Minute); err != nil {
		t.Fatal(err)
	}

	// Writers: PutRecords of 20 through n1 and n2, each acknowledged record
	// kept; failures are tolerated (the SDK retries what it may).
	var mu sync.Mutex
	acked := map[string]string{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w, k := range []*kinesis.Client{k1, k2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				entries := make([]types.PutRecordsRequestEntry, 20)
				for i := range entries {
					entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("w%d-%d-%d", w, n, i)), Data: []byte(fmt.Sprintf("w%d-%d-%d", w, n, i))}
				}
				callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
				out, err := k.PutRecords(callCtx, &kinesis.PutRecordsInput{StreamName: name, Records: entries})
				cancel()
				if err != nil {
					continue // the SDK already retried, with its back-off
				}
				mu.Lock()
				for i, r := range out.Records {
					if r.SequenceNumber != nil {
						acked[*r.SequenceNumber] = string(entries[i].Data)
					}
				}
				mu.Unlock()
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	eventually(t, 30*time.Second, "writes before the kill", func() error {
		if n := count(); n < 500 {
			return fmt.Errorf("%d acknowledged", n)
		}
		return nil
	})
	c.killNode("n3")
	before := count()
	eventually(t, 60*time.Second, "writes with n3 down", func() error {
		if n := count(); n < before+500 {
			return fmt.Errorf("%d acknowledged since the kill", n-before)
		}
		return nil
	})
	c.startNode("n3")
	c.waitHealthy("n3")
	close(stop)
	wg.Wait()
	t.Logf("%d records acknowledged through the SDK", count())

	for _, service := range []string{"n1", "n2", "n3"} {
		k := sdkClient(service)
		eventually(t, catchUpTimeout, "every acknowledged record through "+service, func() error {
			shards, err := k.ListShards(ctx, &kinesis.ListShardsInput{StreamName: name})
			if err != nil {
				return err
			}
			got := map[string]string{}
			for _, sh := range shards.Shards {
				it, err := k.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: name, ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
				if err != nil {
					return err
				}
				for iter := it.ShardIterator; iter != nil; {
					resp, err := k.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
					if err != nil { // throttling included: the next poll reads again
						return err
					}
					for _, r := range resp.Records {
						got[*r.SequenceNumber] = string(r.Data)
					}
					if len(resp.Records) == 0 && aws.ToInt64(resp.MillisBehindLatest) == 0 {
						break
					}
					iter = resp.NextShardIterator
				}
			}
			mu.Lock()
			defer mu.Unlock()
			missing := 0
			for seq, data := range acked {
				if got[seq] != data {
					missing++
				}
			}
			if missing > 0 {
				return fmt.Errorf("%d of %d acknowledged records missing or different", missing, len(acked))
			}
			return nil
		})
	}
	if _, err := k1.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: name}); err != nil {
		t.Fatalf("DeleteStream: %v", err)
	}
}
