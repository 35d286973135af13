"""Client-side doubles: a gRPC error as the stubs raise it, and a coordinator stub source."""

from __future__ import annotations

from typing import Any

import grpc

from i2v_contract.wire import LEADER_ADDR_METADATA


class FakeRpcError(grpc.RpcError):  # type: ignore[misc]
    """What a gRPC call raises: a code, details, and a leader hint in the trailing metadata."""

    def __init__(
        self,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        details: str = "connection refused",
        hint: str = "",
    ) -> None:
        self._code, self._details, self._hint = code, details, hint

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((LEADER_ADDR_METADATA, self._hint),) if self._hint else ()


class FakeStubs:
    """A coordinator client's StubSource: `stub` for every address; records the addresses asked."""

    def __init__(self, stub: Any = None) -> None:
        self._stub = stub
        self.asked: list[str] = []
        self.closed = False

    def stub(self, target: str) -> Any:
        self.asked.append(target)
        return self._stub

    def close(self) -> None:
        self.closed = True
