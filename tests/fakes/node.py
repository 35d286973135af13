"""Node-side doubles: a membership world on MemoryKV with a manual clock; a servicer on real
in-process gRPC with engine stand-ins that never touch a pipeline, and hooks that record the seam."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from i2v_common.artifacts import FileStore
from i2v_common.rpc import node_pb2_grpc
from i2v_contract.keys import Keys, NodeRecord
from i2v_contract.limits import DEFAULT_LIMITS
from i2v_contract.memory import I2VGEN_XL
from i2v_contract.profiles import usable_profiles
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node.gpu import MemoryMonitor, SimulatedProbe
from i2v_node.hooks import JobHooks, JobReport, Stop
from i2v_node.job import Cancelled, ProgressEvent
from i2v_node.membership import Membership, NodeInfo
from i2v_node.metrics import NodeMetrics
from i2v_node.publishing import NodeState, PublishPolicy
from i2v_node.servicer import NodeServicer
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV
from tests.media import png

GIB = 1024**3
TTL = 10.0
IDLE = NodeState(busy=False, free_bytes=20 * GIB, total_bytes=24 * GIB, tier=common_pb2.TIER_16_24)
POLICY = PublishPolicy(min_interval_s=0.5, free_bytes_step=GIB)


async def never_wakes(seconds: float) -> None:
    await asyncio.Event().wait()  # tests drive keepalives through keeper.tick()


def node_info(addr: str = "10.0.0.1:50051") -> NodeInfo:
    return NodeInfo(addr=addr, gpu="NVIDIA RTX 4090", models=("tiny",), version="0.1.0")


@dataclass
class World:
    """Nodes registering on one MemoryKV under /t/, all on the same manual clock."""

    clock: ManualClock = field(default_factory=ManualClock)
    kv: MemoryKV = field(init=False)
    keys: Keys = field(default_factory=lambda: Keys("/t/"))
    members: list[Membership] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kv = MemoryKV(self.clock)

    def node(self, node_id: str = "n1", addr: str = "10.0.0.1:50051") -> Membership:
        m = Membership(
            self.kv,
            self.keys,
            node_id,
            node_info(addr),
            lease_ttl=TTL,
            policy=POLICY,
            clock=self.clock,
            sleep=never_wakes,
        )
        self.members.append(m)
        return m

    async def started(self, node_id: str = "n1", addr: str = "10.0.0.1:50051") -> Membership:
        m = self.node(node_id, addr)
        await m.start(IDLE)
        return m

    async def record(self, node_id: str = "n1") -> tuple[NodeRecord, int] | None:
        kv = await self.kv.get(self.keys.node(node_id))
        return None if kv is None else (NodeRecord.from_json(kv.value), kv.lease)

    def lapse(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.kv.expire()

    async def close(self) -> None:
        self.kv.available = True
        for m in self.members:
            await m.stop()


# --- a servicer without a pipeline ---------------------------------------------------------------


@dataclass
class NoRunEngine:
    """An engine stand-in that fails the test if `run` is ever called."""

    model_id: str = "tiny"
    device: str = "cpu"
    dtype_name: str = "float32"
    has_accelerator: bool = False
    load_seconds: float = 0.0
    arch: Any = I2VGEN_XL
    ladder: Any = field(default_factory=lambda: usable_profiles(False))

    def run(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("validation must refuse before the engine runs")


@dataclass
class StepsUntilCancelled(NoRunEngine):
    """Reports denoise steps every 10 ms until its cancel event is set, like the real loop."""

    def run(self, spec: Any, profile: Any, on_event: Any, cancel: threading.Event) -> None:  # type: ignore[override]
        step = 0
        while not cancel.wait(0.01):
            step += 1
            on_event(ProgressEvent(common_pb2.STAGE_DENOISE, step=step, total_steps=1000))
        raise Cancelled(f"cancelled after step {step}")


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


@dataclass
class Served:
    """A servicer on a real in-process gRPC server, and a stub that calls it."""

    servicer: NodeServicer
    server: grpc.aio.Server
    channel: grpc.aio.Channel
    stub: node_pb2_grpc.NodeStub

    @classmethod
    async def start(cls, servicer: NodeServicer) -> Served:
        server = grpc.aio.server()
        node_pb2_grpc.add_NodeServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        return cls(servicer, server, channel, node_pb2_grpc.NodeStub(channel))

    async def stop(self) -> None:
        await self.channel.close()
        await self.server.stop(0)
        self.servicer.close()


async def call_error(stub: node_pb2_grpc.NodeStub, req: node_pb2.NodeGenerateRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in stub.Generate(req, timeout=10):
            pass
    return exc.value


class Claims:
    """Accepts every claim; records what the seam saw, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, grpc.StatusCode | None]] = []

    async def before_run(self, job_id: str, request: node_pb2.NodeGenerateRequest, stop: Stop) -> None:
        self.seen.append(("claim", job_id, None))

    async def after_run(self, report: JobReport) -> None:
        self.seen.append(("result", report.job_id, report.code))
