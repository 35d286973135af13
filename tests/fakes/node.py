"""Node-side doubles: a membership world on MemoryKV with a manual clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from i2v_contract.keys import Keys, NodeRecord
from i2v_contract.wire import common_pb2
from i2v_node.membership import Membership, NodeInfo
from i2v_node.publishing import NodeState, PublishPolicy
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV

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
