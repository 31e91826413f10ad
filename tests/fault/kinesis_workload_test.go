//go:build fault

package fault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	kinesisapi "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/riffle-streams/riffle/gateway/kinesis"
	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Beside the gRPC clients, a writer and, per shard, a reader speak
// Kinesis's HTTP API through aws-sdk-go-v2 (issue 15): their operations go
// into the same history and face the same checks.

// kinesisURLs are the nodes' published Kinesis endpoints
// (deploy/docker-compose.yml).
var kinesisURLs = map[string]string{"n1": "http://127.0.0.1:4567", "n2": "http://127.0.0.1:4577", "n3": "http://127.0.0.1:4587"}

// kinesisClient talks to one node only and never retries: each call is
// one operation of the history.
func kinesisClient(node string) *kinesisapi.Client {
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDFAULT", "fault", ""),
		HTTPClient: awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) { tr.MaxIdleConnsPerHost = 32 })}
	return kinesisapi.NewFromConfig(cfg, func(o *kinesisapi.Options) {
		o.BaseEndpoint = aws.String(kinesisURLs[node])
		o.RetryMaxAttempts = 1
	})
}

// notApplied reports whether a failed call says it changed nothing.
func notApplied(err error) bool {
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.Response != nil && re.Response.Header.Get(kinesis.OutcomeHeader) == "not_applied"
}

// kinesisWriter is writer through the Kinesis API, each put through the
// next node: a failure the node says was not applied is a fail; any other
// (no answer, a timeout, an unknown outcome) is info.
func (w *workload) kinesisWriter(ctx context.Context, proc string, rng *rand.Rand) {
	nodes := nodeNames()
	clients := map[string]*kinesisapi.Client{}
	for _, n := range nodes {
		clients[n] = kinesisClient(n)
	}
	tick := time.NewTicker(writeInterval)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		w.awaitLoud(ctx)
		node := nodes[i%len(nodes)]
		value := fmt.Sprintf("%s-%d", proc, i)
		key := fmt.Sprintf("k%03d", rng.IntN(keyPool))
		w.rec.Record(Op{Type: Invoke, F: FPut, Process: proc, Node: node, Value: value, Key: key})
		// Not ctx, as for the gRPC writers: the timeout bounds it.
		cctx, cancel := context.WithTimeout(context.Background(), putTimeout)
		out, err := clients[node].PutRecord(cctx, &kinesisapi.PutRecordInput{StreamName: aws.String(w.stream), PartitionKey: aws.String(key), Data: []byte(value)})
		cancel()
		done := Op{F: FPut, Process: proc, Node: node, Value: value, Key: key}
		switch {
		case err == nil:
			done.Type, done.Shard, done.Seq = OK, aws.ToString(out.ShardId), aws.ToString(out.SequenceNumber)
		case notApplied(err):
			done.Type, done.Error = Fail, err.Error()
		default:
			done.Type, done.Error = Info, err.Error()
		}
		w.rec.Record(done)
	}
}

// startKinesisReader starts node's Kinesis reader of shard, once.
func (w *workload) startKinesisReader(ctx context.Context, node, shard string) {
	if w.claim("k-" + node + "/" + shard) {
		w.wg.Go(func() { w.kinesisReader(ctx, fmt.Sprintf("kr-%s-%s", node, shard), node, shard) })
	}
}

// kinesisReader is reader through the Kinesis API: a GetRecords chain from
// the shard's start, a new iterator after the last record seen after an
// error, the children once every parent has ended for this node.
func (w *workload) kinesisReader(ctx context.Context, proc, node, shard string) {
	k := kinesisClient(node)
	stream := aws.String(w.stream)
	var it *string
	var last string
	for ctx.Err() == nil {
		if it == nil {
			in := &kinesisapi.GetShardIteratorInput{StreamName: stream, ShardId: aws.String(shard), ShardIteratorType: types.ShardIteratorTypeTrimHorizon}
			if last != "" {
				in.ShardIteratorType, in.StartingSequenceNumber = types.ShardIteratorTypeAfterSequenceNumber, aws.String(last)
			}
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			out, err := k.GetShardIterator(cctx, in)
			cancel()
			if err != nil {
				pause(ctx, readPoll)
				continue
			}
			it = out.ShardIterator
		}
		w.awaitLoud(ctx)
		w.rec.Record(Op{Type: Invoke, F: FRead, Process: proc, Node: node, Shard: shard})
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		out, err := k.GetRecords(cctx, &kinesisapi.GetRecordsInput{ShardIterator: it, Limit: aws.Int32(1000)})
		cancel()
		if err != nil {
			w.rec.Record(Op{Type: Fail, F: FRead, Process: proc, Node: node, Shard: shard, Error: err.Error()})
			it = nil
			pause(ctx, readPoll)
			continue
		}
		recs := make([]Rec, 0, len(out.Records))
		for _, r := range out.Records {
			recs = append(recs, Rec{Seq: aws.ToString(r.SequenceNumber), Value: string(r.Data), Arrival: aws.ToTime(r.ApproximateArrivalTimestamp).UnixMilli()})
		}
		closed := out.NextShardIterator == nil
		w.rec.Record(Op{Type: OK, F: FRead, Process: proc, Node: node, Shard: shard, Records: recs, Closed: closed})
		if closed {
			children := make([]*rifflev1.ChildShard, 0, len(out.ChildShards))
			for _, c := range out.ChildShards {
				children = append(children, &rifflev1.ChildShard{ShardId: aws.ToString(c.ShardId), ParentShards: c.ParentShards})
			}
			for _, child := range w.endShard("k-"+node, shard, children) {
				w.startKinesisReader(ctx, node, child)
			}
			return
		}
		if len(recs) > 0 {
			last = recs[len(recs)-1].Seq
		} else {
			pause(ctx, readPoll)
		}
		it = out.NextShardIterator
	}
}

// kinesisCounts counts the Kinesis API clients' completed operations:
// puts and reads that succeeded, failed, or (puts) ended unknown.
func kinesisCounts(h History) (putOK, putFail, putInfo, readOK, readFail int) {
	for _, op := range h {
		switch {
		case op.F == FPut && op.Process == "kw":
			switch op.Type {
			case OK:
				putOK++
			case Fail:
				putFail++
			case Info:
				putInfo++
			}
		case op.F == FRead && strings.HasPrefix(op.Process, "kr-"):
			switch op.Type {
			case OK:
				readOK++
			case Fail:
				readFail++
			}
		}
	}
	return
}
