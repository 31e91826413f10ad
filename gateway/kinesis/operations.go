package kinesis

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/riffle-streams/riffle/gateway"
)

// operation is one X-Amz-Target.
type operation struct {
	// request makes the riffle.v1 request message the body fills.
	request func() proto.Message
	// call runs a unary operation through the gateway.
	call func(context.Context, *gateway.Server, proto.Message) (proto.Message, error)
	// stream runs a streaming one (SubscribeToShard) and writes its
	// response itself.
	stream func(context.Context, *Handler, *call, proto.Message) error
	// complete adds the members Kinesis always sends that riffle.v1 has no
	// field for.
	complete func(map[string]any)
	// unsupported, when set, is why the operation is refused: nothing is
	// done.
	unsupported string
}

// unary maps a gateway method one to one.
func unary[Req any, PReq interface {
	*Req
	proto.Message
}, Resp proto.Message](method func(*gateway.Server, context.Context, PReq) (Resp, error)) operation {
	return operation{
		request: func() proto.Message { return PReq(new(Req)) },
		call: func(ctx context.Context, gw *gateway.Server, req proto.Message) (proto.Message, error) {
			return method(gw, ctx, req.(PReq))
		},
	}
}

func (op operation) completing(f func(map[string]any)) operation {
	op.complete = f
	return op
}

func notYet(name string) operation {
	return operation{unsupported: name + " is not supported by this version of Riffle; nothing was changed (docs/kinesis-api.md lists what is)"}
}

// operations are Kinesis's 39 operations (API version 2013-12-02).
var operations = map[string]operation{
	"CreateStream":                  unary((*gateway.Server).CreateStream),
	"DeleteStream":                  unary((*gateway.Server).DeleteStream),
	"DescribeStream":                unary((*gateway.Server).DescribeStream).completing(streamDescription("StreamDescription")),
	"DescribeStreamSummary":         unary((*gateway.Server).DescribeStreamSummary).completing(streamDescription("StreamDescriptionSummary")),
	"ListStreams":                   unary((*gateway.Server).ListStreams),
	"ListShards":                    unary((*gateway.Server).ListShards),
	"IncreaseStreamRetentionPeriod": unary((*gateway.Server).IncreaseStreamRetentionPeriod),
	"DecreaseStreamRetentionPeriod": unary((*gateway.Server).DecreaseStreamRetentionPeriod),
	"SplitShard":                    unary((*gateway.Server).SplitShard),
	"MergeShards":                   unary((*gateway.Server).MergeShards),
	"UpdateShardCount":              unary((*gateway.Server).UpdateShardCount),
	"UpdateStreamMode":              unary((*gateway.Server).UpdateStreamMode),
	"PutRecord":                     unary((*gateway.Server).PutRecord).completing(unencrypted),
	"PutRecords":                    unary((*gateway.Server).PutRecords).completing(unencrypted),
	"GetShardIterator":              unary((*gateway.Server).GetShardIterator),
	"GetRecords":                    unary((*gateway.Server).GetRecords),
	"RegisterStreamConsumer":        unary((*gateway.Server).RegisterStreamConsumer),
	"DeregisterStreamConsumer":      unary((*gateway.Server).DeregisterStreamConsumer),
	"DescribeStreamConsumer":        unary((*gateway.Server).DescribeStreamConsumer),
	"ListStreamConsumers":           unary((*gateway.Server).ListStreamConsumers),
	"SubscribeToShard":              subscribeToShard,

	"StartStreamEncryption": {unsupported: "Riffle has no KMS and does not encrypt records at rest yet; the stream stays unencrypted and nothing was changed"},
	"StopStreamEncryption":  {unsupported: "Riffle does not encrypt records at rest yet, so there is no encryption to stop; nothing was changed"},

	"AddTagsToStream":      unary((*gateway.Server).AddTagsToStream),
	"RemoveTagsFromStream": unary((*gateway.Server).RemoveTagsFromStream),
	"ListTagsForStream":    unary((*gateway.Server).ListTagsForStream),
	"TagResource":          unary((*gateway.Server).TagResource),
	"UntagResource":        unary((*gateway.Server).UntagResource),
	"ListTagsForResource":  unary((*gateway.Server).ListTagsForResource),

	"DescribeLimits":             notYet("DescribeLimits"),
	"EnableEnhancedMonitoring":   notYet("EnableEnhancedMonitoring"),
	"DisableEnhancedMonitoring":  notYet("DisableEnhancedMonitoring"),
	"UpdateStreamWarmThroughput": notYet("UpdateStreamWarmThroughput"),
	"UpdateMaxRecordSize":        notYet("UpdateMaxRecordSize"),
	"DescribeAccountSettings":    notYet("DescribeAccountSettings"),
	"UpdateAccountSettings":      notYet("UpdateAccountSettings"),
	"PutResourcePolicy":          notYet("PutResourcePolicy"),
	"GetResourcePolicy":          notYet("GetResourcePolicy"),
	"DeleteResourcePolicy":       notYet("DeleteResourcePolicy"),
}

// streamDescription completes a DescribeStream(Summary) response with what
// Kinesis always reports: no shard-level metrics enabled, no encryption.
func streamDescription(member string) func(map[string]any) {
	return func(out map[string]any) {
		d, ok := out[member].(map[string]any)
		if !ok {
			return
		}
		d["EnhancedMonitoring"] = []any{map[string]any{"ShardLevelMetrics": []any{}}}
		d["EncryptionType"] = "NONE"
	}
}

// unencrypted says so on a write's response, as Kinesis does.
func unencrypted(out map[string]any) { out["EncryptionType"] = "NONE" }
