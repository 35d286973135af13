"""Bearer tokens in a server: the tokens file (--tokens-file), reloaded when it changes, and the
caller's principal from a call's `authorization` metadata; and a single-token file a process
presents to others (the coordinator's --dispatch-token-file, a client's --token-file).

The tokens file is looked at on every authentication: one stat, and a re-read only when its size,
modification time or inode changed (a Kubernetes Secret update swaps a symlink: a new inode). So
removing a line refuses that token from the next call on, and adding one accepts it, without a
restart. At start a missing file or any bad line is an error; later, a bad line is skipped and
logged by its number (the other lines stay in force, so removing a leaked token while mistyping
another still removes it), and a file that cannot be read accepts no token until it can.
Tokens never reach a log line or an error message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import grpc

from i2v_common import errors
from i2v_common.ratelog import RateLimitedLog
from i2v_contract import auth
from i2v_contract.reasons import Reason, details

log = logging.getLogger(__name__)

Metadata = tuple[tuple[str, str], ...]


class TokensError(Exception):
    """The tokens file cannot be used at start; the message says which line or why."""


def _signature(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino


class TokensFile:
    """The tokens file at `path`, parsed; `table()` re-reads it when it changed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._limiter = RateLimitedLog(log, 30.0)
        try:
            self._signature = _signature(self.path)
            table = auth.parse_tokens(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeError) as exc:
            raise TokensError(f"cannot read the tokens file {self.path}: {exc}") from None
        if table.problems:
            raise TokensError(f"tokens file {self.path}: {'; '.join(table.problems)}")
        if not table.principals:
            raise TokensError(
                f"tokens file {self.path} holds no tokens; add lines made by `i2v token new --name NAME`"
            )
        self._table = table
        log.info("tokens file %s: %s", self.path, _summary(table))

    def table(self) -> auth.TokenTable:
        try:
            signature = _signature(self.path)
        except OSError as exc:
            return self._unreadable(exc)
        if signature != self._signature:
            self._reload(signature)
        return self._table

    def _reload(self, signature: tuple[int, int, int]) -> None:
        try:
            table = auth.parse_tokens(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeError) as exc:
            self._unreadable(exc)
            return
        self._signature, self._table = signature, table
        log.info("tokens file %s changed: %s", self.path, _summary(table))
        for problem in table.problems:
            log.warning("tokens file %s: %s (skipped)", self.path, problem)

    def _unreadable(self, exc: Exception) -> auth.TokenTable:
        self._signature, self._table = (-1, -1, -1), auth.TokenTable({})
        self._limiter.log(
            "unreadable", "tokens file %s unreadable (%s): every token is refused", self.path, exc
        )
        return self._table

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]]) -> auth.Principal | str:
        """The caller's principal, or why it has none (a message for the caller)."""
        values = [str(v) for k, v in metadata if k == auth.AUTHORIZATION]
        token, problem = auth.bearer_token(values)
        if problem:
            return problem
        principal = auth.match(token, self.table())
        if principal is None:
            return f"the token is not known here (wrong, revoked or rotated out); {auth.HOW_TO_PASS}"
        return principal


def _summary(table: auth.TokenTable) -> str:
    names = {p.name for p in table.principals.values()}
    admins = {p.name for p in table.principals.values() if p.admin}
    return f"{len(table.principals)} tokens for {len(names)} clients ({len(admins)} admins)"


_refusals = RateLimitedLog(log, 10.0, level=logging.INFO)


async def unauthenticated(context: Any, why: str) -> NoReturn:
    """End the call UNAUTHENTICATED with `why` (which names no token)."""
    _refusals.log("unauthenticated", "refused an unauthenticated call from %s: %s", context.peer(), why)
    await errors.abort(context, grpc.StatusCode.UNAUTHENTICATED, why, details(Reason.UNAUTHENTICATED))


async def principal(tokens: TokensFile | None, context: Any) -> auth.Principal:
    """Who is calling: auth.OPEN without a tokens file; UNAUTHENTICATED (the call ends) without a
    known token."""
    if tokens is None:
        return auth.OPEN
    found = tokens.authenticate(context.invocation_metadata() or ())
    if isinstance(found, str):
        await unauthenticated(context, found)
    return found


def bearer(token: str) -> Metadata:
    """The metadata that presents `token`."""
    return ((auth.AUTHORIZATION, f"Bearer {token}"),) if token else ()


def read_token(path: str | Path) -> str:
    """The token in a single-token file (surrounding whitespace dropped); ValueError if none."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"cannot read the token file {path}: {exc}") from None
    if not token:
        raise ValueError(f"the token file {path} is empty; put the token (from `i2v token new`) in it")
    _, problem = auth.bearer_token([f"Bearer {token}"])
    if problem:
        raise ValueError(f"the token file {path} holds no usable token: {problem}")
    return token


class TokenSource:
    """A single-token file presented on calls, re-read when it changes (so it can be rotated)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._signature = _signature(self.path)
        except OSError as exc:
            raise ValueError(f"cannot read the token file {path}: {exc}") from None
        self._metadata = bearer(read_token(self.path))

    def metadata(self) -> Metadata:
        try:
            signature = _signature(self.path)
            if signature != self._signature:
                self._metadata, self._signature = bearer(read_token(self.path)), signature
        except (OSError, ValueError) as exc:
            log.warning("token file %s: %s; presenting the last token read", self.path, exc)
        return self._metadata
