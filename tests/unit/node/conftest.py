from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.node import World


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World()
    yield w
    await w.close()
