from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from i2v_common.rpc import node_pb2_grpc
from i2v_node.servicer import NodeServicer
from tests.fakes.node import Claims, NoRunEngine, Served, World, make_servicer


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World()
    yield w
    await w.close()


@pytest.fixture
async def node() -> AsyncIterator[tuple[NodeServicer, node_pb2_grpc.NodeStub]]:
    """A standalone servicer with a model that must never run."""
    servicer = make_servicer()
    servicer.set_engine(NoRunEngine())  # type: ignore[arg-type]
    served = await Served.start(servicer)
    yield servicer, served.stub
    await served.stop()


@pytest.fixture
async def claiming() -> AsyncIterator[tuple[NodeServicer, node_pb2_grpc.NodeStub, Claims]]:
    """A servicer whose hooks accept every claim and record the seam."""
    hooks = Claims()
    servicer = make_servicer(hooks)
    servicer.set_engine(NoRunEngine())  # type: ignore[arg-type]
    served = await Served.start(servicer)
    yield servicer, served.stub, hooks
    await served.stop()
