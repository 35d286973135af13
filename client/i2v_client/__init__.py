"""The client side of an i2v cluster: the Python SDK and, in `i2v_client.cli`, the `i2v` command.

Synchronous gRPC, no torch, so the CLI starts fast. `NodeClient` calls one node; `CoordinatorClient`
calls the cluster through whichever coordinator leads. Failures raise `CallError`.
"""

from i2v_client.calls import CoordinatorCall, CoordinatorGenerator, ProgressLine, final_result
from i2v_client.channels import open_channel
from i2v_client.coordinator import CoordinatorClient
from i2v_client.download import Downloaded
from i2v_client.errors import CallError
from i2v_client.failover import parse_targets
from i2v_client.node_client import Call, GenerateCall, Generator, NodeClient
from i2v_client.paging import JobPage, collect_jobs
from i2v_client.request import build_request, checked
from i2v_client.retry import RetryPolicy
from i2v_client.text import format_job, format_jobs, format_nodes, format_status, parse_states

__all__ = [
    "Call",
    "CallError",
    "CoordinatorCall",
    "CoordinatorClient",
    "CoordinatorGenerator",
    "Downloaded",
    "GenerateCall",
    "Generator",
    "JobPage",
    "NodeClient",
    "ProgressLine",
    "RetryPolicy",
    "build_request",
    "checked",
    "collect_jobs",
    "final_result",
    "format_job",
    "format_jobs",
    "format_nodes",
    "format_status",
    "open_channel",
    "parse_states",
    "parse_targets",
]
