"""What `i2v up` and `i2v down` print."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from i2v_client.local import report, state
from i2v_client.local.plan import Host, Options, Plan, plan
from i2v_client.local.report import FirstDone
from i2v_client.local.state import Record, Started

CWD = Path("/home/user/project")
HOST = Host(etcd="/usr/bin/etcd", bin_dir=Path("/venv/bin"), cpus=2, prometheus="/usr/bin/prometheus")


def cluster(detached: bool) -> tuple[Plan, Record]:
    p = plan(Options(CWD / ".i2v"), HOST, itertools.count(41000).__next__)
    record = Record(state.me(), detached, timings={"ready_s": 12.34})
    record.procs = [
        Started(x.name, x.kind, 100 + i, 1, x.addr, x.metrics, x.detail, x.log) for i, x in enumerate(p.procs)
    ]
    return p, record


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        pytest.param(CWD / ".i2v" / "first.mp4", ".i2v/first.mp4", id="inside"),
        pytest.param(Path("/tmp/i2v"), "/tmp/i2v", id="outside"),
        pytest.param(CWD, ".", id="the-directory-itself"),
    ],
)
def test_paths_are_shown_relative_when_inside(path: Path, shown: str) -> None:
    assert report.shown(path, CWD) == shown


@pytest.mark.parametrize(
    ("state_dir", "flags"),
    [
        pytest.param(CWD / ".i2v", "", id="default"),
        pytest.param(CWD / "my state", " --state-dir 'my state'", id="quoted"),
        pytest.param(Path("/srv/i2v"), " --state-dir /srv/i2v", id="absolute"),
    ],
)
def test_later_commands_get_the_state_dir_only_when_it_is_not_the_default(
    state_dir: Path, flags: str
) -> None:
    assert report.i2v_flags(state_dir, CWD / ".i2v", CWD) == flags


@pytest.mark.parametrize(
    ("detached", "ending"),
    [
        pytest.param(False, "Ctrl-C stops it (nodes drain first)", id="foreground"),
        pytest.param(
            True, "running in the background: .venv/bin/i2v down --state-dir s stops it", id="detached"
        ),
    ],
)
def test_the_ready_report_names_every_address_and_the_next_commands(detached: bool, ending: str) -> None:
    p, record = cluster(detached)
    first = FirstDone(".i2v/first.mp4", 2.5, "n1-10g", "lt12")
    text = report.ready(
        p, record, first, state_shown=".i2v", i2v=".venv/bin/i2v", flags=" --state-dir s", leader="c1"
    )
    targets = ",".join(p.targets)
    assert text.startswith("local cluster up in 12.3 s (state dir .i2v); ")
    assert (
        "first video: .i2v/first.mp4 (64x64, 8 frames, 10 steps) made in 2.5 s on node n1-10g (tier lt12)"
        in text
    )
    for proc in p.procs:
        assert proc.addr in text and (proc.metrics in text or proc.kind == "prometheus")
    assert "coordinator (leader)" in text and f"{p.prometheus_url}/targets" in text
    assert f"  web page: {p.gateway_url}/  (OpenAI-compatible videos API under {p.gateway_url}/v1" in text
    assert f"  .venv/bin/i2v status --target {targets}\n" in text
    size = "--width 64 --height 64 --frames 8 --steps 10 --fps 8"
    generate = (
        f"  .venv/bin/i2v generate .i2v/sample.png --prompt 'a red fox running' {size} --target {targets}"
    )
    assert f"{generate} -o out.mp4\n" in text
    assert "  .venv/bin/i2v down --state-dir s\n" in text
    assert text.rstrip().endswith(ending)


def test_a_second_up_is_told_what_runs_and_how_to_stop_it() -> None:
    _, record = cluster(True)
    me = state.me()
    record.procs[0] = Started("etcd", "etcd", me.pid, me.start, "127.0.0.1:1")  # one still alive
    text = report.already_running(record, ".i2v", "i2v", "")
    assert "already running from .i2v (still starting): 1 of 8 processes alive (etcd)" in text
    assert text.endswith("stop it with: i2v down\n")


def test_stopped_lists_each_process_once_in_stop_order() -> None:
    c1, etcd = Started("c1", "coordinator", 1, 1), Started("etcd", "etcd", 2, 2)
    assert report.stopped([(c1, "stopped in 0.4 s"), (etcd, "was not running")]) == (
        "  c1           coordinator  stopped in 0.4 s\n  etcd         etcd         was not running\n"
    )
