from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from i2v_contract.client import CallError
from i2v_contract.coordinator_client import (
    CoordinatorClient,
    ProgressLine,
    RetryPolicy,
    _Reconnect,
    final_result,
    format_job,
    format_jobs,
    format_nodes,
    format_status,
    parse_states,
    parse_targets,
)
from i2v_contract.memory_kv import ManualClock
from i2v_contract.v1 import common_pb2, coordinator_pb2


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("a:1", ["a:1"]),
        ("a:1, b:2,,a:1", ["a:1", "b:2"]),
        (["b:2", " a:1 "], ["b:2", "a:1"]),
    ],
)
def test_parse_targets(given: str | list[str], expected: list[str]) -> None:
    assert parse_targets(given) == expected


def test_parse_targets_needs_one() -> None:
    with pytest.raises(ValueError, match="--target"):
        parse_targets(" , ")


def test_reconnect_backs_off_exponentially_but_follows_a_first_leader_hint_at_once() -> None:
    clock = ManualClock(0.0)
    r = _Reconnect(RetryPolicy(reconnect_s=5.0, initial_backoff_s=0.1, max_backoff_s=0.4), clock)
    assert r.next_delay(hinted=True) == 0.0
    assert r.next_delay(hinted=True) == 0.1  # a second hint in a row: the election is still moving
    assert [r.next_delay(hinted=False) for _ in range(3)] == [0.2, 0.4, 0.4]
    clock.advance(4.0)
    assert r.remaining() == pytest.approx(1.0)
    r.reset()  # a coordinator answered
    assert r.remaining() == pytest.approx(5.0) and r.next_delay(hinted=False) == 0.1


def test_final_result_of_a_failed_job_raises_its_status() -> None:
    event = coordinator_pb2.JobEvent(
        job_id="j", state=coordinator_pb2.JOB_FAILED, error="out of memory on n1", error_code=8
    )
    with pytest.raises(CallError) as err:
        final_result(event)
    assert (
        err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        and "j failed: out of memory" in err.value.message
    )


def test_final_result_checks_the_inline_video() -> None:
    ok = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_SUCCEEDED)
    ok.result.video = b"mp4"
    assert final_result(ok).video == b"mp4"
    ok.result.sha256 = "0" * 64
    with pytest.raises(CallError) as err:
        final_result(ok)
    assert err.value.code == grpc.StatusCode.DATA_LOSS


def test_formatting_for_the_cli() -> None:
    status = coordinator_pb2.ClusterStatusResponse(
        leader_id="c1",
        leader_addr="h:1",
        epoch=7,
        members=[coordinator_pb2.Member(id="c1", addr="h:1", leader=True)],
        tiers=[coordinator_pb2.TierCount(tier=common_pb2.TIER_CPU, nodes=2, busy=1)],
        queued=3,
        answered_by="c1",
    )
    text = format_status(status)
    assert "leader c1 at h:1, epoch 7" in text and "cpu 2 (1 busy)" in text and "3 queued" in text
    assert "held back" not in text  # only shown when some node is
    status.nodes_cooling = 1
    assert format_status(status).splitlines()[-1].startswith("held back: 1 cooling down, 0 set aside")
    cooling = coordinator_pb2.NodeInfo(
        node_id="n1", cooldown_s=3.6, consecutive_failures=2, health_reason="not claimed within 10 s"
    )
    healthy = coordinator_pb2.NodeInfo(node_id="n2", consecutive_failures=1, health_reason="old")
    lines = format_nodes(coordinator_pb2.ListNodesResponse(nodes=[cooling, healthy])).splitlines()
    assert lines[0].endswith("  cooling down 4s after 2 failed: not claimed within 10 s")
    assert lines[1].endswith("idle  ")  # cooldown over: nothing to flag
    job = coordinator_pb2.Job(job_id="j", state=coordinator_pb2.JOB_FAILED, attempt=2, error="boom")
    assert format_job(job).splitlines() == ["j failed attempt 2, needs tier unspecified", "error: boom"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("queued", [coordinator_pb2.JOB_QUEUED]),
        (" Running,queued,running ", [coordinator_pb2.JOB_RUNNING, coordinator_pb2.JOB_QUEUED]),
        ("succeeded,failed,cancelled", [4, 5, 6]),
    ],
)
def test_parse_states(text: str, expected: list[int]) -> None:
    assert parse_states(text) == expected


@pytest.mark.parametrize("text", ["", "done", "queued,unspecified"])
def test_parse_states_names_the_allowed_words(text: str) -> None:
    with pytest.raises(ValueError, match="queued, assigned, running, succeeded, failed, cancelled"):
        parse_states(text)


def test_format_jobs() -> None:
    assert format_jobs(coordinator_pb2.ListJobsResponse()) == "no jobs"
    done = coordinator_pb2.Job(
        job_id="j1", state=coordinator_pb2.JOB_SUCCEEDED, attempt=2, node_id="n1", created_at=86400.0,
        finished_at=86403.25,
    )  # fmt: skip
    done.result.artifact_uri = "file:///s/j1.mp4"
    failed = coordinator_pb2.Job(job_id="j0", state=coordinator_pb2.JOB_FAILED, attempt=1, error="oom\nmore")
    lines = format_jobs(coordinator_pb2.ListJobsResponse(jobs=[done, failed])).splitlines()
    assert lines[0].split()[:3] == ["JOB", "STATE", "TRY"]
    assert lines[1].split() == [
        "j1",
        "succeeded",
        "2",
        "n1",
        "1970-01-02",
        "00:00:00Z",
        "3.2s",
        "file:///s/j1.mp4",
    ]
    assert lines[2].split() == ["j0", "failed", "1", "-", "-", "-", "oom"]


def test_format_job_of_a_success_says_what_was_produced() -> None:
    job = coordinator_pb2.Job(
        job_id="j", state=coordinator_pb2.JOB_SUCCEEDED, attempt=1, created_at=1, finished_at=3
    )
    job.result.MergeFrom(
        common_pb2.Result(
            artifact_uri="file:///o.mp4", sha256="ab" * 32, frames=2, width=32, height=48, fps=4, steps=3,
            seed=9, profile="fast", degradations=["steps 6->3"],
        )
    )  # fmt: skip
    assert format_job(job).splitlines()[1:] == [
        "video: file:///o.mp4 (sha256 abababababab)",
        "produced: 2 frames 32x48 @ 4 fps, 3 steps, seed 9, profile fast, took 2.0s",
        "degraded: steps 6->3",
    ]


def test_progress_line_turns_states_into_stages_and_pauses_into_notes() -> None:
    shown: list[common_pb2.Progress] = []
    clock = ManualClock(10.0)
    line = ProgressLine(shown.append, clock)
    clock.advance(1.5)
    line.event(coordinator_pb2.JobEvent(state=coordinator_pb2.JOB_QUEUED))
    line.event(coordinator_pb2.JobEvent(state=coordinator_pb2.JOB_RUNNING))  # no progress: nothing to show
    denoise = common_pb2.Progress(stage=common_pb2.STAGE_DENOISE, step=3, total_steps=5)
    line.event(coordinator_pb2.JobEvent(state=coordinator_pb2.JOB_RUNNING, progress=denoise))
    line.pause("a:1 answered UNAVAILABLE; re-attaching via b:2")
    assert [(p.stage, p.step, p.message) for p in shown] == [
        (common_pb2.STAGE_QUEUED, 0, ""),
        (common_pb2.STAGE_DENOISE, 3, ""),
        (common_pb2.STAGE_DENOISE, 3, "paused: a:1 answered UNAVAILABLE; re-attaching via b:2"),
    ]
    assert shown[0].elapsed_s == pytest.approx(1.5)


class _Unavailable(grpc.RpcError):  # type: ignore[misc]
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "connection refused"

    def trailing_metadata(self) -> tuple[()]:
        return ()


class _Stream:
    def __init__(self, events: list[coordinator_pb2.JobEvent], fail: bool) -> None:
        self.events = events
        self.fail = fail

    def __iter__(self) -> Iterator[coordinator_pb2.JobEvent]:
        yield from self.events
        if self.fail:
            raise _Unavailable()

    def cancel(self) -> None:
        return None


def test_a_broken_stream_is_a_pause_then_re_attaches_to_the_next_target() -> None:
    client = CoordinatorClient(["a:1", "b:2"], sleep=lambda s: None, clock=ManualClock(0.0))
    running = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_RUNNING)
    done = coordinator_pb2.JobEvent(job_id="j", state=coordinator_pb2.JOB_SUCCEEDED)
    streams = iter([_Stream([running], fail=True), _Stream([running, done], fail=False)])
    seen: list[int] = []
    pauses: list[str] = []
    final = client._stream(
        "watch j", lambda stub: next(streams), lambda e: seen.append(e.state), None, pauses.append
    )
    client.close()
    assert final.state == coordinator_pb2.JOB_SUCCEEDED
    assert seen == [coordinator_pb2.JOB_RUNNING, coordinator_pb2.JOB_RUNNING, coordinator_pb2.JOB_SUCCEEDED]
    assert pauses == ["a:1 answered UNAVAILABLE; re-attaching via b:2"]
