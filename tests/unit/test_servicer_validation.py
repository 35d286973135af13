"""The servicer's refusals over real in-process gRPC: nothing here reaches the pipeline.

The engine stand-in fails the test if `run` is ever called, which is the point: bad input, a busy
node, a loading or draining node must all be answered before any GPU work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from i2v_contract.limits import DEFAULT_LIMITS
from i2v_contract.memory import I2VGEN_XL
from i2v_contract.profiles import usable_profiles
from i2v_contract.v1 import common_pb2, node_pb2, node_pb2_grpc
from i2v_node.gpu import MemoryMonitor, SimulatedProbe
from i2v_node.metrics import NodeMetrics
from i2v_node.servicer import JobHooks, JobRejected, JobReport, NodeServicer, _Job
from tests.media import png, png_claiming

GIB = 1024**3


@dataclass
class NoRunEngine:
    model_id: str = "tiny"
    device: str = "cpu"
    dtype_name: str = "float32"
    has_accelerator: bool = False
    load_seconds: float = 0.0
    arch: Any = I2VGEN_XL
    ladder: Any = field(default_factory=lambda: usable_profiles(False))

    def run(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("validation must refuse before the engine runs")


def request(**overrides: Any) -> node_pb2.NodeGenerateRequest:
    fields: dict[str, Any] = {
        "image": png(),
        "prompt": "a red square",
        "width": 64,
        "height": 64,
        "frames": 8,
        "fps": 8,
        "steps": 2,
        "seed": 1,
    }
    fields.update(overrides)
    return node_pb2.NodeGenerateRequest(request=common_pb2.GenerationRequest(**fields))


class _Refuse:
    def __init__(self) -> None:
        self.reports: list[JobReport] = []

    async def before_run(self, job_id: str, request: node_pb2.NodeGenerateRequest) -> None:
        raise JobRejected(grpc.StatusCode.FAILED_PRECONDITION, f"claim for {job_id} lost: epoch moved")

    async def after_run(self, report: JobReport) -> None:
        self.reports.append(report)


async def start(servicer: NodeServicer) -> tuple[grpc.aio.Server, node_pb2_grpc.NodeStub, grpc.aio.Channel]:
    server = grpc.aio.server()
    node_pb2_grpc.add_NodeServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return server, node_pb2_grpc.NodeStub(channel), channel


def make_servicer(hooks: JobHooks | None = None) -> NodeServicer:
    return NodeServicer(
        node_id="n-test",
        monitor=MemoryMonitor(SimulatedProbe(6 * GIB)),
        metrics=NodeMetrics(),
        limits=DEFAULT_LIMITS,
        max_result_bytes=64 * 1024 * 1024,
        hooks=hooks,
    )


@pytest.fixture
async def node() -> AsyncIterator[tuple[NodeServicer, node_pb2_grpc.NodeStub]]:
    servicer = make_servicer()
    servicer.set_engine(NoRunEngine())  # type: ignore[arg-type]
    server, stub, channel = await start(servicer)
    yield servicer, stub
    await channel.close()
    await server.stop(0)
    servicer.close()


async def call_error(stub: node_pb2_grpc.NodeStub, req: node_pb2.NodeGenerateRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in stub.Generate(req, timeout=10):
            pass
    return exc.value


BAD = [
    ("empty image", {"image": b""}, "image"),
    ("corrupt image", {"image": png()[:40]}, "image"),
    ("text bytes", {"image": b"hello, I am not a picture"}, "image"),
    ("decompression bomb", {"image": png_claiming(100_000, 100_000)}, "image"),
    ("width not multiple of 8", {"width": 65}, "width"),
    ("absurd width", {"width": 1_000_000}, "width"),
    ("absurd height", {"height": 1_000_000}, "height"),
    ("too many frames", {"frames": 100_000}, "frames"),
    ("too many steps", {"steps": 100_000}, "steps"),
    ("fps out of range", {"fps": 100_000}, "fps"),
    ("negative guidance", {"guidance_scale": -3.0}, "guidance"),
    ("nan guidance", {"guidance_scale": float("nan")}, "guidance"),
    ("huge guidance", {"guidance_scale": 1e9}, "guidance"),
    ("huge prompt", {"prompt": "word " * 50_000}, "prompt"),
    ("unknown model", {"model": "ali-vilab/not-this-one"}, "model"),
]


@pytest.mark.parametrize(("case", "overrides", "field"), BAD, ids=[b[0] for b in BAD])
async def test_bad_input_is_invalid_argument(
    node: tuple[NodeServicer, node_pb2_grpc.NodeStub], case: str, overrides: dict[str, Any], field: str
) -> None:
    servicer, stub = node
    err = await call_error(stub, request(**overrides))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    assert field in (err.details() or ""), err.details()
    assert servicer.job is None
    status = await stub.Status(node_pb2.NodeStatusRequest(), timeout=5)
    assert status.serving and not status.busy


async def test_output_uri_without_store(node: tuple[NodeServicer, node_pb2_grpc.NodeStub]) -> None:
    _, stub = node
    req = request()
    req.output_uri = "file:///tmp/x.mp4"
    err = await call_error(stub, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output_uri" in (err.details() or "")


async def test_busy_is_resource_exhausted(node: tuple[NodeServicer, node_pb2_grpc.NodeStub]) -> None:
    servicer, stub = node
    servicer.job = _Job("job-42", request(), 0.0)
    err = await call_error(stub, request())
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == "node busy with job job-42; retry later or use another node"
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
    assert not (await stub.Status(node_pb2.NodeStatusRequest(), timeout=5)).serving


async def test_loading_is_unavailable_and_status_answers() -> None:
    servicer = make_servicer()
    server, stub, channel = await start(servicer)
    try:
        err = await call_error(stub, request())
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert "loading" in (err.details() or "")
        status = await stub.Status(node_pb2.NodeStatusRequest(), timeout=5)
        assert not status.serving
        assert status.tier == common_pb2.TIER_LT12  # the simulated 6 GiB
        assert status.free_bytes == 6 * GIB
    finally:
        await channel.close()
        await server.stop(0)
        servicer.close()


async def test_before_run_hook_can_refuse_and_frees_the_node() -> None:
    hooks = _Refuse()
    servicer = make_servicer(hooks)
    servicer.set_engine(NoRunEngine())  # type: ignore[arg-type]
    server, stub, channel = await start(servicer)
    try:
        req = request()
        req.job_id = "job-7"
        err = await call_error(stub, req)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "claim for job-7 lost" in (err.details() or "")
        assert servicer.job is None
    finally:
        await channel.close()
        await server.stop(0)
        servicer.close()


async def test_status_when_ready(node: tuple[NodeServicer, node_pb2_grpc.NodeStub]) -> None:
    _, stub = node
    status = await stub.Status(node_pb2.NodeStatusRequest(), timeout=5)
    assert status.node_id == "n-test"
    assert status.model == "tiny"
    assert status.serving and not status.busy
    assert list(status.profiles) == [p.name for p in usable_profiles(False)]
    assert status.profile in status.profiles


class _Claims:
    """Accepts every claim; records what the seam saw, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, grpc.StatusCode | None]] = []

    async def before_run(self, job_id: str, request: node_pb2.NodeGenerateRequest) -> None:
        self.seen.append(("claim", job_id, None))

    async def after_run(self, report: JobReport) -> None:
        self.seen.append(("result", report.job_id, report.code))


@pytest.fixture
async def claiming() -> AsyncIterator[tuple[NodeServicer, node_pb2_grpc.NodeStub, _Claims]]:
    hooks = _Claims()
    servicer = make_servicer(hooks)
    servicer.set_engine(NoRunEngine())  # type: ignore[arg-type]
    server, stub, channel = await start(servicer)
    yield servicer, stub, hooks
    await channel.close()
    await server.stop(0)
    servicer.close()


DISPATCHED_BAD = [
    ("corrupt image", {"image": png()[:40]}, "image"),
    ("unknown model", {"model": "ali-vilab/not-this-one"}, "model"),
    ("too many frames", {"frames": 100_000}, "frames"),
]


@pytest.mark.parametrize(("case", "overrides", "field"), DISPATCHED_BAD, ids=[b[0] for b in DISPATCHED_BAD])
async def test_dispatched_bad_input_is_claimed_then_recorded_as_invalid(
    claiming: tuple[NodeServicer, node_pb2_grpc.NodeStub, _Claims],
    case: str,
    overrides: dict[str, Any],
    field: str,
) -> None:
    servicer, stub, hooks = claiming
    req = request(**overrides)
    req.job_id = "job-9"
    err = await call_error(stub, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    assert field in (err.details() or "")
    # The claim came first, so a result must follow: the coordinator finalises instead of waiting.
    assert hooks.seen == [("claim", "job-9", None), ("result", "job-9", grpc.StatusCode.INVALID_ARGUMENT)]
    assert servicer.job is None


async def test_standalone_bad_input_never_reaches_the_hooks(
    claiming: tuple[NodeServicer, node_pb2_grpc.NodeStub, _Claims],
) -> None:
    _, stub, hooks = claiming
    err = await call_error(stub, request(width=65))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert hooks.seen == []


async def test_busy_refuses_a_dispatch_before_its_claim(
    claiming: tuple[NodeServicer, node_pb2_grpc.NodeStub, _Claims],
) -> None:
    servicer, stub, hooks = claiming
    servicer.job = _Job("job-42", request(), 0.0)
    req = request()
    req.job_id = "job-43"
    err = await call_error(stub, req)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert hooks.seen == []
