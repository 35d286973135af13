"""etcd authentication for EtcdKV: the token etcd issues for this process's user, and what etcd's
refusals mean.

The token is fetched on first use (Auth.Authenticate, on the endpoint the call is using) and sent as
the `token` metadata of every call, watches and lease keepalives included. etcd forgets a token
after --auth-token-ttl seconds without use (5 min by default for simple tokens) and when its users
or roles change; a call answered so drops the token, and the adapter authenticates again once.
Concurrent calls share one Authenticate: etcd checks each password with bcrypt, which costs it
tens of milliseconds of CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from aetcd import rpc

from i2v_contract.kv import KVDenied, KVUnavailable

log = logging.getLogger(__name__)

# etcd's answers, matched by text: the codes alone do not tell a stale token from a bad request.
_STALE = ("invalid auth token", "auth store is old", "user name is empty")
_WRONG_PASSWORD = "authentication failed"
_NOT_ENABLED = "authentication is not enabled"
_DENIED = "permission denied"


class StaleToken(Exception):
    """etcd no longer accepts the token (expired, or users/roles changed): authenticate again."""


class Authenticator:
    """The token for `user`; with no user, etcd sees the client certificate's name (or nothing)."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self._password = password
        self._token: str | None = None if user else ""
        self._pending: asyncio.Future[str] | None = None
        self._renewals = 0

    def __repr__(self) -> str:
        return f"Authenticator(user={self.user!r})"

    def metadata(self, token: str) -> tuple[tuple[str, str], ...]:
        return (("token", token),) if token else ()

    async def token(self, stub: Any, budget_s: float) -> str:
        """The current token, authenticating through `stub` (an AuthStub) when there is none."""
        if self._token is not None:
            return self._token
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self._authenticate(stub, budget_s))
            self._pending.add_done_callback(_retrieve)
        return await asyncio.wait_for(asyncio.shield(self._pending), budget_s)

    def drop(self, token: str) -> None:
        """Forget `token` unless another call has already replaced it."""
        if self.user and self._token == token:
            self._token = None

    async def _authenticate(self, stub: Any, budget_s: float) -> str:
        request = rpc.AuthenticateRequest(name=self.user, password=self._password)
        try:
            response = await stub.Authenticate(request, timeout=budget_s)
        except grpc.aio.AioRpcError as exc:
            details = exc.details() or ""
            if _WRONG_PASSWORD in details:
                raise KVDenied(
                    f"etcd refused user {self.user!r}: wrong user name or password "
                    "(check --etcd-user and the file of --etcd-password-file)"
                ) from None
            if _NOT_ENABLED not in details:
                raise
            log.warning("etcd has authentication disabled; calling it as user %r without a token", self.user)
            self._token = ""
            return ""
        # The first time for the startup log; renewals (every idle TTL) only when debugging.
        level = logging.DEBUG if self._renewals else logging.INFO
        log.log(level, "authenticated to etcd as user %r", self.user)
        self._renewals += 1
        self._token = str(response.token)
        return self._token

    def refusal(self, what: str, code: grpc.StatusCode, details: str) -> Exception | None:
        """StaleToken, KVDenied, or None when the error is not about credentials or permissions."""
        if any(marker in details for marker in _STALE):
            if "user name is empty" in details and not self.user:
                return KVDenied(
                    f"{what}: etcd requires authentication: give --etcd-user and --etcd-password-file, or "
                    "a client certificate (--etcd-cert/--etcd-key) whose common name is an etcd user"
                )
            return StaleToken(details)
        if code == grpc.StatusCode.PERMISSION_DENIED or _DENIED in details:
            who = f"user {self.user!r}" if self.user else "the client certificate's user"
            return KVDenied(
                f"{what}: etcd denied {who} access: grant its role read-write on this "
                "cluster's key prefix (docs/operations.md, etcd)"
            )
        return None

    def watch_refusal(self, what: str, address: str, reason: str) -> Exception:
        """Why etcd cancelled a watch as it was created: StaleToken, KVDenied or KVUnavailable."""
        refusal = self.refusal(what, grpc.StatusCode.OK, reason)
        return refusal or KVUnavailable(f"{what}: {address} cancelled the watch as it was created: {reason}")


def _retrieve(future: asyncio.Future[str]) -> None:
    """Mark a failed shared authentication as seen: every waiter got the error already."""
    with contextlib.suppress(asyncio.CancelledError):
        future.exception()
