"""The servicer's refusals over real in-process gRPC: nothing here reaches the pipeline.

The engine stand-in fails the test if `run` is ever called, which is the point: bad input, a busy
node, a loading or draining node must all be answered before any GPU work.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from i2v_client.node_client import GenerateCall
from i2v_common.artifacts import FileStore
from i2v_common.rpc import node_pb2_grpc
from i2v_contract.limits import DEFAULT_LIMITS
from i2v_contract.memory import I2VGEN_XL
from i2v_contract.profiles import usable_profiles
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node.gpu import MemoryMonitor, SimulatedProbe
from i2v_node.hooks import JobHooks, JobRejected, JobReport, Stop
from i2v_node.job import Cancelled, ProgressEvent
from i2v_node.metrics import NodeMetrics
from i2v_node.servicer import NodeServicer, _Job
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

    async def before_run(self, job_id: str, request: node_pb2.NodeGenerateRequest, stop: Stop) -> None:
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


def make_servicer(
    hooks: JobHooks | None = None, *, artifacts: FileStore | None = None, heartbeat_interval: float = 2.0
) -> NodeServicer:
    return NodeServicer(
        node_id="n-test",
        monitor=MemoryMonitor(SimulatedProbe(6 * GIB)),
        metrics=NodeMetrics(),
        limits=DEFAULT_LIMITS,
        max_result_bytes=64 * 1024 * 1024,
        hooks=hooks,
        artifacts=artifacts,
        heartbeat_interval=heartbeat_interval,
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


async def test_output_uri_without_store_is_the_nodes_fault(
    node: tuple[NodeServicer, node_pb2_grpc.NodeStub],
) -> None:
    _, stub = node
    req = request()
    req.output_uri = "file:///tmp/x.mp4"
    err = await call_error(stub, req)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "output_uri" in (err.details() or "") and "--artifacts" in (err.details() or "")


@pytest.mark.parametrize("field", ["output_uri", "image_uri"])
async def test_uri_outside_the_nodes_store_is_failed_precondition(tmp_path: Any, field: str) -> None:
    hooks = _Claims()
    servicer = make_servicer(hooks, artifacts=FileStore(tmp_path / "node-store"))
    servicer.set_engine(NoRunEngine())  # type: ignore[arg-type]
    server, stub, channel = await start(servicer)
    try:
        elsewhere = (tmp_path / "coordinator-store" / "x").as_uri()
        req = request(image=b"", image_uri=elsewhere) if field == "image_uri" else request()
        if field == "output_uri":
            req.output_uri = elsewhere
        err = await call_error(stub, req)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
        assert field in (err.details() or "") and "artifact store" in (err.details() or "")
        req.job_id, req.attempt = "job-3", 1  # dispatched: claimed first, then the same code recorded
        err = await call_error(stub, req)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert hooks.seen == [
            ("claim", "job-3", None),
            ("result", "job-3", grpc.StatusCode.FAILED_PRECONDITION),
        ]
    finally:
        await channel.close()
        await server.stop(0)
        servicer.close()


async def test_missing_input_image_in_the_store_is_the_callers_fault(tmp_path: Any) -> None:
    store = FileStore(tmp_path / "store")
    servicer = make_servicer(artifacts=store)
    servicer.set_engine(NoRunEngine())  # type: ignore[arg-type]
    server, stub, channel = await start(servicer)
    try:
        err = await call_error(stub, request(image=b"", image_uri=store.uri_for("jobs/none/input.png")))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "image_uri" in (err.details() or "")
    finally:
        await channel.close()
        await server.stop(0)
        servicer.close()


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
        req.job_id, req.attempt = "job-7", 1
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

    async def before_run(self, job_id: str, request: node_pb2.NodeGenerateRequest, stop: Stop) -> None:
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
    req.job_id, req.attempt = "job-9", 1
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


@pytest.mark.parametrize(
    ("job_id", "attempt", "says"),
    [("a/b", 1, "job_id 'a/b' must not contain '/'"), ("job-5", 0, "attempt (0) must be >= 1")],
)
async def test_bad_dispatch_fields_are_invalid_before_any_work(
    claiming: tuple[NodeServicer, node_pb2_grpc.NodeStub, _Claims], job_id: str, attempt: int, says: str
) -> None:
    servicer, stub, hooks = claiming
    req = request()
    req.job_id, req.attempt = job_id, attempt
    err = await call_error(stub, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert says in (err.details() or "")
    assert hooks.seen == [] and servicer.job is None


class _SlowClaim:
    """A claim that takes `seconds` and is then refused: the job holds the slot, sends nothing."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def before_run(self, job_id: str, request: node_pb2.NodeGenerateRequest, stop: Stop) -> None:
        await asyncio.sleep(self.seconds)
        raise JobRejected(grpc.StatusCode.FAILED_PRECONDITION, "stale dispatch")

    async def after_run(self, report: JobReport) -> None:
        return None


async def test_silent_job_sends_heartbeats_that_clients_ignore() -> None:
    servicer = make_servicer(_SlowClaim(0.5), heartbeat_interval=0.1)
    servicer.set_engine(NoRunEngine())  # type: ignore[arg-type]
    server, stub, channel = await start(servicer)
    events: list[common_pb2.GenerateEvent] = []
    try:
        req = request()
        req.job_id, req.attempt = "job-hb", 1
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for event in stub.Generate(req, timeout=10):
                events.append(event)
        assert ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        await channel.close()
        await server.stop(0)
        servicer.close()
    assert 2 <= len(events) <= 6  # about one per 0.1 s of silence over 0.5 s
    assert all(e.WhichOneof("kind") == "heartbeat" for e in events)
    assert all(e.heartbeat.stage == common_pb2.STAGE_ASSIGNED for e in events)
    elapsed = [e.heartbeat.elapsed_s for e in events]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0.09
    # The node client's consumer sees neither progress nor a result in a heartbeat.
    progress = common_pb2.GenerateEvent(progress=common_pb2.Progress(stage=common_pb2.STAGE_DENOISE, step=1))
    result = common_pb2.GenerateEvent(result=common_pb2.Result(frames=3))
    seen: list[common_pb2.Progress] = []
    got = GenerateCall(iter([events[0], progress, events[1], result])).wait(on_progress=seen.append)
    assert got.frames == 3 and [p.step for p in seen] == [1]


async def test_busy_refuses_a_dispatch_before_its_claim(
    claiming: tuple[NodeServicer, node_pb2_grpc.NodeStub, _Claims],
) -> None:
    servicer, stub, hooks = claiming
    servicer.job = _Job("job-42", request(), 0.0)
    req = request()
    req.job_id, req.attempt = "job-43", 1
    err = await call_error(stub, req)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert hooks.seen == []


@dataclass
class StepsUntilCancelled(NoRunEngine):
    """Reports denoise steps every 10 ms until its cancel event is set, like the real loop."""

    def run(self, spec: Any, profile: Any, on_event: Any, cancel: threading.Event) -> None:  # type: ignore[override]
        step = 0
        while not cancel.wait(0.01):
            step += 1
            on_event(ProgressEvent(common_pb2.STAGE_DENOISE, step=step, total_steps=1000))
        raise Cancelled(f"cancelled after step {step}")


class _StopAfterClaim:
    """Accepts the claim and keeps the job's stop(), as ClusterHooks does for its claim watch."""

    def __init__(self) -> None:
        self.stop: Stop | None = None
        self.reports: list[JobReport] = []

    async def before_run(self, job_id: str, request: node_pb2.NodeGenerateRequest, stop: Stop) -> None:
        self.stop = stop

    async def after_run(self, report: JobReport) -> None:
        self.reports.append(report)


async def test_stop_from_the_hooks_ends_the_running_job_as_unavailable() -> None:
    hooks = _StopAfterClaim()
    servicer = make_servicer(hooks)
    servicer.set_engine(StepsUntilCancelled())  # type: ignore[arg-type]
    server, stub, channel = await start(servicer)
    try:
        req = request()
        req.job_id, req.attempt = "job-s", 1
        call = stub.Generate(req, timeout=10)
        async for event in call:
            if event.HasField("progress") and event.progress.step >= 2:
                break
        assert hooks.stop is not None
        hooks.stop("claim /p/claims/job-s/1 deleted at revision 9")
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for _ in call:
                pass
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "claim /p/claims/job-s/1 deleted" in (ended.value.details() or "")
        assert "no result written" in (ended.value.details() or "")
        assert [r.code for r in hooks.reports] == [grpc.StatusCode.UNAVAILABLE]  # the hooks decide to skip it
        assert servicer.job is None
    finally:
        await channel.close()
        await server.stop(0)
        servicer.close()
