"""What a command runs with: where it writes, how it reaches the servers, its clock, and the bounds
of a job listing; and what it returns. main() makes the real one; tests hand in fakes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from i2v_client.calls import CoordinatorGenerator
from i2v_client.coordinator import CoordinatorClient
from i2v_client.download import Destination, Downloaded
from i2v_client.node_client import Generator, NodeClient
from i2v_client.paging import REQUESTS_MAX, JobPage
from i2v_client.probe import server_kind
from i2v_client.streams import EventCallback, PauseCallback
from i2v_common.tls import ClientTls
from i2v_contract.wire import coordinator_pb2

# 0 done; 1 the server refused, the job failed or was cancelled elsewhere; 2 bad usage or a local
# problem (an address, the image, the output path, the wrong kind of server); 130 Ctrl-C.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class Cluster(Protocol):
    """The part of CoordinatorClient the cluster commands use."""

    def cluster_status(self) -> coordinator_pb2.ClusterStatusResponse: ...

    def list_nodes(self) -> coordinator_pb2.ListNodesResponse: ...

    def list_jobs(self, states: Sequence[int] = (), limit: int = 0, page_token: str = "") -> JobPage: ...

    def get(self, job_id: str) -> coordinator_pb2.Job: ...

    def cancel(self, job_id: str) -> coordinator_pb2.Job: ...

    def download(self, job_id: str, dest: Destination) -> Downloaded: ...

    def watch(
        self,
        job_id: str,
        on_event: EventCallback | None = None,
        *,
        timeout: float | None = None,
        on_pause: PauseCallback | None = None,
    ) -> coordinator_pb2.JobEvent: ...

    def close(self) -> None: ...


class Connector(Protocol):
    """Clients for the addresses a command was given: `--node`, or the `--target` coordinators; and
    which kind of server an address is, when a call found the wrong one there."""

    def node(self, address: str) -> Generator: ...

    def cluster_generator(self, targets: Sequence[str]) -> Generator: ...

    def cluster(self, targets: Sequence[str]) -> Cluster: ...

    def kind(self, address: str) -> str:
        """'node', 'coordinator' or '' (neither answered)."""
        ...


class GrpcConnector:
    """The real servers, over gRPC (TLS with `tls`), presenting `token` (when given) on every call."""

    def __init__(self, token: str | None = None, tls: ClientTls | None = None) -> None:
        self.token = token
        self.tls = tls

    def node(self, address: str) -> Generator:
        return NodeClient(address, token=self.token, tls=self.tls)

    def cluster_generator(self, targets: Sequence[str]) -> Generator:
        return CoordinatorGenerator(targets, token=self.token, tls=self.tls)

    def cluster(self, targets: Sequence[str]) -> Cluster:
        return CoordinatorClient(targets, token=self.token, tls=self.tls)

    def kind(self, address: str) -> str:
        return server_kind(address, tls=self.tls)


@dataclass(frozen=True)
class Listing:
    """Bounds of `i2v jobs`."""

    shown: int = 20  # without --limit
    all_max: int = 10_000  # --all stops there (and says how to go on)
    requests_max: int = REQUESTS_MAX


@dataclass(frozen=True)
class Context:
    connector: Connector
    out: TextIO
    err: TextIO
    clock: Callable[[], float] = time.monotonic
    listing: Listing = field(default_factory=Listing)
