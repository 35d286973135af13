from __future__ import annotations

import pytest

from i2v_client import format_job, format_jobs, format_nodes, format_status, parse_states, shorten_uri
from i2v_contract.wire import common_pb2, coordinator_pb2


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
    job = coordinator_pb2.Job(job_id="j", state=coordinator_pb2.JOB_STATE_FAILED, attempt=2, error="boom")
    assert format_job(job).splitlines() == ["j failed attempt 2, needs tier unspecified", "error: boom"]


def test_status_names_etcd_only_when_it_is_out_of_reach() -> None:
    status = coordinator_pb2.ClusterStatusResponse(leader_id="c1", answered_by="c2")
    assert "etcd" not in format_status(status)
    status.etcd_error = (
        "etcd unreachable at h:2379 for 3.0 s (refused); the coordinator cannot read or write jobs"
    )
    assert format_status(status).splitlines()[-1] == (
        f"etcd: {status.etcd_error}; the lines above are c2's last view"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("queued", [coordinator_pb2.JOB_STATE_QUEUED], id="one"),
        pytest.param(
            " Running,queued,running ",
            [coordinator_pb2.JOB_STATE_RUNNING, coordinator_pb2.JOB_STATE_QUEUED],
            id="case-spaces-and-duplicates",
        ),
        pytest.param("succeeded,failed,cancelled", [4, 5, 6], id="the-final-states"),
    ],
)
def test_parse_states(text: str, expected: list[int]) -> None:
    assert parse_states(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("done", id="unknown-word"),
        pytest.param("queued,unspecified", id="unspecified-is-not-a-state"),
    ],
)
def test_parse_states_names_the_allowed_words(text: str) -> None:
    with pytest.raises(ValueError, match="queued, assigned, running, succeeded, failed, cancelled"):
        parse_states(text)


def test_format_jobs() -> None:
    assert format_jobs([]) == "no jobs"
    done = coordinator_pb2.Job(
        job_id="j1", state=coordinator_pb2.JOB_STATE_SUCCEEDED, attempt=2, node_id="n1", created_at=86400.0,
        finished_at=86403.25,
    )  # fmt: skip
    done.result.artifact_uri = "file:///s/j1.mp4"
    failed = coordinator_pb2.Job(
        job_id="j0", state=coordinator_pb2.JOB_STATE_FAILED, attempt=1, error="oom\nmore"
    )
    lines = format_jobs([done, failed]).splitlines()
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
        job_id="j", state=coordinator_pb2.JOB_STATE_SUCCEEDED, attempt=1, created_at=1, finished_at=3
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


@pytest.mark.parametrize(
    ("uri", "width", "expected"),
    [
        pytest.param("file:///s/j1.mp4", 40, "file:///s/j1.mp4", id="fits"),
        pytest.param(
            "file:///var/lib/i2v/artifacts/jobs/0123456789abcdef/out-1.mp4",
            40,
            "file://…/jobs/0123456789abcdef/out-1.mp4",
            id="scheme-and-last-segments",
        ),
        pytest.param(
            "s3://bucket/a/very/long/key/out-1.mp4", 20, "s3://…/key/out-1.mp4", id="other-schemes-too"
        ),
        pytest.param("file:///x/jobs/j/out-1.mp4", 12, "…/out-1.mp4", id="no-room-for-the-scheme"),
        pytest.param("file:///x/a-very-long-file-name.mp4", 10, "…-name.mp4", id="the-end-of-a-long-name"),
    ],
)
def test_shorten_uri(uri: str, width: int, expected: str) -> None:
    assert shorten_uri(uri, width) == expected and len(expected) <= width
