from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from i2v_client import CallError, JobPage
from i2v_client.cli import Listing
from i2v_client.cli.context import EXIT_FAILED, EXIT_USAGE
from i2v_client.download import Downloaded
from i2v_contract.wire import common_pb2, coordinator_pb2
from tests.fakes.client import FakeConnector, progress, run_cli


def _job(job_id: str, state: int, **kw: object) -> coordinator_pb2.Job:
    return coordinator_pb2.Job(job_id=job_id, state=state, attempt=1, **kw)  # type: ignore[arg-type]


class _FakeCoordinator:
    def __init__(
        self, error: CallError | None = None, events: list[coordinator_pb2.JobEvent] | None = None
    ) -> None:
        self.error = error
        self.events = events or []
        self.calls: list[tuple[str, object]] = []
        self.closed = False

    def _answer(self, name: str, arg: object, value: object) -> object:
        self.calls.append((name, arg))
        if self.error is not None:
            raise self.error
        return value

    def cluster_status(self) -> coordinator_pb2.ClusterStatusResponse:
        status = coordinator_pb2.ClusterStatusResponse(
            leader_id="c1", leader_addr="h:1", epoch=9, answered_by="c2", nodes_set_aside=1
        )
        return self._answer("status", None, status)  # type: ignore[return-value]

    def list_nodes(self) -> coordinator_pb2.ListNodesResponse:
        node = coordinator_pb2.NodeInfo(node_id="n1", addr="h:7", tier=common_pb2.TIER_CPU, model="tiny")
        aside = coordinator_pb2.NodeInfo(
            node_id="n2", addr="h:8", set_aside=True, consecutive_failures=3, health_reason="INTERNAL: disk"
        )
        return self._answer("nodes", None, coordinator_pb2.ListNodesResponse(nodes=[node, aside]))  # type: ignore[return-value]

    def list_jobs(self, states: list[int], limit: int, page_token: str) -> JobPage:
        jobs = (
            _job("j2", coordinator_pb2.JOB_STATE_RUNNING, node_id="n1"),
            _job("j1", coordinator_pb2.JOB_STATE_SUCCEEDED),
        )
        return self._answer("jobs", (states, limit, page_token), JobPage(jobs, ""))  # type: ignore[return-value]

    def get(self, job_id: str) -> coordinator_pb2.Job:
        return self._answer("get", job_id, _job(job_id, coordinator_pb2.JOB_STATE_QUEUED))  # type: ignore[return-value]

    def cancel(self, job_id: str) -> coordinator_pb2.Job:
        return self._answer("cancel", job_id, _job(job_id, coordinator_pb2.JOB_STATE_CANCELLED))  # type: ignore[return-value]

    def watch(
        self,
        job_id: str,
        on_event: Callable[[coordinator_pb2.JobEvent], None],
        *,
        timeout: float | None = None,
        on_pause: Callable[[str], None],
    ) -> coordinator_pb2.JobEvent:
        self._answer("watch", job_id, None)
        for event in self.events[:-1]:
            on_event(event)
        on_pause("c:1 answered UNAVAILABLE; re-attaching via c:2")
        on_event(self.events[-1])
        return self.events[-1]

    def download(self, job_id: str, dest: Path) -> Downloaded:
        self._answer("download", (job_id, dest), None)
        dest.write_bytes(b"video")
        return Downloaded(5, "ab" * 32, "video/mp4", 1)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("argv", "call", "expected"),
    [
        pytest.param(
            ["status"],
            ("nodes", None),
            [
                "leader c1 at h:1, epoch 9 (answered by c2)",
                "n1",
                "tiny",
                "held back: 0 cooling down, 1 set aside",
                "SET ASIDE after 3 failed: INTERNAL: disk",
            ],
            id="status",
        ),
        pytest.param(
            ["jobs", "--state", "running,succeeded", "--limit", "7"],
            ("jobs", ([3, 4], 7, "")),
            ["j2", "running", "n1", "j1"],
            id="jobs",
        ),
        pytest.param(["get", "j5"], ("get", "j5"), ["j5 queued attempt 1"], id="get"),
        pytest.param(["cancel", "j6"], ("cancel", "j6"), ["j6 cancelled attempt 1"], id="cancel"),
    ],
)
def test_cluster_commands_print_what_the_coordinator_says(
    argv: list[str], call: tuple[str, object], expected: list[str]
) -> None:
    fake = _FakeCoordinator()
    connector = FakeConnector(cluster=fake)
    code, out, err = run_cli([*argv, "--target", "c:1"], connector)
    assert code == 0, err
    assert connector.asked == [("cluster", ["c:1"])]
    assert call in fake.calls and fake.closed
    for words in expected:
        assert words in out


class _PagedCoordinator(_FakeCoordinator):
    """ListJobs over `count` jobs, newest first; `skipping` ids come back as empty, short pages (as when a
    state filter skipped them). Tokens are the index of the next job."""

    def __init__(self, count: int, skipping: range = range(0)) -> None:
        super().__init__()
        self.ids = [f"j{i}" for i in reversed(range(count))]
        self.skipping = {f"j{i}" for i in skipping}

    def list_jobs(self, states: list[int], limit: int, page_token: str) -> JobPage:
        start = int(page_token or 0)
        scanned = self.ids[start : start + min(limit or 100, 1000)]
        jobs = tuple(_job(j, coordinator_pb2.JOB_STATE_SUCCEEDED) for j in scanned if j not in self.skipping)
        end = start + len(scanned)
        self.calls.append(("jobs", (limit, page_token)))
        return JobPage(jobs, str(end) if end < len(self.ids) else "")


def _listed(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines()[1:]]


def test_jobs_shows_twenty_by_default_and_says_how_to_go_on() -> None:
    connector = FakeConnector(cluster=_PagedCoordinator(45))
    code, out, err = run_cli(["jobs", "--target", "c:1"], connector)
    assert code == 0 and _listed(out) == [f"j{i}" for i in range(44, 24, -1)]
    assert err == "more jobs: go on with --page-token 20 (same --state), or --all\n"
    code, out, err = run_cli(["jobs", "--target", "c:1", "--page-token", "40"], connector)
    assert code == 0 and _listed(out) == ["j4", "j3", "j2", "j1", "j0"] and err == ""


def test_jobs_limit_follows_short_filtered_pages_until_it_has_enough() -> None:
    fake = _PagedCoordinator(30, skipping=range(10, 25))
    code, out, err = run_cli(["jobs", "--target", "c:1", "--limit", "8"], FakeConnector(cluster=fake))
    assert code == 0 and _listed(out) == ["j29", "j28", "j27", "j26", "j25", "j9", "j8", "j7"]
    assert [arg for _, arg in fake.calls] == [(8, ""), (3, "8"), (3, "11"), (3, "14"), (3, "17"), (3, "20")]
    assert "--page-token 23" in err


def test_jobs_all_follows_every_token_to_the_end_within_a_bound() -> None:
    fake = _PagedCoordinator(2500)
    code, out, err = run_cli(["jobs", "--target", "c:1", "--all"], FakeConnector(cluster=fake))
    assert code == 0 and len(_listed(out)) == 2500 and err == ""
    assert [arg for _, arg in fake.calls] == [(1000, ""), (1000, "1000"), (1000, "2000")]
    code, out, err = run_cli(
        ["jobs", "--target", "c:1", "--all"],
        FakeConnector(cluster=_PagedCoordinator(2500)),
        listing=Listing(all_max=1500),
    )
    assert code == 0 and len(_listed(out)) == 1500
    assert err == "more jobs: go on with --page-token 1500 (same --state)\n"


def test_jobs_stops_after_a_bounded_number_of_requests_and_says_where() -> None:
    fake = _PagedCoordinator(100, skipping=range(0, 95))  # a rare state over a long history
    code, out, err = run_cli(
        ["jobs", "--target", "c:1", "--limit", "10"],
        FakeConnector(cluster=fake),
        listing=Listing(requests_max=4),
    )
    assert code == 0 and _listed(out) == [f"j{i}" for i in range(99, 94, -1)] and len(fake.calls) == 4
    assert "--page-token 25" in err


def test_jobs_refuses_a_token_that_does_not_move() -> None:
    class Stuck(_PagedCoordinator):
        def list_jobs(self, states: list[int], limit: int, page_token: str) -> JobPage:
            return JobPage((), "x")

    code, out, err = run_cli(
        ["jobs", "--target", "c:1", "--page-token", "x"], FakeConnector(cluster=Stuck(1))
    )
    assert code == EXIT_FAILED and out == "" and "same page token" in err


def test_jobs_limit_and_all_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        run_cli(
            ["jobs", "--target", "c:1", "--all", "--limit", "3"], FakeConnector(cluster=_PagedCoordinator(1))
        )


def test_get_with_an_output_downloads_the_video_there(tmp_path: Path) -> None:
    fake = _FakeCoordinator()
    out_path = tmp_path / "out.mp4"
    code, out, err = run_cli(
        ["get", "j5", "-o", str(out_path), "--target", "c:1"], FakeConnector(cluster=fake)
    )
    assert code == 0 and err == "" and out_path.read_bytes() == b"video"
    assert fake.calls == [("get", "j5"), ("download", ("j5", out_path))]
    assert out.splitlines()[-1] == f"wrote {out_path}: 5 bytes, sha256 {'ab' * 32}"


def test_a_failed_download_exits_1_with_the_servers_words(tmp_path: Path) -> None:
    class _Refusing(_FakeCoordinator):
        def download(self, job_id: str, dest: Path) -> Downloaded:
            raise CallError(grpc.StatusCode.FAILED_PRECONDITION, f"job {job_id} is QUEUED, not finished")

    argv = ["get", "j5", "-o", str(tmp_path / "o.mp4"), "--target", "c:1"]
    code, out, err = run_cli(argv, FakeConnector(cluster=_Refusing()))
    assert code == EXIT_FAILED and out == "" and not (tmp_path / "o.mp4").exists()
    assert err == "error: FAILED_PRECONDITION: job j5 is QUEUED, not finished\n"


def test_cluster_command_errors_exit_1_with_code_and_message() -> None:
    fake = _FakeCoordinator(CallError(grpc.StatusCode.FAILED_PRECONDITION, "job j1 already SUCCEEDED"))
    code, out, err = run_cli(["cancel", "j1", "--target", "c:1"], FakeConnector(cluster=fake))
    assert code == EXIT_FAILED and out == ""
    assert err == "error: FAILED_PRECONDITION: job j1 already SUCCEEDED\n"


def test_watch_shows_states_progress_and_a_pause_then_the_outcome() -> None:
    done = coordinator_pb2.JobEvent(job_id="j1", state=coordinator_pb2.JOB_STATE_SUCCEEDED)
    done.result.artifact_uri = "file:///s/o.mp4"
    events = [
        coordinator_pb2.JobEvent(
            job_id="j1", state=coordinator_pb2.JOB_STATE_ASSIGNED, node_id="n1", attempt=1
        ),
        coordinator_pb2.JobEvent(
            job_id="j1",
            state=coordinator_pb2.JOB_STATE_RUNNING,
            progress=progress(common_pb2.STAGE_DENOISE, 1, 2),
        ),
        done,
    ]
    code, out, err = run_cli(
        ["watch", "j1", "--target", "c:1"], FakeConnector(cluster=_FakeCoordinator(events=events))
    )
    assert code == 0 and out == "job j1 succeeded: file:///s/o.mp4\n"
    lines = err.splitlines()
    assert lines[0].startswith("assigned") and "on n1, attempt 1" in lines[0]
    assert lines[1].startswith("denoise") and "1/2" in lines[1]
    # The pause repeats the bar where it stood, with why: not an error.
    assert (
        lines[2].startswith("denoise")
        and "1/2" in lines[2]
        and "paused: c:1 answered UNAVAILABLE" in lines[2]
    )
    assert "error" not in err


def test_watch_of_a_failed_job_exits_1() -> None:
    failed = coordinator_pb2.JobEvent(
        job_id="j1", state=coordinator_pb2.JOB_STATE_FAILED, error="oom", error_code=8
    )
    code, _, err = run_cli(
        ["watch", "j1", "--target", "c:1"], FakeConnector(cluster=_FakeCoordinator(events=[failed]))
    )
    assert code == EXIT_FAILED and "error: RESOURCE_EXHAUSTED: job j1 failed: oom" in err


# --- straight answers, tables that fit, forms for scripts --------------------------------------------


def test_a_cluster_command_pointed_at_a_node_says_so() -> None:
    fake = _FakeCoordinator(CallError(grpc.StatusCode.UNIMPLEMENTED, "Method not found!", address="n:1"))
    connector = FakeConnector(cluster=fake, kinds={"n:1": "node"})
    code, out, err = run_cli(["status", "--target", "n:1"], connector)
    assert code == EXIT_USAGE and out == ""
    assert err == "error: n:1 is a node, not a coordinator: `i2v status` needs coordinator addresses\n"


def test_a_long_job_id_is_not_echoed_whole() -> None:
    job_id = "j" * 5000
    fake = _FakeCoordinator(CallError(grpc.StatusCode.NOT_FOUND, f"no job {job_id!r}; job ids are ..."))
    code, _, err = run_cli(["get", job_id, "--target", "c:1"], FakeConnector(cluster=fake))
    assert (
        code == EXIT_FAILED and len(err) < 200 and "…" in err and err.startswith("error: NOT_FOUND: no job")
    )


_LONG_URI = "file:///var/lib/i2v/artifacts/jobs/0123456789abcdef0123456789abcdef/out-1.mp4"


class _ListedCoordinator(_FakeCoordinator):
    """Two long-id jobs: one succeeded with a long file:// URI, one failed."""

    def list_jobs(self, states: list[int], limit: int, page_token: str) -> JobPage:
        done = _job(
            "0123456789abcdef0123456789abcdef",
            coordinator_pb2.JOB_STATE_SUCCEEDED,
            node_id="gpu-node-07",
            created_at=86400.0,
            finished_at=86410.0,
        )
        done.result.artifact_uri = _LONG_URI
        failed = _job(
            "fedcba9876543210fedcba9876543210",
            coordinator_pb2.JOB_STATE_FAILED,
            node_id="gpu-node-07",
            error="RESOURCE_EXHAUSTED: out of memory at decode, 1024x1024 x 16 frames needs 30 GiB",
        )
        return JobPage((done, failed), "")


def test_jobs_fit_80_columns_keeping_ids_whole_and_the_uri_recognisable() -> None:
    code, out, err = run_cli(["jobs", "--target", "c:1"], FakeConnector(cluster=_ListedCoordinator()))
    assert code == 0, err
    lines = out.splitlines()
    assert max(map(len, lines)) <= 80, lines
    assert lines[0].split()[:4] == ["JOB", "STATE", "TRY", "NODE"]
    done, failed = lines[1].split(), lines[2].split()
    assert done[:4] == ["0123456789abcdef0123456789abcdef", "succeeded", "1", "gpu-node-07"]
    assert done[-1].startswith("…") and done[-1].endswith("/out-1.mp4")
    assert failed[:2] == ["fedcba9876543210fedcba9876543210", "failed"] and lines[2].endswith("…")


def test_jobs_wide_is_every_column_unshortened_and_json_is_for_scripts() -> None:
    connector = FakeConnector(cluster=_ListedCoordinator())
    code, wide, _ = run_cli(["jobs", "--target", "c:1", "--wide"], connector)
    assert code == 0 and _LONG_URI in wide and "CREATED (UTC)" in wide and "TOOK" in wide
    code, out, _ = run_cli(["jobs", "--target", "c:1", "--json"], connector)
    listed = json.loads(out)
    assert code == 0 and [j["state"] for j in listed["items"]] == ["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"]
    assert listed["items"][0]["result"]["artifact_uri"] == _LONG_URI and listed["next_page_token"] == ""


def test_status_table_fits_80_columns_and_json_carries_everything() -> None:
    code, out, _ = run_cli(["status", "--target", "c:1"], FakeConnector(cluster=_FakeCoordinator()))
    lines = out.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("NODE")) :]  # after the summary
    assert code == 0 and table[0].split()[:3] == ["NODE", "ADDRESS", "TIER"]
    assert all(len(line) <= 80 for line in table[:3]) and table[2].split()[0] == "n2"
    assert table[-1] == "n2: SET ASIDE after 3 failed: INTERNAL: disk"
    code, out, _ = run_cli(["status", "--target", "c:1", "--json"], FakeConnector(cluster=_FakeCoordinator()))
    status = json.loads(out)
    assert (
        code == 0 and status["leader_id"] == "c1" and [n["node_id"] for n in status["nodes"]] == ["n1", "n2"]
    )


class _EndedCoordinator(_FakeCoordinator):
    def __init__(self, state: int) -> None:
        super().__init__()
        self.state = state

    def get(self, job_id: str) -> coordinator_pb2.Job:
        return self._answer("get", job_id, _job(job_id, self.state))  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("state", "says"),
    [
        pytest.param(
            coordinator_pb2.JOB_STATE_FAILED, "error: job j1 is failed: it has no video to write", id="failed"
        ),
        pytest.param(
            coordinator_pb2.JOB_STATE_CANCELLED,
            "error: job j1 is cancelled: it has no video to write",
            id="cancelled",
        ),
    ],
)
def test_get_says_why_it_cannot_write_a_video(state: int, says: str, tmp_path: Path) -> None:
    fake = _EndedCoordinator(state)
    out_path = tmp_path / "clip.mp4"
    code, _, err = run_cli(["get", "j1", "-o", str(out_path), "--target", "c:1"], FakeConnector(cluster=fake))
    assert code == EXIT_FAILED and err == says + "\n" and not out_path.exists()
    assert fake.calls == [("get", "j1")]  # no download asked for


def test_get_checks_the_output_before_asking(tmp_path: Path) -> None:
    fake = _FakeCoordinator()
    code, _, err = run_cli(["get", "j1", "-o", str(tmp_path), "--target", "c:1"], FakeConnector(cluster=fake))
    assert code == EXIT_USAGE and "is a directory" in err and fake.calls == []


def test_watch_passes_its_timeout_and_a_timeout_is_an_error_naming_where_the_job_stood() -> None:
    class _TimingOut(_FakeCoordinator):
        def watch(
            self, job_id: str, on_event: object, *, timeout: float | None = None, on_pause: object
        ) -> coordinator_pb2.JobEvent:
            self.calls.append(("watch", timeout))
            raise CallError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"watch {job_id}: timed out after 2 s while it was queued; the job goes on",
            )

    fake = _TimingOut()
    code, _, err = run_cli(["watch", "j1", "--timeout", "2", "--target", "c:1"], FakeConnector(cluster=fake))
    assert code == EXIT_FAILED and fake.calls == [("watch", 2.0)]
    assert err.splitlines()[-1] == (
        "error: DEADLINE_EXCEEDED: watch j1: timed out after 2 s while it was queued; the job goes on"
    )
