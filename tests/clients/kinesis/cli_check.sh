#!/bin/sh
# The AWS CLI against Riffle's Kinesis endpoints: create, put, read, split,
# scale, delete, each through another node. Called by run.sh.
#
#   AWS=/usr/bin/aws PYTHON=/usr/bin/python3 cli_check.sh URL[,URL...]
set -eu

urls=$1
stream=cli-$$-$(date +%s)
n=$(echo "$urls" | tr ',' '\n' | wc -l)
# kin I ARGS...: the CLI through endpoint I (0-based, wrapping).
kin() {
	i=$1
	shift
	url=$(echo "$urls" | tr ',' '\n' | sed -n "$((i % n + 1))p")
	"$AWS" --endpoint-url "$url" --output json kinesis "$@"
}
# field EXPR: reads JSON on stdin and prints EXPR of it (a Python expression of d).
field() { "$PYTHON" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
step() { echo "aws-cli: $*"; }
fail() { echo "aws-cli: FAILED: $*" >&2; exit 1; }

kin 0 create-stream --stream-name "$stream" --shard-count 1
kin 1 wait stream-exists --stream-name "$stream"
step "created $stream"

seq=$(kin 2 put-record --stream-name "$stream" --partition-key k --cli-binary-format raw-in-base64-out --data "hello from the aws cli" | field 'd["SequenceNumber"]')
kin 0 put-records --stream-name "$stream" --cli-binary-format raw-in-base64-out \
	--records PartitionKey=a,Data=one PartitionKey=b,Data=two >/dev/null
step "put 3 records"

shard=$(kin 1 list-shards --stream-name "$stream" | field 'd["Shards"][0]["ShardId"]')
it=$(kin 1 get-shard-iterator --stream-name "$stream" --shard-id "$shard" --shard-iterator-type AT_SEQUENCE_NUMBER \
	--starting-sequence-number "$seq" | field 'd["ShardIterator"]')
got=$(kin 2 get-records --shard-iterator "$it" | field '" ".join(__import__("base64").b64decode(r["Data"]).decode() for r in d["Records"])')
[ "$got" = "hello from the aws cli one two" ] || fail "get-records read '$got'"
step "get-records read the 3 records back"

hi=$(kin 0 describe-stream --stream-name "$stream" | field 'd["StreamDescription"]["Shards"][0]["HashKeyRange"]["EndingHashKey"]')
kin 1 split-shard --stream-name "$stream" --shard-to-split "$shard" --new-starting-hash-key "$("$PYTHON" -c "print(($hi + 1) // 2)")"
for i in $(seq 1 150); do
	st=$(kin 2 describe-stream-summary --stream-name "$stream" | field 'd["StreamDescriptionSummary"]["StreamStatus"] + " " + str(d["StreamDescriptionSummary"]["OpenShardCount"])')
	[ "$st" = "ACTIVE 2" ] && break
	[ "$i" -lt 150 ] || fail "after split-shard the stream is $st"
	sleep 0.2
done
step "split-shard: 2 open shards"
kin 0 update-shard-count --stream-name "$stream" --target-shard-count 4 --scaling-type UNIFORM_SCALING >/dev/null
for i in $(seq 1 150); do
	st=$(kin 1 describe-stream-summary --stream-name "$stream" | field 'd["StreamDescriptionSummary"]["StreamStatus"] + " " + str(d["StreamDescriptionSummary"]["OpenShardCount"])')
	[ "$st" = "ACTIVE 4" ] && break
	[ "$i" -lt 150 ] || fail "after update-shard-count the stream is $st"
	sleep 0.2
done
step "update-shard-count: 4 open shards"

if kin 2 describe-stream-summary --stream-name "no-such-$stream" 2>/tmp/cli-err.$$; then
	fail "describe-stream-summary of a missing stream succeeded"
fi
grep -q ResourceNotFoundException /tmp/cli-err.$$ || fail "a missing stream: $(cat /tmp/cli-err.$$)"
rm -f /tmp/cli-err.$$

kin 0 delete-stream --stream-name "$stream"
kin 1 wait stream-not-exists --stream-name "$stream"
step "deleted $stream: all checks passed"
