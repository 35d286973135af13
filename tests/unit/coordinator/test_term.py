"""Leadership terms: a fixed epoch, validity that re-checks the lease, work cancelled with the term;
the succession of terms with start-of-term hooks and an iterator; serving one term at a time."""

from __future__ import annotations

import asyncio

import pytest

from i2v_coordinator.term import Succession, Term, TermOver, serve_terms


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


@pytest.mark.parametrize(
    ("error", "runs", "after"),
    [
        pytest.param(RuntimeError("a surprise"), 1, 1, id="an error: started again only after retry_s"),
        pytest.param(TermOver("fenced"), 3, 2, id="term over: started again at once while still valid"),
    ],
)
async def test_serve_terms_runs_each_term_s_work_in_its_scope(
    error: Exception, runs: int, after: int
) -> None:
    succession = Succession()
    ran: list[int] = []
    cleaned: list[int] = []

    async def lead(term: Term) -> None:
        ran.append(term.epoch)
        if len(ran) == 3:
            await asyncio.Event().wait()  # the third run lasts until its term ends
        raise error

    async def cleanup(term: Term) -> None:
        cleaned.append(term.epoch)

    serving = asyncio.create_task(serve_terms(succession.terms(), lead, cleanup, name="t", retry_s=60.0))
    await asyncio.sleep(0)
    succession.start(Term(4))
    for _ in range(20):
        await asyncio.sleep(0)
    assert ran == [4] * runs and cleaned == [4] * after
    serving.cancel()
    await asyncio.gather(serving, return_exceptions=True)


async def test_serve_terms_cancels_the_work_when_its_term_ends_and_serves_the_next() -> None:
    succession = Succession()
    ran: list[int] = []
    cleaned: list[int] = []

    async def lead(term: Term) -> None:
        ran.append(term.epoch)
        await asyncio.Event().wait()

    async def cleanup(term: Term) -> None:
        cleaned.append(term.epoch)

    serving = asyncio.create_task(serve_terms(succession.terms(), lead, cleanup, name="t", retry_s=60.0))
    await asyncio.sleep(0)
    succession.start(Term(4))
    await asyncio.sleep(0.01)
    first = succession.current
    succession.start(Term(5))  # ends term 4 at once
    await asyncio.sleep(0.01)
    assert first is not None and first.ended.is_set()
    assert ran == [4, 5] and cleaned == [4]
    serving.cancel()
    await asyncio.gather(serving, return_exceptions=True)
    assert cleaned == [4, 5]  # cancelled from outside: the work still stops and is cleaned up
