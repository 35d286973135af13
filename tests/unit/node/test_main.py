"""`i2v-node` serve(): the parts come up in order and one exit stack takes them down in reverse
(drain, leave the cluster, stop gRPC, close etcd), on every way out."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from i2v_node import main
from i2v_node.config import NodeConfig, parse_args
from i2v_node.membership import DuplicateNode
from i2v_node.server import StartupError


@dataclass
class Plan:
    """How the fakes behave, and what they saw, in order."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    load_fails: bool = False
    join: str = "ok"  # "ok", "refused" or "hangs"
    events: list[str] = field(default_factory=list)


def fakes(plan: Plan) -> main.Parts:
    class Server:
        def __init__(self, config: NodeConfig, *, artifacts: Any) -> None:
            self.servicer, self.address = object(), "127.0.0.1:1"

        async def start(self) -> None:
            plan.events.append("start")

        async def load(self) -> None:
            plan.events.append("load")
            if plan.load_fails:
                raise StartupError("cannot load model 'tiny': broken")
            if plan.join != "hangs":
                plan.stop.set()  # SIGTERM once serving

        async def drain(self) -> None:
            plan.events.append("drain")

        async def close(self) -> None:
            plan.events.append("close")

    class Kv:
        def __init__(self, endpoints: tuple[str, ...], security: object = None) -> None:
            pass

        async def close(self) -> None:
            plan.events.append("etcd closed")

    class Cluster:
        async def leave(self) -> None:
            plan.events.append("leave")

    async def join_cluster(*args: object, **kwargs: object) -> Cluster:
        plan.events.append("join")
        if plan.join == "refused":
            raise DuplicateNode("node id 'n1' is already registered")
        if plan.join == "hangs":
            asyncio.get_running_loop().call_later(0.01, plan.stop.set)
            await asyncio.Event().wait()
        return Cluster()

    return main.Parts(server=Server, etcd=Kv, join=join_cluster)


async def run(config: NodeConfig, plan: Plan) -> int:
    async with main.contextlib.AsyncExitStack() as cleanup:
        return await main._run(config, plan.stop, cleanup, fakes(plan))


def cluster_args(tmp_path: Path) -> list[str]:
    return ["--model", "tiny", "--etcd", "127.0.0.1:2379", "--artifacts", str(tmp_path / "store")]


@pytest.mark.parametrize(
    ("cluster", "plan", "code", "shutdown"),
    [
        pytest.param(False, Plan(), 0, ["drain", "close"], id="standalone"),
        pytest.param(True, Plan(), 0, ["drain", "leave", "close", "etcd closed"], id="cluster"),
        pytest.param(False, Plan(load_fails=True), 1, ["drain", "close"], id="model-cannot-load"),
        pytest.param(True, Plan(join="refused"), 2, ["close", "etcd closed"], id="cluster-refuses"),
        pytest.param(True, Plan(join="hangs"), 0, ["close", "etcd closed"], id="stopped-while-joining"),
    ],
)
async def test_shutdown_order(
    tmp_path: Path, cluster: bool, plan: Plan, code: int, shutdown: list[str]
) -> None:
    config = parse_args(cluster_args(tmp_path) if cluster else ["--model", "tiny"])
    assert await run(config, plan) == code
    assert plan.events[0] == "start"
    assert plan.events[-len(shutdown) :] == shutdown
    assert set(plan.events) - set(shutdown) <= {"start", "load", "join"}


async def test_an_unusable_store_exits_2_before_anything_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plan = Plan()
    (tmp_path / "store").write_text("a file, not a directory")
    assert await main.serve(parse_args(cluster_args(tmp_path)), fakes(plan)) == 2
    assert plan.events == []
    assert "cannot open artifact store" in caplog.text
