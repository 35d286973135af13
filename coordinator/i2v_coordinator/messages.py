"""The Coordinator service's reply messages built from job records: a job, a heartbeat, the words
for a job that has already finished. Pure: no I/O, so the message-size tests build them directly."""

from __future__ import annotations

import time

from i2v_contract.states import state_name
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator import jobs
from i2v_coordinator.records import JobRecord


def heartbeat_event(last: coordinator_pb2.JobEvent) -> coordinator_pb2.JobEvent:
    """A keep-alive that repeats the job's state and attempt as last sent, and nothing else."""
    return coordinator_pb2.JobEvent(
        job_id=last.job_id, state=last.state, attempt=last.attempt, heartbeat=True
    )


def job_message(record: JobRecord, event: coordinator_pb2.JobEvent) -> coordinator_pb2.Job:
    view = record.view
    job = coordinator_pb2.Job(
        job_id=view.job_id,
        state=event.state,
        attempt=view.attempt,
        node_id=view.node_id,
        epoch=view.epoch,
        required_tier=common_pb2.Tier.ValueType(view.required_tier),
        required_bytes=view.required_bytes,
        created_at=view.created_at,
        started_at=view.started_at,
        finished_at=view.finished_at,
        error=view.error,
        error_code=view.error_code,
        input_uri=record.input_uri,
        request=record.request,
        owner=record.owner,
    )
    if event.HasField("result"):
        job.result.CopyFrom(event.result)
    return job


def finished_message(view: jobs.JobView) -> str:
    """Why a finished job cannot be cancelled, and where its outcome is."""
    state = state_name(view.state)
    return (
        f"job {view.job_id} already {state} (attempt {view.attempt}); there is nothing to cancel: "
        f"`i2v get {view.job_id}` shows its outcome"
    )


def utc_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
