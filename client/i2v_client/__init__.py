"""The client side of an i2v cluster: the Python SDK and, in `i2v_client.cli`, the `i2v` command.

Synchronous gRPC, no torch, so the CLI starts fast. `NodeClient` calls one node; `CoordinatorClient`
calls the cluster through whichever coordinator leads. Failures raise `CallError`; addresses that
are not HOST:PORT raise ValueError before anything is dialled. Everything public is exported here
(docs/client.md).
"""

from i2v_client.addresses import check_address, parse_targets
from i2v_client.calls import CoordinatorCall, CoordinatorGenerator, ProgressLine, final_result
from i2v_client.channels import Connection, Reach, open_channel, wait_connected
from i2v_client.coordinator import CoordinatorClient
from i2v_client.download import Downloaded
from i2v_client.errors import CallError, DeadlinePassed
from i2v_client.node_client import Call, GenerateCall, Generator, NodeClient
from i2v_client.paging import JobPage, collect_jobs
from i2v_client.probe import COORDINATOR, NODE, server_kind
from i2v_client.request import build_request, checked
from i2v_client.retry import RETRYABLE, RetryPolicy, retryable
from i2v_client.streams import Pause
from i2v_client.text import (
    clip,
    format_job,
    format_jobs,
    format_nodes,
    format_status,
    parse_states,
    shorten_uri,
)
from i2v_common.tls import ClientTls

__all__ = [
    "COORDINATOR",
    "NODE",
    "RETRYABLE",
    "Call",
    "CallError",
    "ClientTls",
    "Connection",
    "CoordinatorCall",
    "CoordinatorClient",
    "CoordinatorGenerator",
    "DeadlinePassed",
    "Downloaded",
    "GenerateCall",
    "Generator",
    "JobPage",
    "NodeClient",
    "Pause",
    "ProgressLine",
    "Reach",
    "RetryPolicy",
    "build_request",
    "check_address",
    "checked",
    "clip",
    "collect_jobs",
    "final_result",
    "format_job",
    "format_jobs",
    "format_nodes",
    "format_status",
    "open_channel",
    "parse_states",
    "parse_targets",
    "retryable",
    "server_kind",
    "shorten_uri",
    "wait_connected",
]
