"""The one exception the SDK raises: a failed call, with its gRPC status code and the server's words."""

from __future__ import annotations

from typing import Any

import grpc


class CallError(Exception):
    """A failed call: the gRPC status code and the server's message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc(cls, err: grpc.RpcError) -> CallError:
        call: Any = err
        return cls(call.code(), call.details() or "")
