"""The servicer's refusals over real in-process gRPC: nothing here reaches the pipeline.

The engine stand-in fails the test if `run` is ever called, which is the point: bad input, a busy
node, a loading or draining node must all be answered before any GPU work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from i2v_common.artifacts import FileStore
from i2v_common.errors import details_of
from i2v_common.rpc import node_pb2_grpc
from i2v_contract.limits import DEFAULT_LIMITS
from i2v_contract.profiles import usable_profiles
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node.running import RunningJob
from i2v_node.servicer import NodeServicer
from tests.fakes.node import GIB, Claims, NoRunEngine, Served, call_error, make_servicer, request
from tests.media import png, png_claiming


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param({"image": b""}, "image", id="empty image"),
        pytest.param({"image": png()[:40]}, "image", id="corrupt image"),
        pytest.param({"image": b"hello, I am not a picture"}, "image", id="text bytes"),
        pytest.param({"image": png_claiming(100_000, 100_000)}, "image", id="decompression bomb"),
        pytest.param({"width": 65}, "width", id="width not multiple of 8"),
        pytest.param({"width": 1_000_000}, "width", id="absurd width"),
        pytest.param({"height": 1_000_000}, "height", id="absurd height"),
        pytest.param({"frames": 100_000}, "frames", id="too many frames"),
        pytest.param({"steps": 100_000}, "steps", id="too many steps"),
        pytest.param({"fps": 100_000}, "fps", id="fps out of range"),
        pytest.param({"guidance_scale": -3.0}, "guidance", id="negative guidance"),
        pytest.param({"guidance_scale": float("nan")}, "guidance", id="nan guidance"),
        pytest.param({"guidance_scale": 1e9}, "guidance", id="huge guidance"),
        pytest.param({"prompt": "word " * 50_000}, "prompt", id="huge prompt"),
        pytest.param({"model": "ali-vilab/not-this-one"}, "model", id="unknown model"),
        pytest.param({"model": "tiny\n"}, "model", id="control character in model"),
        pytest.param(
            {"width": 1280, "height": 1280, "frames": 64, "steps": 51}, "steps", id="over the work budget"
        ),
    ],
)
async def test_bad_input_is_invalid_argument(
    node: tuple[NodeServicer, node_pb2_grpc.NodeStub], overrides: dict[str, Any], field: str
) -> None:
    servicer, stub = node
    err = await call_error(stub, request(**overrides))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, overrides
    assert field in (err.details() or ""), err.details()
    [violation] = details_of(err).field_violations  # BadRequest names the field beside the message
    assert field in violation.field and violation.description in (err.details() or "")
    assert servicer.job is None
    status = await stub.Status(node_pb2.NodeStatusRequest(), timeout=5)
    assert status.serving and not status.busy


async def test_output_uri_without_store_is_the_nodes_fault(
    node: tuple[NodeServicer, node_pb2_grpc.NodeStub],
) -> None:
    _, stub = node
    req = request()
    req.output_uri = "file:///tmp/x.mp4"
    err = await call_error(stub, req)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "output_uri" in (err.details() or "") and "--artifacts" in (err.details() or "")


@pytest.mark.parametrize(
    "field", [pytest.param("output_uri", id="output_uri"), pytest.param("image_uri", id="image_uri")]
)
async def test_uri_outside_the_nodes_store_is_failed_precondition(tmp_path: Path, field: str) -> None:
    hooks = Claims()
    servicer = make_servicer(hooks, artifacts=FileStore(tmp_path / "node-store"))
    servicer.set_engine(NoRunEngine())  # type: ignore[arg-type]
    served = await Served.start(servicer)
    try:
        elsewhere = (tmp_path / "coordinator-store" / "x").as_uri()
        req = request(image=b"", image_uri=elsewhere) if field == "image_uri" else request()
        if field == "output_uri":
            req.output_uri = elsewhere
        err = await call_error(served.stub, req)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
        assert field in (err.details() or "") and "artifact store" in (err.details() or "")
        req.job_id, req.attempt = "job-3", 1  # dispatched: claimed first, then the same code recorded
        err = await call_error(served.stub, req)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert hooks.seen == [
            ("claim", "job-3", None),
            ("result", "job-3", grpc.StatusCode.FAILED_PRECONDITION),
        ]
    finally:
        await served.stop()


@pytest.mark.parametrize(
    ("field", "name"),
    [
        pytest.param("output_uri", "../../../tmp/x", id="output-traversal"),
        pytest.param("output_uri", "jobs/j/a/b/c.mp4", id="output-extra-segments"),
        pytest.param("image_uri", "../outside.png", id="image-traversal"),
        pytest.param("image_uri", "jobs/j/a/b/c.png", id="image-extra-segments"),
    ],
)
async def test_uri_naming_no_artifact_is_invalid_before_any_work(
    tmp_path: Path, field: str, name: str
) -> None:
    hooks = Claims()
    store = FileStore(tmp_path / "node-store")
    servicer = make_servicer(hooks, artifacts=store)
    servicer.set_engine(NoRunEngine())  # type: ignore[arg-type]
    served = await Served.start(servicer)
    try:
        uri = f"{store.root_url}/{name}"
        req = request(image=b"", image_uri=uri) if field == "image_uri" else request()
        if field == "output_uri":
            req.output_uri = uri
        err = await call_error(served.stub, req)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        [violation] = details_of(err).field_violations
        assert violation.field == field and field in (err.details() or "")
        assert hooks.seen == [] and not (tmp_path / "tmp").exists()
    finally:
        await served.stop()


async def test_image_uri_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    uri = store.put("jobs/big/input.png", b"\0" * (DEFAULT_LIMITS.max_image_bytes + 1))
    servicer = make_servicer(artifacts=store)
    servicer.set_engine(NoRunEngine())  # type: ignore[arg-type]
    served = await Served.start(servicer)
    try:
        err = await call_error(served.stub, request(image=b"", image_uri=uri))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "image_uri" in (err.details() or "") and "bytes" in (err.details() or "")
    finally:
        await served.stop()


async def test_cancel_with_a_malformed_job_id_is_invalid(
    node: tuple[NodeServicer, node_pb2_grpc.NodeStub],
) -> None:
    _, stub = node
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Cancel(node_pb2.NodeCancelRequest(job_id="../x"), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details_of(err.value).field_violations] == ["job_id"]
    assert not (await stub.Cancel(node_pb2.NodeCancelRequest(job_id="nothing-runs"), timeout=5)).cancelled


async def test_missing_input_image_in_the_store_is_the_callers_fault(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    servicer = make_servicer(artifacts=store)
    servicer.set_engine(NoRunEngine())  # type: ignore[arg-type]
    served = await Served.start(servicer)
    try:
        err = await call_error(
            served.stub, request(image=b"", image_uri=store.uri_for("jobs/none/input.png"))
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "image_uri" in (err.details() or "")
    finally:
        await served.stop()


async def test_busy_is_resource_exhausted(node: tuple[NodeServicer, node_pb2_grpc.NodeStub]) -> None:
    servicer, stub = node
    servicer.slot.job = RunningJob("job-42", request(), 0.0)
    err = await call_error(stub, request())
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == "node busy with job job-42; retry later or use another node"
    busy = details_of(err)
    assert (busy.reason, busy.metadata["job_id"], busy.retry_after_s) == ("NODE_BUSY", "job-42", 2.0)
    status = await stub.Status(node_pb2.NodeStatusRequest(), timeout=5)
    assert status.busy and status.job_id == "job-42"
    assert not (await stub.Cancel(node_pb2.NodeCancelRequest(job_id="other"), timeout=5)).cancelled
    assert (await stub.Cancel(node_pb2.NodeCancelRequest(), timeout=5)).cancelled
    assert servicer.job.cancel.is_set()


async def test_draining_is_unavailable(node: tuple[NodeServicer, node_pb2_grpc.NodeStub]) -> None:
    servicer, stub = node
    servicer.start_drain()
    err = await call_error(stub, request())
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert err.details() == "node is draining; retry on another node"
    assert details_of(err).reason == "NODE_DRAINING" and details_of(err).retry_after_s is None
    assert not (await stub.Status(node_pb2.NodeStatusRequest(), timeout=5)).serving


async def test_loading_is_unavailable_and_status_answers() -> None:
    served = await Served.start(make_servicer())
    try:
        err = await call_error(served.stub, request())
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert "loading" in (err.details() or "")
        assert (details_of(err).reason, details_of(err).retry_after_s) == ("NODE_LOADING", 5.0)
        status = await served.stub.Status(node_pb2.NodeStatusRequest(), timeout=5)
        assert not status.serving
        assert status.tier == common_pb2.TIER_LT12  # the simulated 6 GiB
        assert status.free_bytes == 6 * GIB
    finally:
        await served.stop()


async def test_status_when_ready(node: tuple[NodeServicer, node_pb2_grpc.NodeStub]) -> None:
    _, stub = node
    status = await stub.Status(node_pb2.NodeStatusRequest(), timeout=5)
    assert status.node_id == "n-test"
    assert status.model == "tiny"
    assert status.serving and not status.busy
    assert list(status.profiles) == [p.name for p in usable_profiles(False)]
    assert status.profile in status.profiles


async def test_standalone_bad_input_never_reaches_the_hooks(
    claiming: tuple[NodeServicer, node_pb2_grpc.NodeStub, Claims],
) -> None:
    _, stub, hooks = claiming
    err = await call_error(stub, request(width=65))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert hooks.seen == []


@pytest.mark.parametrize(
    ("job_id", "attempt", "says"),
    [
        pytest.param("a/b", 1, "job_id: 'a/b' is not allowed", id="slash-in-job-id"),
        pytest.param("a\nb", 1, "job_id: 'a\\nb' is not allowed", id="newline-in-job-id"),
        pytest.param("job-5", 0, "attempt: 0 must be >= 1", id="attempt-zero"),
    ],
)
async def test_bad_dispatch_fields_are_invalid_before_any_work(
    claiming: tuple[NodeServicer, node_pb2_grpc.NodeStub, Claims], job_id: str, attempt: int, says: str
) -> None:
    servicer, stub, hooks = claiming
    req = request()
    req.job_id, req.attempt = job_id, attempt
    err = await call_error(stub, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert says in (err.details() or "")
    [violation] = details_of(err).field_violations
    assert violation.field == says.partition(":")[0] and details_of(err).reason == "INVALID_DISPATCH"
    assert hooks.seen == [] and servicer.job is None


async def test_busy_refuses_a_dispatch_before_its_claim(
    claiming: tuple[NodeServicer, node_pb2_grpc.NodeStub, Claims],
) -> None:
    servicer, stub, hooks = claiming
    servicer.slot.job = RunningJob("job-42", request(), 0.0)
    req = request()
    req.job_id, req.attempt = "job-43", 1
    err = await call_error(stub, req)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert hooks.seen == []
