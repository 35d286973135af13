"""Channels follow the certificate files (i2v_common.channels): the factory notices a change, the
pool rebuilds a channel and closes the old one once its calls have ended."""

from __future__ import annotations

import asyncio
from pathlib import Path

from i2v_common.channels import ChannelFactory, ChannelPool
from i2v_common.tls import ClientTls
from tests.pki import TestCA


def test_the_factory_sees_a_change_of_its_files(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    issued = ca.issue("i2v-coordinator")
    now = [0.0]
    factory = ChannelFactory(
        ClientTls(ca.cert, issued.cert, issued.key), check_interval_s=1.0, clock=lambda: now[0]
    )
    assert factory.generation == 0
    ca.issue("i2v-coordinator")
    assert factory.generation == 0  # not looked at again within the interval
    now[0] = 1.0
    assert factory.generation == 1
    now[0] = 2.0
    assert factory.generation == 1


def test_a_plaintext_factory_never_changes() -> None:
    factory = ChannelFactory(None, check_interval_s=0)
    assert not factory.secure
    assert factory.generation == 0


class _FakeChannel:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1


class _FakeFactory:
    def __init__(self) -> None:
        self.generation = 0
        self.made: list[_FakeChannel] = []

    def aio(self, target: str, options: object = ()) -> _FakeChannel:
        self.made.append(_FakeChannel(target))
        return self.made[-1]


async def _settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_rotation_rebuilds_the_channel_and_closes_the_old_once_its_calls_end() -> None:
    factory = _FakeFactory()
    pool = ChannelPool(factory, ())  # type: ignore[arg-type]
    async with pool.hold("n1") as first:
        factory.generation = 1
        async with pool.hold("n1") as second:
            assert second is not first
        await _settle()
        assert first.closed == 0  # a call is still on it
    await _settle()
    assert (first.closed, second.closed) == (1, 0)
    await pool.close()
    assert second.closed == 1


async def test_reset_closes_at_once_and_the_next_call_opens_a_new_channel() -> None:
    factory = _FakeFactory()
    pool = ChannelPool(factory, ())  # type: ignore[arg-type]
    async with pool.hold("n1") as first:
        await pool.reset("n1")
        assert first.closed == 1
    await _settle()
    assert first.closed == 1  # not twice
    async with pool.hold("n1") as second:
        assert second is not first


async def test_the_least_recently_used_channel_goes_first() -> None:
    factory = _FakeFactory()
    pool = ChannelPool(factory, (), max_open=2)  # type: ignore[arg-type]
    for addr in ("a", "b", "a", "c"):
        async with pool.hold(addr):
            pass
    await _settle()
    assert {ch.name: ch.closed for ch in factory.made} == {"a": 0, "b": 1, "c": 0}
