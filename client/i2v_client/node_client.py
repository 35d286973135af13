"""Direct calls to one node, and the shape every way of generating shares.

`NodeClient` talks to one node. Anything that can start a generation returns a `Call`, so a
coordinator client (several addresses, retries across them) slots in beside it behind the
`Generator` protocol and the CLI stays the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import grpc

from i2v_client.channels import open_channel
from i2v_client.download import save_inline
from i2v_client.errors import CallError
from i2v_client.reassembly import Reassembly
from i2v_client.request import checked
from i2v_common.rpc import node_pb2_grpc
from i2v_contract.wire import common_pb2, node_pb2


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

    def save(self, result: common_pb2.Result, output: Path, frames_dir: Path | None = None) -> None:
        """Write the result's video to `output` and its frames to `frames_dir` (they came inline)."""
        save_inline(result, output, frames_dir)

    def wait(self, on_progress: Callable[[common_pb2.Progress], None] | None = None) -> common_pb2.Result:
        """Consume the stream: progress to `on_progress`, then the checked Result (with the video and
        frames the node sent in chunks before it)."""
        parts = Reassembly()
        for event in self.events():
            if event.HasField("progress"):
                if on_progress is not None:
                    on_progress(event.progress)
            elif event.HasField("chunk"):
                parts.add(event.chunk)
            elif event.HasField("result"):
                return checked(parts.into(event.result))
        raise CallError(grpc.StatusCode.UNKNOWN, "the stream ended without a result")


class Call(Protocol):
    """A started generation: a node's GenerateCall or a job through the coordinators."""

    def wait(self, on_progress: Callable[[common_pb2.Progress], None] | None = None) -> common_pb2.Result: ...

    def save(self, result: common_pb2.Result, output: Path, frames_dir: Path | None = None) -> None:
        """Write what `wait` returned: the video to `output`, its frames (if any) to `frames_dir`."""
        ...

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
