"""A bearer token on every call: `authorization: Bearer <token>` metadata added to each call of a
stub, so one set of channels can serve callers with different tokens (CoordinatorClient.with_token).
The token is checked here (ValueError), so a malformed one is said before anything is sent."""

from __future__ import annotations

from typing import Any, cast

from i2v_client.channels import Connection, StubSource
from i2v_common.rpc import coordinator_pb2_grpc
from i2v_common.tokens import Metadata, bearer
from i2v_contract import auth


def token_metadata(token: str | None) -> Metadata:
    """The metadata presenting `token` (none for None or ""); ValueError if it cannot be one."""
    if not token:
        return ()
    _, problem = auth.bearer_token([f"Bearer {token}"])
    if problem:
        raise ValueError(problem)
    return bearer(token)


class _Method:
    def __init__(self, method: Any, metadata: Metadata) -> None:
        self._method = method
        self._metadata = metadata

    def __call__(self, request: Any, **kwargs: Any) -> Any:
        kwargs["metadata"] = (*(kwargs.get("metadata") or ()), *self._metadata)
        return self._method(request, **kwargs)


class _Stub:
    """A stub whose every method sends `metadata` too."""

    def __init__(self, stub: Any, metadata: Metadata) -> None:
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self._stub, name), self._metadata)


class TokenStubs:
    """A StubSource whose stubs present `metadata`; closes `inner` only if it `owns` it."""

    def __init__(self, inner: StubSource, metadata: Metadata, *, owns: bool) -> None:
        self.inner = inner
        self._metadata = metadata
        self._owns = owns

    def connect(self, target: str, timeout: float) -> Connection:
        return self.inner.connect(target, timeout)

    def stub(self, target: str) -> coordinator_pb2_grpc.CoordinatorStub:
        stub = self.inner.stub(target)
        return (
            cast(coordinator_pb2_grpc.CoordinatorStub, _Stub(stub, self._metadata))
            if self._metadata
            else stub
        )

    def close(self) -> None:
        if self._owns:
            self.inner.close()
