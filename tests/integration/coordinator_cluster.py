"""An in-process cluster for integration tests and benchmarks: coordinators and tiny nodes on real etcd.

Coordinators are assembled from the real parts (EtcdKV, Leadership, NodeRegistry, JobStore,
Dispatcher, CoordinatorServicer behind the front door, entry.py, on a loopback gRPC port); nodes are
the real node server with the tiny pipeline, registered through the real Membership and claiming
through ClusterHooks. All of it runs on the caller's event loop; synchronous clients must be called
through asyncio.to_thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry

from i2v_common import keepalive
from i2v_common.artifacts import ArtifactStore, open_store
from i2v_common.etcd_kv import EtcdKV
from i2v_common.kv_metrics import EtcdMetrics
from i2v_contract.keys import Keys
from i2v_contract.wire import common_pb2
from i2v_coordinator.access import Access
from i2v_coordinator.dispatcher import DispatchConfig, Dispatcher
from i2v_coordinator.election import ElectionTimings
from i2v_coordinator.entry import FrontDoor, install
from i2v_coordinator.etcdhealth import EtcdHealth
from i2v_coordinator.jobstore import JobStore
from i2v_coordinator.leadership import Leadership
from i2v_coordinator.nodecalls import GrpcNodeCalls
from i2v_coordinator.progress import ProgressHub
from i2v_coordinator.registry import NodeRegistry
from i2v_coordinator.servicer import CoordinatorServicer
from i2v_node.claims import ClusterHooks
from i2v_node.config import NodeConfig
from i2v_node.membership import Membership, NodeInfo
from i2v_node.publishing import NodeState
from i2v_node.server import NodeServer
from tests.fakes.coordinator import CountingMetrics

MIB = 1024 * 1024


@dataclass
class InProcessCoordinator:
    endpoints: list[str]
    keys: Keys
    member_id: str
    artifacts: ArtifactStore
    config: DispatchConfig = field(default_factory=DispatchConfig)
    timings: ElectionTimings = field(default_factory=ElectionTimings)
    addr: str = ""
    access: Access | None = None  # tokens and per-client limits (none: no authentication)
    node_metadata: Callable[[], Sequence[tuple[str, str]]] | None = None  # on calls to nodes

    async def start(self) -> InProcessCoordinator:
        self.etcd_health = EtcdHealth(self.endpoints)
        self.kv = EtcdMetrics(CollectorRegistry()).wrap(
            EtcdKV(self.endpoints), observe=self.etcd_health.observe
        )
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", 80 * MIB),
                ("grpc.max_receive_message_length", 32 * MIB),
                *keepalive.SERVER_OPTIONS,
            ]
        )
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.addr = f"127.0.0.1:{port}"
        self.leadership = Leadership(self.kv, self.keys, self.member_id, self.addr, self.timings)
        self.registry = NodeRegistry(self.kv, self.keys)
        self.store = JobStore(self.kv, self.keys)
        self.hub = ProgressHub()
        self.calls = GrpcNodeCalls(metadata=self.node_metadata)
        self.dispatcher = Dispatcher(
            self.store,
            self.leadership,
            self.registry,
            self.hub,
            self.calls,
            self.artifacts,
            config=self.config,
            metrics=CountingMetrics(),
        )
        self.servicer = CoordinatorServicer(
            self.leadership,
            self.registry,
            self.store,
            self.dispatcher,
            self.hub,
            self.artifacts,
            etcd=self.etcd_health,
            access=self.access,
        )
        self.door = FrontDoor(self.leadership, self.dispatcher, self.etcd_health, self.access)
        install(self.server, self.servicer, self.door)
        await self.server.start()
        await self.registry.start()
        self._dispatch = asyncio.create_task(self.dispatcher.run())
        await self.leadership.start()
        return self

    async def wait_leading(self, within_s: float = 10.0) -> int:
        for _ in range(int(within_s / 0.02)):
            epoch = self.leadership.epoch
            if epoch is not None and self.dispatcher.epoch == epoch:
                return epoch
            await asyncio.sleep(0.02)
        raise AssertionError(f"coordinator {self.member_id} did not lead within {within_s} s")

    async def stop(self, *, resign: bool = True) -> None:
        if resign:
            with contextlib.suppress(Exception):
                await self.leadership.resign()
        self._dispatch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._dispatch
        await self.server.stop(0.5)
        await self.door.forwarder.close()
        await self.registry.stop()
        await self.calls.close()
        await self.kv.close()


@dataclass
class InProcessNode:
    endpoints: list[str]
    keys: Keys
    node_id: str
    artifacts: ArtifactStore
    cache_dir: Path
    tokens_file: str = ""

    async def start(self) -> InProcessNode:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.kv = EtcdKV(self.endpoints)
        config = NodeConfig(
            model="tiny",
            listen="127.0.0.1:0",
            metrics_listen=None,
            device="cpu",
            dtype=None,
            cache_dir=self.cache_dir,
            max_vram_bytes=None,
            simulate_free_vram_bytes=None,
            simulate_free_vram_file=None,
            drain_grace_seconds=5.0,
            node_id=self.node_id,
            fault_inject_oom=None,
            log_level="INFO",
            offline=True,
            tokens_file=self.tokens_file,
        )
        self.server = NodeServer(config, artifacts=self.artifacts)
        await self.server.start()
        await self.server.load()
        info = NodeInfo(addr=self.server.address, gpu="", models=("tiny",), version="test")
        self.membership = Membership(self.kv, self.keys, self.node_id, info)
        self.server.servicer.hooks = ClusterHooks(self.membership, self.artifacts)
        self.server.servicer.add_listener(lambda: self.membership.publish(self.state()))
        await self.membership.start(self.state())
        return self

    def state(self) -> NodeState:
        servicer = self.server.servicer
        reading = servicer.observe_memory()
        return NodeState(
            busy=servicer.job is not None,
            free_bytes=reading.free_bytes or 0,
            total_bytes=reading.total_bytes or 0,
            tier=common_pb2.TIER_CPU,
            arch=servicer.engine.arch if servicer.engine is not None else None,
        )

    async def stop(self) -> None:
        await self.membership.stop()
        await self.server.stop()
        await self.kv.close()


def artifact_store(path: Path) -> ArtifactStore:
    return open_store(str(path))
