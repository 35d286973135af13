"""Python client for the i2v services (synchronous gRPC; no torch, so the CLI starts fast).

`NodeClient` talks to one node. Anything that can start a generation returns a `Call`, so a
coordinator client (several addresses, retries across them) slots in beside it behind the
`Generator` protocol and the CLI stays the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import grpc

from i2v_common.rpc import node_pb2_grpc
from i2v_contract.wire import common_pb2, node_pb2

MIB = 1024 * 1024
# Matches the node's send limit: an inline MP4 plus optional PNG frames.
MAX_RECEIVE_BYTES = 128 * MIB
MAX_SEND_BYTES = 64 * MIB


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


def open_channel(target: str, options: Sequence[tuple[str, int]] = ()) -> grpc.Channel:
    """A channel with the message size limits; `options` adds channel arguments (e.g. keepalive)."""
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            ("grpc.max_send_message_length", MAX_SEND_BYTES),
            *options,
        ],
    )


def build_request(
    image: bytes,
    *,
    prompt: str,
    negative_prompt: str = "",
    width: int = 0,
    height: int = 0,
    frames: int = 0,
    fps: int = 0,
    steps: int = 0,
    guidance_scale: float = 0.0,
    seed: int | None = None,
    allow_degrade: bool = False,
    model: str = "",
    return_frames: bool = False,
) -> common_pb2.GenerationRequest:
    """A GenerationRequest; zeros mean "the server's default"."""
    req = common_pb2.GenerationRequest(
        image=image,
        prompt=prompt,
        negative_prompt=negative_prompt,
        width=width,
        height=height,
        frames=frames,
        fps=fps,
        steps=steps,
        guidance_scale=guidance_scale,
        allow_degrade=allow_degrade,
        model=model,
        return_frames=return_frames,
    )
    if seed is not None:
        req.seed = seed
    return req


class GenerateCall:
    """A running Generate stream: iterate `events()`, or `cancel()` it from anywhere."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def events(self) -> Iterator[common_pb2.GenerateEvent]:
        try:
            yield from self._call
        except grpc.RpcError as err:
            raise CallError.from_rpc(err) from None

    def cancel(self) -> None:
        self._call.cancel()

    def wait(self, on_progress: Callable[[common_pb2.Progress], None] | None = None) -> common_pb2.Result:
        """Consume the stream: progress to `on_progress`, then the checked Result."""
        for event in self.events():
            if event.HasField("progress"):
                if on_progress is not None:
                    on_progress(event.progress)
            elif event.HasField("result"):
                return checked(event.result)
        raise CallError(grpc.StatusCode.UNKNOWN, "the stream ended without a result")


def checked(result: common_pb2.Result) -> common_pb2.Result:
    """The result, if its inline video matches its sha256 (DATA_LOSS otherwise)."""
    if result.video and result.sha256 and hashlib.sha256(result.video).hexdigest() != result.sha256:
        raise CallError(grpc.StatusCode.DATA_LOSS, "video bytes do not match the result's sha256; retry")
    return result


class Call(Protocol):
    """A started generation: a node's GenerateCall or a job through the coordinators."""

    def wait(self, on_progress: Callable[[common_pb2.Progress], None] | None = None) -> common_pb2.Result: ...

    def cancel(self) -> None: ...


class Generator(Protocol):
    def generate(self, request: common_pb2.GenerationRequest, *, timeout: float | None = None) -> Call: ...

    def close(self) -> None: ...


class NodeClient:
    """Direct calls to one node (no coordinator)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._channel = open_channel(target)
        self._stub = node_pb2_grpc.NodeStub(self._channel)

    def generate(
        self, request: common_pb2.GenerationRequest, *, timeout: float | None = None
    ) -> GenerateCall:
        # A standalone run: job_id, attempt and epoch are set only by a coordinator's dispatch.
        call = self._stub.Generate(node_pb2.NodeGenerateRequest(request=request), timeout=timeout)
        return GenerateCall(call)

    def cancel(self, job_id: str = "", *, timeout: float = 10.0) -> bool:
        try:
            response = self._stub.Cancel(node_pb2.NodeCancelRequest(job_id=job_id), timeout=timeout)
        except grpc.RpcError as err:
            raise CallError.from_rpc(err) from None
        return bool(response.cancelled)

    def status(self, *, timeout: float = 10.0) -> node_pb2.NodeStatus:
        try:
            status: node_pb2.NodeStatus = self._stub.Status(node_pb2.NodeStatusRequest(), timeout=timeout)
        except grpc.RpcError as err:
            raise CallError.from_rpc(err) from None
        return status

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
