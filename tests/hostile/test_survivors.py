"""After the barrage (this module runs last: pytest takes the files in name order): every process is
alive and SERVING, none answered INTERNAL or UNKNOWN by its own count either, the sentinel jobs
submitted before the barrage finished with their videos, and the logs grew by a bounded amount."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from i2v_contract.limits import DEFAULT_LIMITS as L
from i2v_contract.wire import common_pb2, node_pb2
from tests.hostile import strategies as hs
from tests.hostile.conftest import EXAMPLES
from tests.hostile.servers import HostileCluster, serving
from tests.hostile.tally import Tally
from tests.media import png

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


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(
            {"prompt": "\U0001f600" * L.max_prompt_chars, "seed": hs.UINT64_MAX}, id="longest-emoji-prompt"
        ),
        pytest.param(
            {"prompt": "\u202e\u200d\x1b[2J\r\n\t\ufeff", "negative_prompt": "\u0301" * 500}, id="controls"
        ),
        pytest.param(
            {"guidance_scale": L.min_guidance, "frames": 1, "steps": 1, "fps": L.max_fps}, id="least"
        ),
        pytest.param({"guidance_scale": L.max_guidance, "width": 64, "height": 256, "seed": 0}, id="most"),
    ],
)
def test_extreme_valid_requests_run_to_the_end(
    cluster: HostileCluster, tally: Tally, fields: dict[str, object]
) -> None:
    """Values at the edges of what is valid reach the pipeline (once the sentinels left the node free)."""
    cluster.wait_sentinels()
    request = common_pb2.GenerationRequest(image=png(16, 16), width=64, height=64, frames=2, steps=2)
    for name, value in fields.items():
        setattr(request, name, value)
    events = list(cluster.node_stub().Generate(node_pb2.NodeGenerateRequest(request=request), timeout=120))
    assert any(e.HasField("result") or e.HasField("chunk") for e in events)
    tally.ok("node", "extreme-valid")


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
