"""The gateway's way into the cluster: one CoordinatorClient (its channels shared by every request),
the one place a request picks the client it calls through, the SDK's blocking calls run off the
event loop with their CallErrors turned into HTTP errors, and readiness from the coordinators'
health services (readiness.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import anyio.to_thread
import grpc

from i2v_client import CallError, ClientTls, CoordinatorClient, RetryPolicy, parse_targets
from i2v_gateway.errors import ApiError, Failure, from_failure
from i2v_gateway.leaders import Leaders
from i2v_gateway.readiness import Verdict, decide

log = logging.getLogger(__name__)

T = TypeVar("T")

# A request waits this long for a leader (an election takes a few seconds), then gets 503.
POLICY = RetryPolicy(reconnect_s=10.0, call_timeout_s=10.0)


def failure_of(err: CallError) -> Failure:
    return Failure(
        err.code.name, err.message, err.reason, err.field_violations, err.retry_after, err.metadata
    )


def api_error(err: CallError, renames: Mapping[str, str] | None = None) -> ApiError:
    error = from_failure(failure_of(err), renames)
    if error.status >= 500:
        log.info("coordinator call failed: %s %s", err.code.name, err.message)
    return error


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None without one."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "Authorization: send 'Bearer <token>'",
            type="authentication_error",
            code="invalid_authorization",
        )
    return token.strip()


class Cluster:
    """The coordinators, as this gateway reaches them."""

    def __init__(
        self, targets: str | Sequence[str], *, policy: RetryPolicy = POLICY, tls: ClientTls | None = None
    ) -> None:
        """`tls`: the coordinators' CA and, for coordinators that require one, the gateway's client
        certificate. The gateway presents no token of its own: each call carries its caller's."""
        self.shared = CoordinatorClient(targets, policy=policy, tls=tls)
        self.leaders = Leaders(parse_targets(targets, "--coordinators"), tls)
        self._verdict = ""

    def client_for(self, token: str | None) -> CoordinatorClient:
        """The client one request calls through: the caller's bearer token on the shared channels,
        so the coordinators check ownership against the caller, never against the gateway."""
        return self.shared if token is None else self.shared.with_token(token)

    async def call(self, fn: Callable[[], T], renames: Mapping[str, str] | None = None) -> T:
        """`fn()` (a blocking SDK call) in a worker thread; a CallError becomes its ApiError."""
        try:
            return await anyio.to_thread.run_sync(fn)
        except CallError as err:
            raise api_error(err, renames) from None
        except grpc.RpcError as err:  # a raw failure the SDK passed on
            raise ApiError(502, f"coordinator call failed: {err}", type="server_error") from None

    async def readiness(self, draining: bool) -> Verdict:
        """Ready when not draining and a coordinator's health says it leads (no token needed)."""
        answers = {} if draining else await anyio.to_thread.run_sync(self.leaders.ask, self.shared.targets)
        verdict = decide(draining, answers)
        if verdict.status != self._verdict:  # one line per change, not per probe
            self._verdict = verdict.status
            log.info("readiness: %s%s", verdict.status, f" ({verdict.reason})" if verdict.reason else "")
        return verdict

    def close(self) -> None:
        self.leaders.close()
        self.shared.close()
