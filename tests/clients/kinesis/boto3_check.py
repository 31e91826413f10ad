"""A boto3 program written for Kinesis, run against Riffle's Kinesis endpoints.

Creates a stream, writes through every node, reads it back with every
iterator type, subscribes with enhanced fan-out, splits, merges and scales
it, and deletes it; exits non-zero on the first thing that differs from
what Kinesis does. RIFFLE_KINESIS_URLS lists the endpoints (comma-separated).
"""

import datetime
import os
import sys
import time
import uuid

import boto3
from botocore.config import Config

URLS = os.environ.get("RIFFLE_KINESIS_URLS", "http://127.0.0.1:4567").split(",")
CLIENTS = [
    boto3.client("kinesis", endpoint_url=u, config=Config(retries={"max_attempts": 10, "mode": "standard"}))
    for u in URLS
]
STREAM = "boto3-" + uuid.uuid4().hex[:8]


def step(msg):
    print("boto3:", msg, flush=True)


def fail(msg):
    print("boto3: FAILED:", msg, file=sys.stderr, flush=True)
    sys.exit(1)


def wait_for(what, cond, timeout=60):
    deadline = time.time() + timeout
    while True:
        last = cond()
        if last is True:
            return
        if time.time() > deadline:
            fail("timed out waiting for %s (last: %s)" % (what, last))
        time.sleep(0.2)


def client(i):
    return CLIENTS[i % len(CLIENTS)]


def open_shards(k):
    shards = k.list_shards(StreamName=STREAM)["Shards"]
    return sorted(
        (s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]),
        key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]),
    )


def active_with(n):
    def cond():
        s = client(1).describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]
        if s["StreamStatus"] == "ACTIVE" and s["OpenShardCount"] == n:
            return True
        return "%s with %d open shards" % (s["StreamStatus"], s["OpenShardCount"])

    wait_for("ACTIVE with %d open shards" % n, cond)


def read_shard(k, shard_id):
    it = k.get_shard_iterator(StreamName=STREAM, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    out = []
    while it:
        r = k.get_records(ShardIterator=it)
        out.extend(r["Records"])
        if not r["Records"] and r["MillisBehindLatest"] == 0:
            break
        it = r.get("NextShardIterator")
    return out


def check_all(written):
    for i, k in enumerate(CLIENTS):
        got = {}
        for s in k.list_shards(StreamName=STREAM)["Shards"]:
            for r in read_shard(k, s["ShardId"]):
                got[r["SequenceNumber"]] = r["Data"]
        for seq, data in written.items():
            if got.get(seq) != data:
                fail("node %d: record %s read as %r, written %r" % (i + 1, seq, got.get(seq), data))
    step("every node returns all %d records" % len(written))


def main():
    k = client(0)
    k.create_stream(StreamName=STREAM, ShardCount=2)
    k.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    step("created %s" % STREAM)
    try:
        k.create_stream(StreamName=STREAM, ShardCount=2)
        fail("a second CreateStream succeeded")
    except k.exceptions.ResourceInUseException:
        pass

    client(1).add_tags_to_stream(StreamName=STREAM, Tags={"team": "data", "env": "ci"})
    client(2).remove_tags_from_stream(StreamName=STREAM, TagKeys=["env"])
    tags = client(0).list_tags_for_stream(StreamName=STREAM)["Tags"]
    if tags != [{"Key": "team", "Value": "data"}]:
        fail("tags %r" % tags)
    step("tags added, removed and listed")

    written = {}
    for i in range(20):
        data = ("put-%d" % i).encode() + bytes([0, 255])
        r = client(i).put_record(StreamName=STREAM, PartitionKey="key-%d" % i, Data=data)
        written[r["SequenceNumber"]] = data
    entries = [{"PartitionKey": "batch-%d" % i, "Data": ("batch-%d" % i).encode()} for i in range(100)]
    r = client(1).put_records(StreamName=STREAM, Records=entries)
    if r["FailedRecordCount"] != 0:
        fail("PutRecords failed %d records" % r["FailedRecordCount"])
    for e, res in zip(entries, r["Records"]):
        written[res["SequenceNumber"]] = e["Data"]
    step("wrote %d records through %d nodes" % (len(written), len(CLIENTS)))
    check_all(written)

    # Every iterator type.
    first = client(0).put_record(StreamName=STREAM, PartitionKey="iter", Data=b"iter-0")
    second = client(1).put_record(StreamName=STREAM, PartitionKey="iter", Data=b"iter-1")
    shard = first["ShardId"]

    def first_after(**kw):
        it = client(2).get_shard_iterator(StreamName=STREAM, ShardId=shard, **kw)["ShardIterator"]
        recs = client(2).get_records(ShardIterator=it, Limit=1)["Records"]
        return recs[0]["SequenceNumber"] if recs else None

    if first_after(ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=first["SequenceNumber"]) != first["SequenceNumber"]:
        fail("AT_SEQUENCE_NUMBER")
    if first_after(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=first["SequenceNumber"]) != second["SequenceNumber"]:
        fail("AFTER_SEQUENCE_NUMBER")
    hour_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    if first_after(ShardIteratorType="AT_TIMESTAMP", Timestamp=hour_ago) is None:
        fail("AT_TIMESTAMP an hour ago read nothing")
    latest = client(0).get_shard_iterator(StreamName=STREAM, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    third = client(1).put_record(StreamName=STREAM, PartitionKey="iter", Data=b"iter-2")
    seen = {"it": latest}

    def after_latest():
        r = client(0).get_records(ShardIterator=seen["it"])
        if r["Records"] and r["Records"][0]["SequenceNumber"] == third["SequenceNumber"]:
            return True
        seen["it"] = r["NextShardIterator"]
        return "%d records" % len(r["Records"])

    wait_for("the record after LATEST", after_latest, 10)
    for rec, data in ((first, b"iter-0"), (second, b"iter-1"), (third, b"iter-2")):
        written[rec["SequenceNumber"]] = data
    step("every iterator type reads where Kinesis does")

    # Enhanced fan-out.
    arn = k.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]["StreamARN"]
    consumer = k.register_stream_consumer(StreamARN=arn, ConsumerName="boto3-consumer")["Consumer"]
    wait_for(
        "the consumer to be ACTIVE",
        lambda: client(1).describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE",
    )

    def subscribed():
        try:
            sub = client(2).subscribe_to_shard(
                ConsumerARN=consumer["ConsumerARN"], ShardId=shard, StartingPosition={"Type": "TRIM_HORIZON"}
            )
        except k.exceptions.ResourceInUseException as e:
            return str(e)
        for event in sub["EventStream"]:
            for r in event["SubscribeToShardEvent"]["Records"]:
                if r["SequenceNumber"] in written and written[r["SequenceNumber"]] != r["Data"]:
                    fail("record %s pushed as %r" % (r["SequenceNumber"], r["Data"]))
                if r["SequenceNumber"] == third["SequenceNumber"]:
                    sub["EventStream"].close()
                    return True
        return "the subscription ended early"

    wait_for("the subscription to deliver the shard", subscribed, 30)
    step("SubscribeToShard pushed the shard's records")

    # Resharding.
    s0 = open_shards(k)[0]
    lo, hi = int(s0["HashKeyRange"]["StartingHashKey"]), int(s0["HashKeyRange"]["EndingHashKey"])
    client(1).split_shard(StreamName=STREAM, ShardToSplit=s0["ShardId"], NewStartingHashKey=str((lo + hi + 1) // 2))
    active_with(3)
    o = open_shards(k)
    client(2).merge_shards(StreamName=STREAM, ShardToMerge=o[0]["ShardId"], AdjacentShardToMerge=o[1]["ShardId"])
    active_with(2)
    client(0).update_shard_count(StreamName=STREAM, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    active_with(4)
    for i in range(20):
        data = ("after-%d" % i).encode()
        r = client(i).put_record(StreamName=STREAM, PartitionKey="after-%d" % i, Data=data)
        written[r["SequenceNumber"]] = data
    check_all(written)
    step("split, merge and UpdateShardCount; the children take writes")

    try:
        k.describe_stream(StreamName="no-such-" + STREAM)
        fail("DescribeStream of a missing stream succeeded")
    except k.exceptions.ResourceNotFoundException:
        pass
    try:
        k.start_stream_encryption(StreamName=STREAM, EncryptionType="KMS", KeyId="alias/aws/kinesis")
        fail("StartStreamEncryption succeeded")
    except k.exceptions.InvalidArgumentException:
        pass

    k.deregister_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
    k.delete_stream(StreamName=STREAM, EnforceConsumerDeletion=True)
    k.get_waiter("stream_not_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    step("deleted %s: all checks passed" % STREAM)


if __name__ == "__main__":
    main()
