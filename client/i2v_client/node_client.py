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

from i2v_client.addresses import check_address
from i2v_client.bearer import token_metadata
from i2v_client.channels import Reach, open_channel, wait_connected
from i2v_client.download import save_inline
from i2v_client.errors import CallError
from i2v_client.reassembly import Reassembly
from i2v_client.request import checked
from i2v_client.streams import PauseCallback
from i2v_common.rpc import node_pb2_grpc
from i2v_common.tls import ClientTls
from i2v_contract.wire import common_pb2, coordinator_pb2, node_pb2

ProgressCallback = Callable[[common_pb2.Progress], None]


class GenerateCall:
    """A running Generate stream: iterate `events()`, or `cancel()` it from anywhere."""

    def __init__(self, call: Any, address: str = "") -> None:
        self._call = call
        self._address = address

    def events(self) -> Iterator[common_pb2.GenerateEvent]:
        try:
            yield from self._call
        except grpc.RpcError as err:
            raise CallError.from_rpc(err, self._address) from None

    def cancel(self) -> None:
        """Cancel the stream: the node stops the run within one denoising step."""
        self._call.cancel()

    def save(self, result: common_pb2.Result, output: Path, frames_dir: Path | None = None) -> None:
        """Write the result's video to `output` and its frames to `frames_dir` (they came inline)."""
        save_inline(result, output, frames_dir)

    def wait(
        self, on_progress: ProgressCallback | None = None, *, on_pause: PauseCallback | None = None
    ) -> common_pb2.Result:
        """Consume the stream: progress to `on_progress`, then the checked Result (with the video and
        frames the node sent in chunks before it). One node has no failover, so `on_pause` is never
        called."""
        parts = Reassembly()
        for event in self.events():
            if event.HasField("progress"):
                if on_progress is not None:
                    on_progress(event.progress)
            elif event.HasField("chunk"):
                parts.add(event.chunk)
            elif event.HasField("result"):
                return checked(parts.into(event.result))
        raise CallError(grpc.StatusCode.UNKNOWN, "the stream ended without a result", address=self._address)


class Call(Protocol):
    """A started generation: a node's GenerateCall or a job through the coordinators."""

    def wait(
        self, on_progress: ProgressCallback | None = None, *, on_pause: PauseCallback | None = None
    ) -> common_pb2.Result: ...

    def save(self, result: common_pb2.Result, output: Path, frames_dir: Path | None = None) -> None:
        """Write what `wait` returned: the video to `output`, its frames (if any) to `frames_dir`."""
        ...

    def cancel(self) -> coordinator_pb2.Job | None:
        """Stop it: a cluster job answers the cancelled Job (None when nothing was submitted); a
        node's run answers None."""


class Generator(Protocol):
    def generate(self, request: common_pb2.GenerationRequest, *, timeout: float | None = None) -> Call: ...

    def close(self) -> None: ...


class NodeClient:
    """Direct calls to one node (no coordinator). The address is checked at once (ValueError); a call
    to a node that does not connect within `connect_timeout_s` fails UNAVAILABLE saying so."""

    def __init__(
        self,
        target: str,
        *,
        connect_timeout_s: float = 2.0,
        token: str | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        """`token` is presented on every call, for nodes started with --tokens-file; `tls`: speak TLS
        (and present a client certificate, if it has one)."""
        self.target = check_address(target, "node address")
        self._metadata = token_metadata(token)
        self._connect_timeout_s = connect_timeout_s
        self._secure = tls is not None
        self._channel = open_channel(self.target, tls=tls)
        self._stub = node_pb2_grpc.NodeStub(self._channel)

    def _connect(self, timeout: float | None) -> None:
        limit = self._connect_timeout_s if timeout is None else min(self._connect_timeout_s, timeout)
        reach, why = wait_connected(self._channel, limit, target=self.target, secure=self._secure)
        if reach is not Reach.CONNECTED:
            raise CallError(grpc.StatusCode.UNAVAILABLE, f"node {self.target} {why}")

    def generate(
        self, request: common_pb2.GenerationRequest, *, timeout: float | None = None
    ) -> GenerateCall:
        self._connect(timeout)
        # A standalone run: job_id, attempt and epoch are set only by a coordinator's dispatch.
        call = self._stub.Generate(
            node_pb2.NodeGenerateRequest(request=request), timeout=timeout, metadata=self._metadata
        )
        return GenerateCall(call, self.target)

    def cancel(self, job_id: str = "", *, timeout: float = 10.0) -> bool:
        self._connect(timeout)
        try:
            response = self._stub.Cancel(
                node_pb2.NodeCancelRequest(job_id=job_id), timeout=timeout, metadata=self._metadata
            )
        except grpc.RpcError as err:
            raise CallError.from_rpc(err, self.target) from None
        return bool(response.cancelled)

    def status(self, *, timeout: float = 10.0) -> node_pb2.NodeStatus:
        self._connect(timeout)
        try:
            status: node_pb2.NodeStatus = self._stub.Status(
                node_pb2.NodeStatusRequest(), timeout=timeout, metadata=self._metadata
            )
        except grpc.RpcError as err:
            raise CallError.from_rpc(err, self.target) from None
        return status

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
