"""Leadership terms: the epoch held, fixed for the term, and the scope of the work done in it.

The election shell starts a term when this coordinator is elected and ends it when it steps down, the
shape of client-go's OnStartedLeading(ctx): whoever works for the leader takes the term, writes under
`term.epoch` (the fence), and runs its work with `term.spawn`, which is cancelled the moment the term
ends. Nothing keeps an epoch of its own: a term never changes its epoch, and a new epoch is a new term.
`valid()` also re-checks the lease's validity window, so work stops when the lease could not be
renewed in time, before the election loop has noticed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def _always() -> bool:
    return True


class Term:
    def __init__(
        self, epoch: int, lease_valid: Callable[[], bool] = _always, *, took_over: bool = False
    ) -> None:
        self.epoch = epoch
        self.took_over = took_over  # won after another coordinator led (a failover)
        self.ended = asyncio.Event()
        self._lease_valid = lease_valid
        self._tasks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"Term(epoch={self.epoch}, {'ended' if self.ended.is_set() else 'running'})"

    def valid(self) -> bool:
        """True while the term lasts and the lease is inside its validity window (checked on each call)."""
        return not self.ended.is_set() and self._lease_valid()

    def spawn(self, work: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """Run `work` in this term: it is cancelled when the term ends (at once if it has ended)."""
        task = asyncio.create_task(work, name=name)
        if self.ended.is_set():
            task.cancel()
        else:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return task

    def end(self) -> None:
        """End the term: `ended` is set and every task spawned in it is cancelled."""
        if self.ended.is_set():
            return
        self.ended.set()
        for task in list(self._tasks):
            task.cancel()

    async def stopped(self) -> None:
        """Resolves once the term has ended and every task spawned in it has finished."""
        await self.ended.wait()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Succession:
    """The terms one coordinator leads, one after another: the current one, a hook at each start, and
    an iterator for a loop that serves one term at a time."""

    def __init__(self) -> None:
        self._term: Term | None = None
        self._hooks: list[Callable[[Term], object]] = []
        self._next = asyncio.Event()

    @property
    def current(self) -> Term | None:
        """The term started last and not ended yet (its lease may still have lapsed: see valid())."""
        return self._term

    def on_started_leading(self, hook: Callable[[Term], object]) -> None:
        """hook(term) as each term starts, in order. Quick and synchronous: work that lasts goes into
        term.spawn, so the end of the term cancels it."""
        self._hooks.append(hook)

    def start(self, term: Term) -> None:
        self.end()
        self._term = term
        for hook in self._hooks:
            try:
                hook(term)
            except Exception:
                log.exception("start-of-term hook failed (epoch %d)", term.epoch)
        self._next.set()
        self._next = asyncio.Event()

    def end(self) -> Term | None:
        """End the current term, if any; returns it."""
        term, self._term = self._term, None
        if term is not None:
            term.end()
        return term

    async def terms(self) -> AsyncIterator[Term]:
        """Every term from now on, as it starts; one that ended or lapsed before it was taken is skipped."""
        last: Term | None = None
        while True:
            started = self._next
            term = self._term
            if term is not None and term is not last and term.valid():
                last = term
                yield term
            else:
                await started.wait()


class TermOver(Exception):
    """The work's term is over (or its fence failed): stop, and start again only in a new term."""


async def serve_terms(
    terms: AsyncIterator[Term],
    lead: Callable[[Term], Coroutine[Any, Any, None]],
    after: Callable[[Term], Awaitable[None]],
    *,
    name: str,
    retry_s: float,
) -> None:
    """For each term, one at a time: run `lead(term)` in the term's scope (the end of the term cancels
    it at once) and `after(term)` once it stops; after an error (TermOver aside) it starts again,
    `retry_s` later, while the term lasts. Until cancelled."""
    async for term in terms:
        while term.valid():
            task = term.spawn(lead(term), f"{name}-epoch-{term.epoch}")
            try:
                await asyncio.wait([task])
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await after(term)
            if task.cancelled():
                log.warning("%s in epoch %d stopped at once: the term ended", name, term.epoch)
                continue
            error = task.exception()
            if isinstance(error, TermOver):
                log.warning("%s in epoch %d stopped: %s", name, term.epoch, error)
            elif error is not None:
                log.error("%s in epoch %d ended: %s; resuming if still leading", name, term.epoch, error)
                await asyncio.sleep(retry_s)  # no hot loop on a persistent error
