"""The seam between the node's job slot and whatever records jobs elsewhere (the cluster's claims).

`JobHooks.before_run` runs after the busy slot is taken and before the engine starts (the fenced
claim goes there) and gets a `stop(why)` it may call while the job runs (the claim is gone: the job
stops within one denoising step, like a cancel); `after_run` sees every job that before_run
accepted, however it ended (result records).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from i2v_contract.reasons import ErrorDetails
from i2v_contract.wire import common_pb2, node_pb2

Stop = Callable[[str], None]  # stop(why): end the running job without a result


class JobRejected(Exception):
    """Raised by a JobHooks.before_run to refuse a job (e.g. a lost fenced claim)."""

    def __init__(self, code: grpc.StatusCode, message: str, details: ErrorDetails | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class JobReport:
    """What `after_run` learns about a finished job."""

    job_id: str
    request: node_pb2.NodeGenerateRequest
    code: grpc.StatusCode
    message: str
    result: common_pb2.Result | None


class JobHooks(Protocol):
    async def before_run(self, job_id: str, request: node_pb2.NodeGenerateRequest, stop: Stop) -> None: ...

    async def after_run(self, report: JobReport) -> None: ...


class NoHooks:
    """Standalone node: every job may run, nothing is recorded elsewhere."""

    async def before_run(self, job_id: str, request: node_pb2.NodeGenerateRequest, stop: Stop) -> None:
        return None

    async def after_run(self, report: JobReport) -> None:
        return None
