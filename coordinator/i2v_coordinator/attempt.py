"""One attempt on its node, as the leader runs it: the dispatch call (Node.Generate for the assigned
record, its stream followed with the node's progress relayed, ending in a `jobs.CallFailure` when it
fails or goes silent) and the stop (Node.Cancel) when the client cancels the job.

Neither writes anything: the leader's loop judges a failed call (jobs.on_dispatch_failed) and the
node's own claim and result records move the job on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from i2v_common.status import from_grpc
from i2v_contract.wire import common_pb2, coordinator_pb2, node_pb2
from i2v_coordinator.jobs import CallFailure
from i2v_coordinator.nodecalls import NodeCallError, NodeCalls, follow_stream
from i2v_coordinator.records import JobRecord
from i2v_coordinator.routing import NodeView

log = logging.getLogger(__name__)

Publish = Callable[[str, coordinator_pb2.JobEvent], None]


async def dispatch(
    calls: NodeCalls,
    record: JobRecord,
    node: NodeView,
    output_uri: str,
    publish: Publish,
    *,
    first_event_s: float,
    idle_s: float,
) -> CallFailure | None:
    """Call Node.Generate for the record's current attempt (its revision is the assign revision the
    node's claim compares) and follow the stream to its end; the failure, if the call failed."""
    view = record.view
    request = node_pb2.NodeGenerateRequest(
        request=record.request,
        job_id=view.job_id,
        attempt=view.attempt,
        epoch=view.epoch,
        assign_revision=record.mod_revision,
        output_uri=output_uri,
    )

    def relay(progress: common_pb2.Progress) -> None:
        event = coordinator_pb2.JobEvent(
            job_id=view.job_id,
            state=coordinator_pb2.JOB_STATE_RUNNING,
            attempt=view.attempt,
            node_id=node.node_id,
            progress=progress,
        )
        publish(view.job_id, event)

    try:
        await follow_stream(calls, node.addr, request, relay, first_event_s=first_event_s, idle_s=idle_s)
    except NodeCallError as err:
        return CallFailure(view.job_id, view.attempt, node.node_id, from_grpc(err.code), err.message)
    return None


async def stop(calls: NodeCalls, nodes: Iterable[NodeView], node_id: str, job_id: str) -> None:
    """Tell the node running a cancelled job to stop it (its later result is ignored either way)."""
    node = next((n for n in nodes if n.node_id == node_id), None)
    if node is None:
        log.info("cancel %s: node %s is gone; nothing to stop", job_id, node_id)
        return
    try:
        stopped = await calls.cancel(node.addr, job_id)
        log.info("cancel %s: node %s %s", job_id, node_id, "stopped it" if stopped else "was not running it")
    except NodeCallError as err:
        log.warning(
            "cancel %s: node %s did not answer (%s); its result will be ignored", job_id, node_id, err
        )
