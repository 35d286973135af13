"""Hostile Node.Generate and Node.Cancel calls to a real tiny node in the cluster (while the
cluster's sentinel jobs run on it): bad fields, ids, dispatch values and artifact URIs."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from i2v_contract.limits import DEFAULT_LIMITS as L
from i2v_contract.wire import common_pb2, node_pb2
from tests.hostile import strategies as hs
from tests.hostile.conftest import HOSTILE
from tests.hostile.servers import MIB, HostileCluster
from tests.hostile.tally import Tally
from tests.integration.node_process import metric_value
from tests.media import png

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def generate(cluster: HostileCluster, tally: Tally, test: str, request: node_pb2.NodeGenerateRequest) -> None:
    """One Generate call; a request that passes every check is cancelled once it starts (the
    barrage tests refusals, not the pipeline)."""
    call = cluster.node_stub().Generate(request, timeout=30)
    try:
        for event in call:
            if event.HasField("progress"):
                call.cancel()
                tally.ok("node", test, "STARTED")
                return
        tally.ok("node", test)
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.CANCELLED and call.cancelled():  # type: ignore[attr-defined]
            tally.ok("node", test, "STARTED")
            return
        tally.error("node", test, err, request)


@pytest.fixture(scope="module")
def root(cluster: HostileCluster) -> str:
    return cluster.store_root


@given(data=st.data())
@HOSTILE
def test_node_generate_refuses_hostile_requests_with_a_named_field(
    cluster: HostileCluster, tally: Tally, root: str, data: st.DataObject
) -> None:
    generate(cluster, tally, "node-generate", data.draw(hs.node_requests(root)))


@given(job_id=hs.job_ids().filter(bool))
@HOSTILE
def test_node_cancel_refuses_malformed_ids(cluster: HostileCluster, tally: Tally, job_id: str) -> None:
    # "" means "whatever runs now" and would cancel a sentinel: a caller's right, not hostile input.
    try:
        cluster.node_stub().Cancel(node_pb2.NodeCancelRequest(job_id=job_id), timeout=10)
        tally.ok("node", "node-cancel")
    except grpc.RpcError as err:
        tally.error("node", "node-cancel", err, job_id)


def test_output_uri_escaping_the_store_is_refused_before_any_work(
    cluster: HostileCluster, tally: Tally, root: str
) -> None:
    """The cases main ran to the end and then failed: refused up front, nothing written."""
    invalid_before = metric_value(cluster.node.metrics(), "i2v_jobs_total", outcome="invalid")
    uris = [f"{root}/../escaped/x.mp4", f"{root}/jobs/j/a/b/c.mp4", f"{root}/jobs/j/../../../escaped"]
    for uri in uris:
        small = common_pb2.GenerationRequest(image=png(16, 16), width=64, height=64, frames=2, steps=2)
        request = node_pb2.NodeGenerateRequest(request=small, output_uri=uri)
        with pytest.raises(grpc.RpcError) as err:
            for _ in cluster.node_stub().Generate(request, timeout=30):
                pass
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert (err.value.details() or "").startswith("output_uri: ")
        tally.error("node", "node-output-uri", err.value, uri)
    invalid_after = metric_value(cluster.node.metrics(), "i2v_jobs_total", outcome="invalid")
    assert invalid_after - invalid_before == len(uris)
    assert not (cluster.workdir / "escaped").exists()


@pytest.mark.parametrize(
    ("size", "code"),
    [
        pytest.param(L.max_image_bytes + 1, grpc.StatusCode.INVALID_ARGUMENT, id="image-just-over-the-limit"),
        pytest.param(40 * MIB, grpc.StatusCode.RESOURCE_EXHAUSTED, id="message-over-the-receive-limit"),
    ],
)
def test_oversized_requests_are_refused(
    cluster: HostileCluster, tally: Tally, size: int, code: grpc.StatusCode
) -> None:
    image = common_pb2.GenerationRequest(image=b"\x89PNG" + b"\0" * size)
    with pytest.raises(grpc.RpcError) as err:
        for _ in cluster.node_stub().Generate(node_pb2.NodeGenerateRequest(request=image), timeout=60):
            pass
    assert err.value.code() == code, err.value.details()
    tally.error("node", "oversized", err.value, size)
