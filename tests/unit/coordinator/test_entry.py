"""The leader-only health name follows the terms: SERVING from each start to its end, one term at a
time, NOT_SERVING once the loop stops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from i2v_coordinator.entry import LEADER_HEALTH, publish_leader_health
from i2v_coordinator.term import Succession, Term


async def settled(predicate: Callable[[], bool]) -> None:
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("not settled")


async def test_leader_health_is_serving_exactly_while_a_term_lasts() -> None:
    succession = Succession()
    seen: list[tuple[str, bool]] = []

    async def set_status(name: str, serving: bool) -> None:
        seen.append((name, serving))

    task = asyncio.create_task(publish_leader_health(succession.terms(), set_status))
    await settled(lambda: seen == [(LEADER_HEALTH, False)])
    succession.start(Term(5))
    await settled(lambda: seen[-1] == (LEADER_HEALTH, True))
    succession.end()
    await settled(lambda: seen[-1] == (LEADER_HEALTH, False))
    succession.start(Term(6))
    succession.start(Term(7))  # 6 ended before it was taken: skipped
    await settled(lambda: seen[-1] == (LEADER_HEALTH, True))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [s for _, s in seen] == [False, True, False, True, False]
    assert LEADER_HEALTH == "i2v.v1.Coordinator.Leader"
