"""The HTTP gateway against a real cluster (etcd, two coordinators, one tiny node), spoken to by
OpenAI's own Python SDK and by curl: create with an image, retrieve, list, download (whole and by
Range), cancel, errors in OpenAI's shape, live progress over SSE resumed with Last-Event-ID,
metrics, readiness following the leader through a failover, and SIGTERM ending open streams
cleanly."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.etcd_cluster import EtcdCluster
from tests.integration.gateway_process import GatewayCluster, GatewayProcess, gateway_cluster
from tests.media import decode, png

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
    # the SDK marks its videos calls deprecated (a notice about OpenAI's own service, not the API shape)
    pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning"),
]
TINY = {"fps": 6, "steps": 2, "seed": 5}  # with size 64x72 and seconds 0.5: 3 frames


@pytest.fixture(scope="module")
def cluster(etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayCluster]:
    workdir = tmp_path_factory.mktemp("gateway")
    cache = tmp_path_factory.getbasetemp() / "i2v-cache"  # shared with the other node tests
    with gateway_cluster(etcd.endpoints, workdir, cache) as made:
        yield made


@pytest.fixture(scope="module")
def client(cluster: GatewayCluster) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{cluster.url}/v1", api_key="unused-without-tokens", max_retries=0)


def wait_done(client: openai.OpenAI, video_id: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        video = client.videos.retrieve(video_id)
        if video.status in ("completed", "failed"):
            return video
        time.sleep(0.1)
    raise AssertionError(f"video {video_id} not done within {timeout}s")


@pytest.fixture(scope="module")
def made(client: openai.OpenAI) -> Any:
    video = client.videos.create(
        prompt="a gradient", input_reference=("in.png", png(), "image/png"), size="64x72",  # type: ignore[arg-type]
        seconds="0.5", extra_body=TINY,  # type: ignore[arg-type]
    )  # fmt: skip
    assert video.object == "video" and video.status in ("queued", "in_progress")
    assert video.size == "64x72" and video.seconds == "0.5" and video.prompt == "a gradient"
    return wait_done(client, video.id)


def test_the_openai_sdk_makes_retrieves_lists_and_downloads_a_video(client: openai.OpenAI, made: Any) -> None:
    assert made.status == "completed" and made.progress == 100 and made.error is None
    assert made.completed_at >= made.created_at
    extra = made.model_extra or {}
    assert (extra["frames"], extra["fps"], extra["steps"], extra["seed"]) == (3, 6, 2, 5)
    content = client.videos.download_content(made.id)
    assert decode(content.content) == (3, 6.0, 64, 72)
    listed = client.videos.list(limit=100)
    assert made.id in [v.id for v in listed.data]


def test_errors_come_in_openai_shape_with_the_right_status(client: openai.OpenAI, made: Any) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.videos.create(prompt="x", input_reference=("in.png", png(), "image/png"), size="65x64")  # type: ignore[arg-type]
    assert bad.value.param == "size" and "multiple of 8" in bad.value.message
    with pytest.raises(openai.BadRequestError) as unknown:
        client.videos.create(
            prompt="x", input_reference=("in.png", png(), "image/png"), extra_body={"stepz": 2}
        )  # type: ignore[arg-type]
    assert unknown.value.param == "stepz"
    with pytest.raises(openai.NotFoundError) as missing:
        client.videos.retrieve("no-such-video")
    assert missing.value.code == "job_not_found"
    with pytest.raises(openai.ConflictError):
        client.videos.delete(made.id)  # it already completed: nothing to cancel


def test_delete_cancels_a_queued_video(client: openai.OpenAI) -> None:
    image = ("in.png", png(), "image/png")
    busy = client.videos.create(
        prompt="long", input_reference=image, size="64x64", extra_body={"frames": 8, "steps": 40}
    )  # type: ignore[arg-type]
    queued = client.videos.create(
        prompt="queued", input_reference=image, size="64x64", extra_body={"frames": 2, "steps": 2}
    )  # type: ignore[arg-type]
    deleted = client.videos.delete(queued.id)
    assert deleted.id == queued.id and deleted.deleted
    gone = wait_done(client, queued.id)
    assert gone.status == "failed" and gone.error is not None and gone.error.code == "cancelled"
    client.videos.delete(busy.id)


def curl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout)


def needs_curl() -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (scripts/setup.sh installs it)")


def test_curl_creates_with_multipart_and_downloads_by_range(cluster: GatewayCluster, tmp_path: Path) -> None:
    needs_curl()
    (tmp_path / "in.png").write_bytes(png())
    made = curl(
        "-F", f"input_reference=@{tmp_path / 'in.png'};type=image/png", "-F", "prompt=curl",
        "-F", "size=64x72", "-F", "frames=3", "-F", "fps=6", "-F", "steps=2", f"{cluster.url}/v1/videos",
    )  # fmt: skip
    video = json.loads(made.stdout)
    assert video["status"] in ("queued", "in_progress"), made.stdout
    client = openai.OpenAI(base_url=f"{cluster.url}/v1", api_key="x")
    wait_done(client, video["id"])
    url = f"{cluster.url}/v1/videos/{video['id']}/content"
    whole = curl(url).stdout
    part = curl("-D", str(tmp_path / "h"), "-r", "10-109", url)
    head = (tmp_path / "h").read_text().lower()
    assert head.startswith("http/1.1 206") and f"content-range: bytes 10-109/{len(whole)}" in head
    assert part.stdout == whole[10:110] and 'etag: "' in head
    tail = curl("-r", "-50", url).stdout
    assert tail == whole[-50:]
    beyond = curl("-o", "/dev/null", "-w", "%{http_code}", "-r", f"{len(whole)}-", url)
    assert beyond.stdout == b"416"


def sse_events(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name in ("event", "id", "data"):
                fields[name] = json.loads(value) if name == "data" else value
        if "event" in fields:
            events.append(fields)
    return events


def test_sse_streams_progress_and_resumes_after_last_event_id(cluster: GatewayCluster) -> None:
    needs_curl()
    client = openai.OpenAI(base_url=f"{cluster.url}/v1", api_key="x")
    video = client.videos.create(
        prompt="sse",
        input_reference=("in.png", png(), "image/png"),
        size="64x64",
        extra_body={"frames": 4, "steps": 12},
    )  # type: ignore[arg-type]
    url = f"{cluster.url}/v1/videos/{video.id}/events"
    first = subprocess.Popen(["curl", "-sSN", url], stdout=subprocess.PIPE)
    assert first.stdout is not None
    seen = b""
    while b"event: progress" not in seen or not seen.endswith(b"\n\n"):
        chunk = first.stdout.read1(65536)
        assert chunk, seen
        seen += chunk
    first.terminate()
    first.wait()
    before = [e for e in sse_events(seen.decode()) if "id" in e]
    last = before[-1]["id"]
    resumed = curl("-N", "-H", f"Last-Event-ID: {last}", url).stdout.decode()
    after = sse_events(resumed)
    ids = [tuple(int(x) for x in e["id"].split(".")) for e in after if "id" in e]
    assert ids and all(i > tuple(int(x) for x in last.split(".")) for i in ids)
    assert after[-1]["event"] == "done" and after[-1]["data"]["status"] == "completed"
    steps = [
        e["data"] for e in before + after if e["event"] == "progress" and e["data"]["stage"] == "denoise"
    ]
    assert steps and steps[-1]["total_steps"] == 12 and steps[-1]["node_id"] == cluster.node_id
    assert any(s["rate"] for s in steps) and any(s["eta_s"] is not None for s in steps)


def test_metrics_count_by_route_template_without_ids(cluster: GatewayCluster, made: Any) -> None:
    with urllib.request.urlopen(f"{cluster.url}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'route="/v1/videos/{video_id}",status="200"' in text
    assert 'route="/v1/videos",status="200"' in text
    assert made.id not in text


def readiness(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_readiness_names_the_leader_and_follows_a_failover(cluster: GatewayCluster) -> None:
    old, _, _ = cluster.group.wait_leader(30)
    assert readiness(cluster.url) == (200, {"status": "ready", "leader": old.address})
    old.pause()  # frozen: its health stays silent, a standby takes over once its lease lapses
    try:
        new, _, _ = cluster.group.wait_leader(30, exclude=old)
        deadline = time.monotonic() + 15
        while (answer := readiness(cluster.url)) != (200, {"status": "ready", "leader": new.address}):
            assert time.monotonic() < deadline, answer
            time.sleep(0.2)
    finally:
        old.resume()


def test_sigterm_ends_open_streams_cleanly(cluster: GatewayCluster) -> None:
    needs_curl()
    spare = GatewayProcess(cluster.targets, cluster.workdir / "spare.log")
    spare.wait_ready()
    client = openai.OpenAI(base_url=f"{spare.url}/v1", api_key="x")
    video = client.videos.create(
        prompt="drain",
        input_reference=("in.png", png(), "image/png"),
        size="64x64",
        extra_body={"frames": 8, "steps": 60},
    )  # type: ignore[arg-type]
    stream = subprocess.Popen(
        ["curl", "-sSN", f"{spare.url}/v1/videos/{video.id}/events"], stdout=subprocess.PIPE
    )
    assert stream.stdout is not None
    assert b"event: open" in stream.stdout.read1(65536)
    assert spare.stop() == 0
    rest = stream.stdout.read().decode()
    assert stream.wait(10) == 0, rest  # the stream ended, not broke
    assert "event: shutdown" in rest
    client = openai.OpenAI(base_url=f"{cluster.url}/v1", api_key="x")
    client.videos.delete(video.id)
