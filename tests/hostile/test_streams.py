"""Floods of streams: many concurrent Watch streams on a running job, on unknown and malformed ids,
and Node.Generate streams, opened and dropped at once or after their first event. Every stream ends
(none is left in flight on the servers) and the servers still answer."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from i2v_contract.wire import common_pb2, coordinator_pb2, node_pb2
from tests.hostile.servers import HostileCluster, serving
from tests.hostile.tally import Tally
from tests.integration.node_process import metric_value
from tests.media import png

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

STREAMS = 300


def watch_and_drop(cluster: HostileCluster, tally: Tally, i: int) -> None:
    which = "leader" if i % 2 else "standby"
    job_id = [cluster.sentinels[-1], f"never-{i}", f"bad/{i}"][i % 3]
    call = cluster.coordinator(which).Watch(coordinator_pb2.WatchRequest(job_id=job_id), timeout=30)
    try:
        if i % 4:  # read one event, then hang up mid-stream
            next(iter(call))
        call.cancel()
        tally.ok(which, "watch-flood", "DROPPED")
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.CANCELLED:
            tally.ok(which, "watch-flood", "DROPPED")
            return
        tally.error(which, "watch-flood", err, job_id)


def node_generate_and_drop(cluster: HostileCluster, tally: Tally, i: int) -> None:
    small = common_pb2.GenerationRequest(image=png(16, 16), width=64, height=64, frames=2, steps=50, seed=i)
    call = cluster.node_stub().Generate(node_pb2.NodeGenerateRequest(request=small), timeout=30)
    try:
        next(iter(call))
        call.cancel()
        tally.ok("node", "generate-flood", "DROPPED")
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.CANCELLED:
            tally.ok("node", "generate-flood", "DROPPED")
            return
        tally.error("node", "generate-flood", err, i)


def in_flight(port: int, method: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return metric_value(r.read().decode(), "i2v_rpc_in_flight", method=method)


def wait_no_streams(port: int, method: str, timeout: float = 20.0) -> float:
    deadline = time.monotonic() + timeout
    while (left := in_flight(port, method)) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_watch_floods_end_every_stream(cluster: HostileCluster, tally: Tally) -> None:
    with ThreadPoolExecutor(64) as pool:
        list(pool.map(lambda i: watch_and_drop(cluster, tally, i), range(STREAMS)))
    for proc in (cluster.leader, cluster.standby):
        assert wait_no_streams(proc.metrics_port, "Watch") == 0, proc.log()
    assert all(serving(chan) for chan in cluster.channels.values())


def test_node_generate_floods_end_every_stream(cluster: HostileCluster, tally: Tally) -> None:
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: node_generate_and_drop(cluster, tally, i), range(STREAMS // 3)))
    assert wait_no_streams(cluster.node.metrics_port, "Generate") <= 1  # a sentinel may be running
    assert serving(cluster.node_channel)
