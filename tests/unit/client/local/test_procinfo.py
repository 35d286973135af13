"""Reading /proc: a pid names one process only together with its start time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from i2v_client.local import procinfo
from i2v_client.local.procinfo import parse_rss, parse_stat

# /proc/PID/stat of a process whose name holds a space and a parenthesis
STAT = "4242 (i2v node) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 123 45 0 0 20 0 5 0 98765 1000 200 0 0"


def test_stat_fields_are_counted_from_the_last_parenthesis() -> None:
    stat = parse_stat(STAT)
    assert (stat.state, stat.utime, stat.stime, stat.start) == ("S", 123, 45, 98765)
    assert stat.cpu_ticks == 168 and stat.running


@pytest.mark.parametrize(
    ("state", "running"),
    [
        pytest.param("R", True, id="running"),
        pytest.param("Z", False, id="zombie"),
        pytest.param("X", False, id="dead"),
    ],
)
def test_a_zombie_is_not_running(state: str, running: bool) -> None:
    assert parse_stat(STAT.replace(" S ", f" {state} ", 1)).running is running


@pytest.mark.parametrize(
    ("status", "rss"),
    [
        pytest.param("Name:\tpython\nVmRSS:\t  2048 kB\nThreads:\t3\n", 2048 * 1024, id="vmrss"),
        pytest.param("Name:\tzombie\nState:\tZ (zombie)\n", 0, id="zombie-has-none"),
    ],
)
def test_rss(status: str, rss: int) -> None:
    assert parse_rss(status) == rss


def test_our_own_process_is_recognised_and_a_wrong_start_time_is_not() -> None:
    stat = procinfo.read_stat(os.getpid())
    assert stat is not None and procinfo.is_ours(os.getpid(), stat.start)
    assert not procinfo.is_ours(os.getpid(), stat.start + 1)  # the pid was reused by another process
    assert procinfo.rss_bytes(os.getpid()) > 1024 * 1024


def test_an_exited_child_is_not_ours_any_more(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = procinfo.read_stat(child.pid)
    assert stat is not None
    child.wait()
    assert not procinfo.is_ours(child.pid, stat.start) and procinfo.read_stat(child.pid) is None
    assert procinfo.read_stat(1, tmp_path) is None and procinfo.rss_bytes(1, tmp_path) == 0
