"""Leadership terms: a fixed epoch, validity that re-checks the lease, work cancelled with the term;
the succession of terms with start-of-term hooks and an iterator."""

from __future__ import annotations

import asyncio

import pytest

from i2v_coordinator.term import Succession, Term


class Lease:
    def __init__(self) -> None:
        self.valid = True

    def __call__(self) -> bool:
        return self.valid


@pytest.mark.parametrize(
    ("lease_valid", "ended", "valid"),
    [
        pytest.param(True, False, True, id="running, lease valid"),
        pytest.param(False, False, False, id="lease lapsed: invalid before the term ends"),
        pytest.param(True, True, False, id="ended"),
    ],
)
def test_valid_needs_a_running_term_and_a_valid_lease(lease_valid: bool, ended: bool, valid: bool) -> None:
    lease = Lease()
    lease.valid = lease_valid
    term = Term(7, lease)
    if ended:
        term.end()
    assert term.valid() is valid and term.epoch == 7


async def test_work_spawned_in_a_term_is_cancelled_when_it_ends_and_stopped_waits_for_it() -> None:
    term = Term(3)
    finished: list[str] = []

    async def work(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)
            finished.append(name)

    tasks = [term.spawn(work(n), n) for n in ("a", "b")]
    done = term.spawn(asyncio.sleep(0), "quick")
    await asyncio.sleep(0.01)
    assert done.done() and not any(t.done() for t in tasks)
    term.end()
    term.end()  # ending twice changes nothing
    await asyncio.wait_for(term.stopped(), 1)
    assert sorted(finished) == ["a", "b"] and all(t.cancelled() for t in tasks)
    late = term.spawn(work("late"), "late")
    await asyncio.sleep(0)
    assert late.cancelled() and "late" not in finished


async def test_a_succession_runs_its_hooks_at_each_start_and_ends_the_term_before() -> None:
    succession = Succession()
    started: list[int] = []
    succession.on_started_leading(lambda term: started.append(term.epoch))

    def broken(term: Term) -> None:
        raise RuntimeError("a broken hook does not stop the others")

    succession.on_started_leading(broken)
    first, second = Term(1), Term(2)
    succession.start(first)
    assert succession.current is first and started == [1]
    succession.start(second)
    assert first.ended.is_set() and succession.current is second and started == [1, 2]
    assert succession.end() is second and second.ended.is_set() and succession.current is None
    assert succession.end() is None


async def test_terms_yields_each_live_term_once_and_skips_lapsed_ones() -> None:
    succession = Succession()
    seen: list[int] = []

    async def follow() -> None:
        async for term in succession.terms():
            seen.append(term.epoch)

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0)
    lease = Lease()
    succession.start(Term(1, lease))
    await asyncio.sleep(0)
    assert seen == [1]
    await asyncio.sleep(0)
    assert seen == [1]  # the same term is not handed out twice
    lapsed = Lease()
    lapsed.valid = False
    succession.start(Term(2, lapsed))
    await asyncio.sleep(0)
    succession.start(Term(3))
    await asyncio.sleep(0)
    assert seen == [1, 3]
    follower.cancel()
