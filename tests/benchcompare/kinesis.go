package main

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// The "kinesis" system is the same Riffle cluster driven through its
// Kinesis HTTP API (JSON) by aws-sdk-go-v2, a plain client of AWS's own
// library: each producer is its own SDK client with its own connections to
// one node, keeping inFlight/batch PutRecords calls of batch random-key
// records in flight, as `riffle bench` does over gRPC. The ratio line
// Kinesis/gRPC compares the two front ends on the same workload (issue 15).

func (c *riffleCluster) kinesisClient(i int) *kinesis.Client {
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDBENCH", "bench", ""),
		HTTPClient: awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConnsPerHost = 1024
		})}
	return kinesis.NewFromConfig(cfg, func(o *kinesis.Options) {
		o.BaseEndpoint = aws.String("http://" + c.kinesis[i%len(c.kinesis)])
	})
}

// produceKinesis creates the stream through the Kinesis API, warms it up,
// runs the workload and deletes the stream.
func (c *riffleCluster) produceKinesis(ctx context.Context, stream string, w workload, batch, shards int, warmup time.Duration) (result, error) {
	if w.rate > 0 {
		return result{}, fmt.Errorf("the kinesis system runs the throughput workload only")
	}
	k := c.kinesisClient(0)
	name := aws.String(stream)
	if _, err := k.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: name, ShardCount: aws.Int32(int32(shards))}); err != nil {
		return result{}, fmt.Errorf("CreateStream: %w", err)
	}
	defer k.DeleteStream(context.Background(), &kinesis.DeleteStreamInput{StreamName: name})
	if err := kinesis.NewStreamExistsWaiter(k).Wait(ctx, &kinesis.DescribeStreamInput{StreamName: name}, time.Minute); err != nil {
		return result{}, err
	}
	producers := make([]*kinesis.Client, w.producers)
	for i := range producers {
		producers[i] = c.kinesisClient(i)
	}
	if warmup > 0 {
		fmt.Fprintf(os.Stderr, "benchcompare: kinesis: warming up for %s\n", warmup)
		warm := w
		warm.duration = warmup
		runKinesis(ctx, producers, name, warm, batch)
	}
	return runKinesis(ctx, producers, name, w, batch), nil
}

func runKinesis(ctx context.Context, producers []*kinesis.Client, name *string, w workload, batch int) result {
	var mu sync.Mutex
	var acked, failed uint64
	errs := map[string]uint64{}
	var latencies []time.Duration
	start := time.Now()
	deadline := start.Add(w.duration)
	var wg sync.WaitGroup
	for _, k := range producers {
		for range max(1, w.inFlight/batch) {
			wg.Go(func() {
				rng := mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64()))
				data := make([]byte, w.size)
				for i := range data {
					data[i] = byte(rng.Uint32())
				}
				entries := make([]types.PutRecordsRequestEntry, batch)
				for time.Now().Before(deadline) && ctx.Err() == nil {
					for i := range entries {
						entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String(fmt.Sprintf("k%016x", rng.Uint64())), Data: data}
					}
					sent := time.Now()
					callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
					out, err := k.PutRecords(callCtx, &kinesis.PutRecordsInput{StreamName: name, Records: entries})
					cancel()
					took := time.Since(sent)
					mu.Lock()
					if err != nil {
						failed += uint64(batch)
						errs[err.Error()] += uint64(batch)
					} else {
						ok := uint64(batch) - uint64(aws.ToInt32(out.FailedRecordCount))
						acked += ok
						failed += uint64(aws.ToInt32(out.FailedRecordCount))
						for _, r := range out.Records {
							if r.ErrorCode != nil {
								errs[*r.ErrorCode]++
							}
						}
						for range ok {
							latencies = append(latencies, took)
						}
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(latencies)
	res := result{system: "kinesis", workload: w, records: acked, errors: failed, errorNames: errs, elapsed: elapsed,
		recPerS: float64(acked) / elapsed.Seconds(), mibPerS: float64(acked) * float64(w.size) / elapsed.Seconds() / (1 << 20)}
	res.p50, res.p99 = quantileMillis(latencies, 0.50), quantileMillis(latencies, 0.99)
	return res
}
