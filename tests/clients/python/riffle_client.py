"""A Riffle client in Python, from stubs generated out of proto/ (run.sh).

Checks, against the nodes in RIFFLE_ADDR (comma-separated host:port):
create a stream, put records, read them back with shard iterators,
register a consumer and receive them by SubscribeToShard, and consume them
as a consumer group with the plain ConsumerGroups calls (heartbeat,
checkpoint, handover by release, fencing, leave, delete). Every call goes
to the nodes in turn, so that calls are relayed between nodes when there
are several. Exits non-zero on the first mismatch.
"""

import os
import sys
import time

import grpc

from riffle.v1 import groups_pb2 as gpb
from riffle.v1 import groups_pb2_grpc as ggrpc
from riffle.v1 import streams_pb2 as pb
from riffle.v1 import streams_pb2_grpc as sgrpc

TIMEOUT = 10  # seconds, each call


class Mismatch(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Mismatch(what)


class Nodes:
    """Stubs for every node, handed out in turn."""

    def __init__(self, addrs):
        self.channels = [grpc.insecure_channel(a) for a in addrs]
        self.turn = 0

    def _next(self):
        ch = self.channels[self.turn % len(self.channels)]
        self.turn += 1
        return ch

    def streams(self):
        return sgrpc.StreamsStub(self._next())

    def groups(self):
        return ggrpc.ConsumerGroupsStub(self._next())


def retrying(call, what, deadline=30, retry_codes=(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION)):
    """Calls call() until it succeeds, retrying the given codes."""
    end = time.time() + deadline
    while True:
        try:
            return call()
        except grpc.RpcError as e:
            if e.code() not in retry_codes or time.time() > end:
                raise Mismatch(f"{what}: {e.code()} {e.details()}") from e
            time.sleep(0.2)


def wait_until(cond, what, deadline=30):
    end = time.time() + deadline
    while True:
        got = cond()
        if got:
            return got
        if time.time() > end:
            raise Mismatch(f"timed out waiting for {what}")
        time.sleep(0.2)


def create_stream(nodes, name, shards):
    nodes.streams().CreateStream(pb.CreateStreamRequest(stream_name=name, shard_count=shards), timeout=TIMEOUT)

    def active():
        s = nodes.streams().DescribeStreamSummary(pb.DescribeStreamSummaryRequest(stream_name=name), timeout=TIMEOUT)
        return s.stream_description_summary.stream_status == pb.STREAM_STATUS_ACTIVE
    wait_until(active, f"{name} ACTIVE")


def put(nodes, stream, prefix, n):
    """Puts n records; returns {shard: [(seq, key, data)]} in sequence order."""
    entries = [pb.PutRecordsRequestEntry(partition_key=f"{prefix}-{i}", data=f"{prefix} data {i}".encode()) for i in range(n)]
    resp = retrying(lambda: nodes.streams().PutRecords(pb.PutRecordsRequest(stream_name=stream, records=entries), timeout=TIMEOUT), "PutRecords")
    check(resp.failed_record_count == 0 and len(resp.records) == n, f"PutRecords: {resp.failed_record_count} failed")
    by_shard = {}
    for e, r in zip(entries, resp.records):
        by_shard.setdefault(r.shard_id, []).append((r.sequence_number, e.partition_key, e.data))
    for recs in by_shard.values():
        recs.sort(key=lambda x: int(x[0]))
    return by_shard


def read_shard(nodes, stream, shard, after=None):
    """Reads a shard with iterators from TRIM_HORIZON (or after a sequence
    number) up to its tip."""
    req = pb.GetShardIteratorRequest(stream_name=stream, shard_id=shard, shard_iterator_type=pb.SHARD_ITERATOR_TYPE_TRIM_HORIZON)
    if after:
        req = pb.GetShardIteratorRequest(stream_name=stream, shard_id=shard,
                                         shard_iterator_type=pb.SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER, starting_sequence_number=after)
    it = retrying(lambda: nodes.streams().GetShardIterator(req, timeout=TIMEOUT), "GetShardIterator").shard_iterator
    out = []
    while it:
        resp = retrying(lambda: nodes.streams().GetRecords(pb.GetRecordsRequest(shard_iterator=it), timeout=TIMEOUT), "GetRecords",
                        retry_codes=(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED))
        out += [(r.sequence_number, r.partition_key, r.data) for r in resp.records]
        it = resp.next_shard_iterator
        if not resp.records and resp.millis_behind_latest == 0:
            break
    return out


def same(what, got, want):
    check(got == want, f"{what}: got {len(got)} records {got[:3]}..., want {len(want)} {want[:3]}...")


def check_iterators(nodes, stream, written):
    for shard, want in written.items():
        same(f"GetRecords of {shard}", read_shard(nodes, stream, shard), want)
    print(f"python-client: read {sum(map(len, written.values()))} records back with shard iterators")


def check_fanout(nodes, stream, written):
    reg = nodes.streams().RegisterStreamConsumer(pb.RegisterStreamConsumerRequest(stream_name=stream, consumer_name="py-consumer"), timeout=TIMEOUT)
    arn = reg.consumer.consumer_arn

    def active():
        d = nodes.streams().DescribeStreamConsumer(pb.DescribeStreamConsumerRequest(consumer_arn=arn), timeout=TIMEOUT)
        return d.consumer_description.consumer_status == pb.CONSUMER_STATUS_ACTIVE
    wait_until(active, "consumer ACTIVE")
    for shard, want in written.items():
        got = []
        call = nodes.streams().SubscribeToShard(pb.SubscribeToShardRequest(
            consumer_arn=arn, shard_id=shard, starting_position=pb.StartingPosition(type=pb.SHARD_ITERATOR_TYPE_TRIM_HORIZON)), timeout=30)
        try:
            for ev in call:
                got += [(r.sequence_number, r.partition_key, r.data) for r in ev.records]
                if len(got) >= len(want):
                    break
                check(ev.continuation_sequence_number or not got, "event without continuation_sequence_number")
        finally:
            call.cancel()
        same(f"SubscribeToShard of {shard}", got, want)
    nodes.streams().DeregisterStreamConsumer(pb.DeregisterStreamConsumerRequest(consumer_arn=arn), timeout=TIMEOUT)
    print(f"python-client: received {sum(map(len, written.values()))} records by enhanced fan-out")


class GroupWorker:
    """A consumer-group worker with nothing but the plain calls: heartbeat,
    read each assigned shard from its checkpoint, checkpoint, release the
    shards the heartbeat no longer lists."""

    def __init__(self, nodes, group, stream, worker):
        self.nodes, self.group, self.stream, self.worker = nodes, group, stream, worker
        self.leases = {}  # shard -> ShardLease being processed
        self.delivered = {}  # shard -> [(seq, key, data)]

    def heartbeat(self):
        resp = retrying(lambda: self.nodes.groups().Heartbeat(gpb.HeartbeatRequest(
            group_name=self.group, stream_name=self.stream, worker_id=self.worker, lease_duration_millis=3000), timeout=TIMEOUT), "Heartbeat")
        assigned = {l.shard_id: l for l in resp.leases}
        for shard, lease in list(self.leases.items()):
            if shard not in assigned or assigned[shard].lease_counter != lease.lease_counter:
                # Handed to another worker: its checkpoint is current (we
                # checkpoint after every read), so release at once.
                retrying(lambda: self.nodes.groups().ReleaseLease(gpb.ReleaseLeaseRequest(
                    group_name=self.group, worker_id=self.worker, shard_id=shard, lease_counter=lease.lease_counter), timeout=TIMEOUT), "ReleaseLease")
                del self.leases[shard]
        for shard, lease in assigned.items():
            self.leases.setdefault(shard, lease)
        return resp

    def process(self):
        """Reads every held shard from its checkpoint to its tip and
        checkpoints the last record."""
        for shard, lease in self.leases.items():
            recs = read_shard(self.nodes, self.stream, shard, after=lease.checkpoint or None)
            self.delivered.setdefault(shard, []).extend(recs)
            if recs:
                last = recs[-1][0]
                retrying(lambda: self.nodes.groups().Checkpoint(gpb.CheckpointRequest(
                    group_name=self.group, worker_id=self.worker, shard_id=shard, lease_counter=lease.lease_counter,
                    sequence_number=last), timeout=TIMEOUT), "Checkpoint", retry_codes=(grpc.StatusCode.UNAVAILABLE,))
                lease.checkpoint = last

    def leave(self):
        retrying(lambda: self.nodes.groups().LeaveConsumerGroup(gpb.LeaveConsumerGroupRequest(
            group_name=self.group, worker_id=self.worker), timeout=TIMEOUT), "LeaveConsumerGroup")


def check_group(nodes, stream, written, shards):
    group = f"{stream}-group"
    a = GroupWorker(nodes, group, stream, "py-a")
    wait_until(lambda: len(a.heartbeat().leases) == shards, "py-a holds every shard")
    a.process()
    for shard, want in written.items():
        same(f"group delivery of {shard}", a.delivered.get(shard, []), want)

    # A stale lease counter is fenced off.
    shard, lease = next(iter(a.leases.items()))
    try:
        nodes.groups().Checkpoint(gpb.CheckpointRequest(group_name=group, worker_id="py-a", shard_id=shard,
                                                        lease_counter=lease.lease_counter + 1000, sequence_number=lease.checkpoint), timeout=TIMEOUT)
        raise Mismatch("checkpoint with a stale lease counter was accepted")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.FAILED_PRECONDITION and e.details().startswith("LeaseLostException"),
              f"stale checkpoint: {e.code()} {e.details()}")

    # A second worker joins: py-a hands half the shards over after its
    # checkpoints, and py-b resumes there: nothing is delivered twice.
    more = put(nodes, stream, "more", 40)
    b = GroupWorker(nodes, group, stream, "py-b")

    def shared():
        a.heartbeat()
        b.heartbeat()
        return len(a.leases) == shards // 2 and len(b.leases) == shards - shards // 2
    wait_until(shared, "shards shared by py-a and py-b")
    a.process()
    b.process()
    for shard, want in more.items():
        got = a.delivered.get(shard, [])[len(written.get(shard, [])):] if shard in a.leases else b.delivered.get(shard, [])
        same(f"group delivery of new records of {shard}", got, want)

    d = nodes.groups().DescribeConsumerGroup(gpb.DescribeConsumerGroupRequest(group_name=group), timeout=TIMEOUT).group
    check(d.stream_name == stream and d.lease_duration_millis == 3000, f"DescribeConsumerGroup: {d}")
    for l in d.leases:
        last = (written.get(l.shard_id, []) + more.get(l.shard_id, []))[-1][0]
        check(l.checkpoint == last, f"{l.shard_id} checkpoint {l.checkpoint}, want {last}")
    listed = nodes.groups().ListConsumerGroups(gpb.ListConsumerGroupsRequest(stream_name=stream), timeout=TIMEOUT).groups
    check([g.group_name for g in listed] == [group], f"ListConsumerGroups: {listed}")

    a.leave()
    wait_until(lambda: len(b.heartbeat().leases) == shards, "py-b holds every shard after py-a left")
    b.leave()
    nodes.groups().DeleteConsumerGroup(gpb.DeleteConsumerGroupRequest(group_name=group), timeout=TIMEOUT)
    print(f"python-client: consumer group delivered every record once, handed shards over, and fenced a stale lease")


def main():
    addrs = [a.strip() for a in (sys.argv[1] if len(sys.argv) > 1 else os.environ.get("RIFFLE_ADDR", "127.0.0.1:7450")).split(",") if a.strip()]
    nodes = Nodes(addrs)
    for addr, ch in zip(addrs, nodes.channels):
        try:
            grpc.channel_ready_future(ch).result(timeout=30)
        except grpc.FutureTimeoutError:
            raise Mismatch(f"no connection to {addr} within 30 s")
    stream = f"py-{os.getpid()}-{int(time.time())}"
    shards = 2
    create_stream(nodes, stream, shards)
    print(f"python-client: created stream {stream} with {shards} shards on {','.join(addrs)}")
    written = put(nodes, stream, "rec", 100)
    check(len(written) == shards, f"records landed on {len(written)} shards, want {shards}")
    check_iterators(nodes, stream, written)
    check_fanout(nodes, stream, written)
    check_group(nodes, stream, written, shards)
    nodes.streams().DeleteStream(pb.DeleteStreamRequest(stream_name=stream, enforce_consumer_deletion=True), timeout=TIMEOUT)
    print("python-client: PASS")


if __name__ == "__main__":
    try:
        main()
    except Mismatch as e:
        print(f"python-client: FAIL: {e}", file=sys.stderr)
        sys.exit(1)
