"""Who may do what on this coordinator: the caller's principal from its token (--tokens-file), the
ownership and admin checks the servicer and the Download shell ask for, and the per-client stream
limit; each refusal ends the call with its status code, is counted and logged (at a bounded rate,
never with a token).

Without a tokens file every caller is auth.OPEN and nothing is refused for who it is; the limits
(quotas.py) still apply, to all callers as one client.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, NoReturn, Protocol

import grpc

from i2v_common import errors, tokens
from i2v_common.ratelog import RateLimitedLog
from i2v_common.tokens import TokensFile
from i2v_contract import auth
from i2v_contract.ids import quote
from i2v_contract.reasons import ErrorDetails, Reason, details
from i2v_coordinator.quotas import Quotas, Refusal

log = logging.getLogger(__name__)


class AccessMetrics(Protocol):
    def access_refused(self, reason: str) -> None:
        """One call refused: unauthenticated, permission_denied or stream_limit."""


class _NoMetrics:
    def access_refused(self, reason: str) -> None:
        pass


async def exhausted(context: Any, refusal: Refusal) -> NoReturn:
    """RESOURCE_EXHAUSTED naming the limit, with RetryInfo."""
    info = ErrorDetails(refusal.reason.value, {}, (), refusal.retry_after_s)
    await errors.abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, refusal.message, info)


class Access:
    def __init__(
        self,
        tokens_file: TokensFile | None = None,
        quotas: Quotas | None = None,
        metrics: AccessMetrics | None = None,
    ) -> None:
        self.tokens = tokens_file
        self.quotas = quotas or Quotas()
        self._metrics = metrics or _NoMetrics()
        self._log = RateLimitedLog(log, 10.0, level=logging.INFO)

    @property
    def enabled(self) -> bool:
        return self.tokens is not None

    async def who(self, context: Any) -> auth.Principal:
        """The caller; UNAUTHENTICATED (the call ends) without a known token."""
        if self.tokens is None:
            return auth.OPEN
        found = self.tokens.authenticate(context.invocation_metadata() or ())
        if isinstance(found, str):
            self._metrics.access_refused("unauthenticated")
            await tokens.unauthenticated(context, found)
        return found

    async def job(
        self, who: auth.Principal, action: auth.Action, job_id: str, owner: str | None, context: Any
    ) -> None:
        """PERMISSION_DENIED (the call ends) unless `who` may `action` the job owned by `owner`
        (None: there is no such job); the same answer for a missing job and another client's."""
        decision = auth.job_access(who, action, owner)
        if decision.allowed:
            return
        self._metrics.access_refused("permission_denied")
        self._log.log(f"job-{who.name}", "refused: %s", decision.reason)
        await errors.abort(
            context,
            grpc.StatusCode.PERMISSION_DENIED,
            auth.denied_message(quote(job_id), who),
            details(Reason.NOT_PERMITTED),
        )

    async def fleet(self, who: auth.Principal, context: Any) -> None:
        """PERMISSION_DENIED (the call ends) unless `who` may see the fleet (admins)."""
        decision = auth.fleet_access(who)
        if decision.allowed:
            return
        self._metrics.access_refused("permission_denied")
        self._log.log(f"fleet-{who.name}", "refused: %s", decision.reason)
        await errors.abort(
            context,
            grpc.StatusCode.PERMISSION_DENIED,
            f"client {who.name} may not see the fleet (nodes, members, queue): that needs an admin "
            "token; `i2v jobs` lists your own jobs",
            details(Reason.NOT_PERMITTED),
        )

    @contextlib.asynccontextmanager
    async def stream(self, who: auth.Principal, context: Any) -> AsyncIterator[None]:
        """One of `who`'s streams, counted while open; RESOURCE_EXHAUSTED at the limit."""
        refusal = self.quotas.open_stream(who)
        if refusal is not None:
            self._metrics.access_refused("stream_limit")
            self._log.log(f"streams-{who.name}", "refused a stream: %s", refusal.message)
            await exhausted(context, refusal)
        try:
            yield
        finally:
            self.quotas.close_stream(who)
