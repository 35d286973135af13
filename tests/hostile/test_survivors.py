"""After the barrage (this module runs last: pytest takes the files in name order): every process is
alive and SERVING, none answered INTERNAL or UNKNOWN by its own count either, the sentinel jobs
submitted before the barrage finished with their videos, and the logs grew by a bounded amount."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.hostile.conftest import EXAMPLES
from tests.hostile.servers import HostileCluster, serving
from tests.hostile.tally import Tally

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

LOG_BYTES_PER_REQUEST = 400  # one short line per refusal, at most, on average
LOG_BYTES_BASE = 256 * 1024  # start-up, the sentinels, elections
LINE_MAX_CHARS = 4000  # no line echoes a megabyte of caller input
FULL_SUITE = {
    "node-generate",
    "node-cancel",
    "submit",
    "generate",
    "Get",
    "Download",
    "ListJobs",
    "raw-bytes",
}


def handled(metrics_port: int) -> dict[tuple[str, str], float]:
    """i2v_rpc_handled_total by (method, code), from the server's own /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "i2v_rpc_handled_total" and s.value:
                key = (s.labels["method"], s.labels["code"])
                counts[key] = counts.get(key, 0.0) + s.value
    return counts


def test_every_server_is_alive_and_serving(cluster: HostileCluster) -> None:
    for name, proc in cluster.processes().items():
        assert proc.proc.poll() is None, f"{name} exited:\n{proc.log()}"
    assert all(serving(chan) for chan in (*cluster.channels.values(), cluster.node_channel))


def test_no_server_counted_internal_or_unknown(cluster: HostileCluster) -> None:
    for name, proc in cluster.processes().items():
        counts = handled(proc.metrics_port)
        bad = {key: n for key, n in counts.items() if key[1] in ("INTERNAL", "UNKNOWN")}
        assert not bad, f"{name} answered {bad}"


def test_the_sentinel_jobs_finished_untouched(cluster: HostileCluster) -> None:
    jobs = cluster.wait_sentinels()
    for job in jobs:
        assert job.attempt == 1, f"{job.job_id} was retried: {job.error}"
        assert job.result.video_size > 0 and len(job.result.sha256) == 64


def test_logs_stay_bounded(cluster: HostileCluster, tally: Tally) -> None:
    before: dict[str, int] = cluster.sizes_before  # type: ignore[attr-defined]
    grown = {name: size - before[name] for name, size in cluster.log_sizes().items()}
    bound = LOG_BYTES_BASE + LOG_BYTES_PER_REQUEST * tally.total
    tally.notes["log bytes grown"] = grown
    assert sum(grown.values()) <= bound, f"logs grew {grown} for {tally.total} requests (bound {bound})"
    for name, proc in cluster.processes().items():
        longest = max(len(line) for line in proc.log_path.read_text(errors="replace").splitlines())
        assert longest <= LINE_MAX_CHARS, f"{name} logged a {longest}-character line"
        assert "Traceback" not in proc.log_path.read_text(errors="replace"), f"{name}:\n{proc.log()}"


def test_the_barrage_was_at_least_a_thousand_requests(tally: Tally) -> None:
    if not tally.tests >= FULL_SUITE or EXAMPLES < 200:
        pytest.skip(f"part of the suite ran ({sorted(tally.tests)}, {EXAMPLES} examples per test)")
    assert tally.total >= 1000, tally.lines()
    print("\n".join(tally.lines()))
