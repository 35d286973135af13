"""Client-side doubles: a gRPC error as the stubs raise it (with or without error details), a
coordinator stub source, a CLI connector handing out given clients, and the CLI run on them with
captured output."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import grpc
from google.rpc import status_pb2
from grpc_status import rpc_status

from i2v_client import Connection, Reach, cli
from i2v_contract.wire import LEADER_ADDR_METADATA, common_pb2


def progress(
    stage: int, step: int = 0, total: int = 0, elapsed: float = 1.0, **kw: str
) -> common_pb2.Progress:
    return common_pb2.Progress(stage=stage, step=step, total_steps=total, elapsed_s=elapsed, **kw)  # type: ignore[arg-type]


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


class DetailedRpcError(FakeRpcError):
    """A failed call whose trailer carries `status` (a google.rpc.Status) as a server sends it."""

    def __init__(self, code: grpc.StatusCode, message: str, status: status_pb2.Status) -> None:
        super().__init__(code, message)
        self._trailer = tuple(rpc_status.to_status(status).trailing_metadata)

    def trailing_metadata(self) -> Any:
        return self._trailer


class FakeStubs:
    """A coordinator client's StubSource: `stub` for every address; records the addresses asked.
    Addresses in `unreachable` do not connect (how: Reach.FAILED or Reach.SILENT); `connects`
    records every connect with its timeout."""

    def __init__(self, stub: Any = None, unreachable: dict[str, Reach] | None = None) -> None:
        self._stub = stub
        self.unreachable = unreachable or {}
        self.asked: list[str] = []
        self.connects: list[tuple[str, float]] = []
        self.closed = False

    def connect(self, target: str, timeout: float) -> Connection:
        self.connects.append((target, timeout))
        reach = self.unreachable.get(target, Reach.CONNECTED)
        why = {Reach.FAILED: "refused the connection", Reach.SILENT: f"accepted nothing within {timeout:g} s"}
        return Connection(reach, why.get(reach, ""))

    def stub(self, target: str) -> Any:
        self.asked.append(target)
        return self._stub

    def close(self) -> None:
        self.closed = True


class FakeConnector:
    """A CLI Connector that hands out the given doubles; `asked` records what the CLI asked for,
    and asking for a client it was not given fails the test. `kinds` says which server each
    address is ("node", "coordinator"; unknown addresses are "")."""

    def __init__(
        self, generator: Any = None, cluster: Any = None, kinds: dict[str, str] | None = None
    ) -> None:
        self._generator = generator
        self._cluster = cluster
        self.kinds = kinds or {}
        self.asked: list[tuple[str, object]] = []

    def _hand_out(self, kind: str, where: object, client: Any) -> Any:
        self.asked.append((kind, where))
        assert client is not None, f"the CLI asked for a {kind} client ({where})"
        return client

    def node(self, address: str) -> Any:
        return self._hand_out("node", address, self._generator)

    def cluster_generator(self, targets: Sequence[str]) -> Any:
        return self._hand_out("cluster_generator", list(targets), self._generator)

    def cluster(self, targets: Sequence[str]) -> Any:
        return self._hand_out("cluster", list(targets), self._cluster)

    def kind(self, address: str) -> str:
        self.asked.append(("kind", address))
        return self.kinds.get(address, "")


def run_cli(
    argv: list[str], connector: FakeConnector, env: dict[str, str] | None = None, **kw: Any
) -> tuple[int, str, str]:
    """`i2v argv` on `connector` with an empty environment unless given: (exit status, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, {} if env is None else env, connector, out=out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()
