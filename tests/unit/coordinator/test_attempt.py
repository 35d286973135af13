"""One attempt on its node: the dispatch request and its failure, and the stop on a cancel."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator

import grpc
import pytest

from i2v_contract.codes import Code
from i2v_contract.states import ASSIGNED
from i2v_contract.tiers import GIB
from i2v_contract.wire import common_pb2, coordinator_pb2, node_pb2
from i2v_coordinator import attempt
from i2v_coordinator.jobs import CallFailure
from i2v_coordinator.nodecalls import NodeCallError
from i2v_coordinator.routing import NodeView
from tests.fakes.coordinator import job_record

N1 = NodeView("n1", "addr-n1", common_pb2.TIER_CPU, GIB, busy=False)


class Calls:
    def __init__(self, *, refuse: grpc.StatusCode | None = None, answer: bool | None = True) -> None:
        self.refuse = refuse
        self.answer = answer
        self.requests: list[node_pb2.NodeGenerateRequest] = []
        self.cancels: list[tuple[str, str]] = []

    async def generate(
        self, addr: str, request: node_pb2.NodeGenerateRequest
    ) -> AsyncGenerator[common_pb2.GenerateEvent, None]:
        self.requests.append(request)
        if self.refuse is not None:
            raise NodeCallError(self.refuse, "no")
        yield common_pb2.GenerateEvent(progress=common_pb2.Progress(step=1, total_steps=1))

    async def cancel(self, addr: str, job_id: str) -> bool:
        self.cancels.append((addr, job_id))
        if self.answer is None:
            raise NodeCallError(grpc.StatusCode.UNAVAILABLE, "down")
        return self.answer

    async def reset(self, addr: str) -> None:
        pass

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("refuse", "failure"),
    [
        pytest.param(None, None, id="the stream ends: no failure"),
        pytest.param(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            CallFailure("job1", 2, "n1", Code.RESOURCE_EXHAUSTED, "no"),
            id="refused: the failure names the attempt and node",
        ),
    ],
)
async def test_dispatch_sends_the_attempt_and_relays_progress(
    refuse: grpc.StatusCode | None, failure: CallFailure | None
) -> None:
    base = job_record()
    view = dataclasses.replace(base.view, state=ASSIGNED, attempt=2, node_id="n1", epoch=9)
    record = dataclasses.replace(base, view=view, mod_revision=41)
    calls = Calls(refuse=refuse)
    events: list[tuple[str, coordinator_pb2.JobEvent]] = []
    got = await attempt.dispatch(
        calls, record, N1, "file:///o.mp4", lambda job, e: events.append((job, e)), first_event_s=1, idle_s=1
    )
    assert got == failure
    (request,) = calls.requests
    assert (request.job_id, request.attempt, request.epoch, request.assign_revision) == ("job1", 2, 9, 41)
    assert request.output_uri == "file:///o.mp4" and request.request == record.request
    if failure is None:
        [(job_id, event)] = events
        assert job_id == "job1" and event.state == coordinator_pb2.JOB_STATE_RUNNING and event.node_id == "n1"
        assert event.attempt == 2 and event.progress.step == 1


@pytest.mark.parametrize(
    ("nodes", "answer", "cancels"),
    [
        pytest.param([N1], True, [("addr-n1", "job1")], id="the node stops it"),
        pytest.param([N1], None, [("addr-n1", "job1")], id="the node does not answer: logged only"),
        pytest.param([], True, [], id="the node is gone: nothing to stop"),
    ],
)
async def test_stop_tells_the_node_if_it_is_there(
    nodes: list[NodeView], answer: bool | None, cancels: list[tuple[str, str]]
) -> None:
    calls = Calls(answer=answer)
    await attempt.stop(calls, nodes, "n1", "job1")
    assert calls.cancels == cancels
