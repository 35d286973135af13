"""A real `i2v-node --model tiny` over gRPC: health, reflection, generate, refusals, cancel, OOM, drain."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from i2v_client.reassembly import Reassembly
from i2v_common.rpc import node_pb2_grpc
from i2v_contract.limits import DEFAULT_LIMITS
from i2v_contract.wire import common_pb2, node_pb2
from tests.integration.node_process import NodeProcess, metric_value
from tests.media import decode, png

pytestmark = pytest.mark.integration

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
LONG_STEPS = min(120, DEFAULT_LIMITS.max_steps)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache per session: the tiny pipeline is built once, by the first node."""
    path = tmp_path_factory.getbasetemp() / "i2v-cache"
    path.mkdir(exist_ok=True)
    return path


def start_node(cache_dir: Path, tmp: Path, name: str, *extra: str) -> NodeProcess:
    return NodeProcess(cache_dir, tmp / f"{name}.log", *extra, node_id=name)


@pytest.fixture(scope="module")
def node(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(cache_dir, tmp_path_factory.mktemp("node"), "n1", "--simulate-free-vram", "6GiB")
    try:
        proc.seen_health = proc.wait_health(SERVING)  # type: ignore[attr-defined]
        yield proc
    finally:
        proc.stop()


def request(job_id: str = "", **overrides: Any) -> node_pb2.NodeGenerateRequest:
    fields: dict[str, Any] = {
        "image": png(),
        "prompt": "a gradient drifting",
        "width": 64,
        "height": 64,
        "frames": 8,
        "fps": 8,
        "steps": 10,
        "seed": 3,
    }
    fields.update(overrides)
    attempt = 1 if job_id else 0  # a job id comes with its attempt, as a coordinator sends it
    return node_pb2.NodeGenerateRequest(
        request=common_pb2.GenerationRequest(**fields), job_id=job_id, attempt=attempt
    )


def stub(node: NodeProcess) -> node_pb2_grpc.NodeStub:
    return node_pb2_grpc.NodeStub(node.channel)


def run(node: NodeProcess, req: node_pb2.NodeGenerateRequest, timeout: float = 120) -> tuple[list[Any], Any]:
    """(progress events, result with the video and frames its chunks carried) of a successful call."""
    progress, result, parts = [], None, Reassembly()
    for event in stub(node).Generate(req, timeout=timeout):
        if event.HasField("progress"):
            progress.append(event.progress)
        elif event.HasField("chunk"):
            assert event.ByteSize() <= 1024 * 1024 + 64  # never near gRPC's default 4 MiB
            parts.add(event.chunk)
        elif event.HasField("result"):  # a heartbeat is neither
            result = parts.into(event.result)
    assert result is not None
    return progress, result


def error_of(node: NodeProcess, req: node_pb2.NodeGenerateRequest, timeout: float = 60) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as exc:
        for _ in stub(node).Generate(req, timeout=timeout):
            pass
    return exc.value


def status(node: NodeProcess) -> node_pb2.NodeStatus:
    result: node_pb2.NodeStatus = stub(node).Status(node_pb2.NodeStatusRequest(), timeout=10)
    return result


def wait_idle(node: NodeProcess, timeout: float = 30) -> float:
    """Seconds until the node reports not busy."""
    start = time.monotonic()
    while status(node).busy:
        assert time.monotonic() - start < timeout, "node stayed busy"
        time.sleep(0.02)
    return time.monotonic() - start


def test_health_goes_from_not_serving_to_serving(node: NodeProcess) -> None:
    seen = [s for s in node.seen_health if s is not None]  # type: ignore[attr-defined]
    assert seen[0] == NOT_SERVING, f"first answer should be NOT_SERVING while loading, saw {seen}"
    assert seen[-1] == SERVING
    assert node.health("i2v.v1.Node") == SERVING


def test_reflection_lists_services(node: NodeProcess) -> None:
    stub_ = reflection_pb2_grpc.ServerReflectionStub(node.channel)
    responses = stub_.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"i2v.v1.Node", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_generate_returns_exact_mp4(node: NodeProcess) -> None:
    progress, result = run(node, request(frames=8, fps=8, steps=10))
    denoise = [p for p in progress if p.stage == common_pb2.STAGE_DENOISE and p.step > 0]
    assert [p.step for p in denoise] == list(range(1, 11))
    assert all(p.total_steps == 10 for p in denoise)
    stages = [p.stage for p in progress]
    assert stages.index(common_pb2.STAGE_ENCODE_PROMPT) < stages.index(common_pb2.STAGE_DENOISE)
    assert stages[-1] == common_pb2.STAGE_ENCODE_VIDEO
    assert result.mime_type == "video/mp4"
    assert (result.frames, result.fps, result.width, result.height, result.steps, result.seed) == (
        8,
        8,
        64,
        64,
        10,
        3,
    )
    assert decode(result.video) == (8, 8.0, 64, 64)
    assert result.profile and result.metadata["tier"] == "lt12"
    assert result.peak_bytes > 0 and result.timings.total_s > 0


def test_same_seed_same_video(node: NodeProcess) -> None:
    _, a = run(node, request(seed=11, steps=3))
    _, b = run(node, request(seed=11, steps=3))
    assert a.sha256 == b.sha256


BAD = [
    ("empty image", {"image": b""}, "image"),
    ("corrupt image", {"image": png()[:60]}, "image"),
    ("text bytes", {"image": b"just some text, not a picture"}, "image"),
    ("width not multiple of 8", {"width": 60}, "width"),
    ("frames out of range", {"frames": 100_000}, "frames"),
    ("steps out of range", {"steps": 100_000}, "steps"),
    ("fps out of range", {"fps": 100_000}, "fps"),
    ("guidance out of range", {"guidance_scale": -1.0}, "guidance"),
    ("huge prompt", {"prompt": "x" * 200_000}, "prompt"),
    ("unknown model", {"model": "someone/else"}, "model"),
]


@pytest.mark.parametrize(("case", "overrides", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_then_still_serving(
    node: NodeProcess, case: str, overrides: dict[str, Any], field: str
) -> None:
    err: Any = error_of(node, request(**overrides))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, case
    assert field in err.details()
    assert node.health() == SERVING and not status(node).busy


def test_decompression_bomb_is_refused(node: NodeProcess) -> None:
    from tests.media import png_claiming

    err: Any = error_of(node, request(image=png_claiming(80_000, 80_000)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "image" in err.details()
    _, result = run(node, request(steps=2))
    assert result.frames == 8


def first_denoise_step(call: Any) -> int:
    for event in call:
        if (
            event.HasField("progress")
            and event.progress.stage == common_pb2.STAGE_DENOISE
            and event.progress.step >= 2
        ):
            return int(event.progress.step)
    raise AssertionError("no denoise progress")


def test_second_concurrent_generate_is_busy(node: NodeProcess) -> None:
    call: Any = stub(node).Generate(request(job_id="long-1", steps=LONG_STEPS), timeout=120)
    try:
        first_denoise_step(call)
        start = time.monotonic()
        err: Any = error_of(node, request())
        assert time.monotonic() - start < 2.0
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.details() == "node busy with job long-1; retry later or use another node"
    finally:
        call.cancel()
    wait_idle(node)


def steps_done(node: NodeProcess) -> float:
    return metric_value(node.metrics(), "i2v_step_duration_seconds_count", tier="lt12")


def test_client_cancel_stops_within_a_step_and_frees_node(node: NodeProcess) -> None:
    before = steps_done(node)
    call: Any = stub(node).Generate(request(steps=LONG_STEPS), timeout=120)
    seen = first_denoise_step(call)
    call.cancel()
    assert wait_idle(node) < 10
    ran = steps_done(node) - before
    # the step in flight when the cancel arrived, plus at most one more
    assert seen <= ran <= seen + 2, (seen, ran)
    assert metric_value(node.metrics(), "i2v_jobs_total", outcome="cancelled") >= 1
    _, result = run(node, request(steps=2))
    assert result.frames == 8


def test_cancel_rpc_stops_the_job(node: NodeProcess) -> None:
    call: Any = stub(node).Generate(request(job_id="to-cancel", steps=LONG_STEPS), timeout=120)
    first_denoise_step(call)
    assert stub(node).Cancel(node_pb2.NodeCancelRequest(job_id="to-cancel"), timeout=10).cancelled
    with pytest.raises(grpc.RpcError) as exc:
        for _ in call:
            pass
    err: Any = exc.value
    assert err.code() == grpc.StatusCode.CANCELLED
    assert "to-cancel" in err.details()
    wait_idle(node)


def test_deadline_exceeded_frees_node(node: NodeProcess) -> None:
    before = metric_value(node.metrics(), "i2v_jobs_total", outcome="deadline_exceeded")
    err: Any = error_of(node, request(steps=LONG_STEPS), timeout=2.5)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_idle(node) < 10
    assert metric_value(node.metrics(), "i2v_jobs_total", outcome="deadline_exceeded") == before + 1
    _, result = run(node, request(steps=2))
    assert result.frames == 8


def test_metrics_move_after_a_job(node: NodeProcess) -> None:
    before = node.metrics()
    run(node, request(steps=4))
    after = node.metrics()
    key = {"resolution": "512p", "tier": "lt12"}
    assert (
        metric_value(after, "i2v_jobs_total", outcome="succeeded")
        == metric_value(before, "i2v_jobs_total", outcome="succeeded") + 1
    )
    assert (
        metric_value(after, "i2v_generation_duration_seconds_count", **key)
        == metric_value(before, "i2v_generation_duration_seconds_count", **key) + 1
    )
    assert (
        metric_value(after, "i2v_step_duration_seconds_count", tier="lt12")
        >= metric_value(before, "i2v_step_duration_seconds_count", tier="lt12") + 4
    )
    assert metric_value(after, "i2v_job_peak_bytes_count") >= 1
    assert metric_value(after, "i2v_node_tier", tier="lt12") == 1
    assert metric_value(after, "i2v_gpu_memory_free_bytes", gpu="simulated") == 6 * 1024**3
    assert metric_value(after, "i2v_model_load_seconds") > 0
    assert metric_value(after, "i2v_node_busy") == 0
    assert "i2v_oom_total" in after and "i2v_degradations_total" in after


def test_free_vram_drop_changes_tier(cache_dir: Path, tmp_path: Path) -> None:
    vram = tmp_path / "free_vram"
    vram.write_text("20GiB")
    proc = start_node(cache_dir, tmp_path, "n-vram", "--simulate-free-vram-file", str(vram))
    try:
        proc.wait_serving()
        assert status(proc).tier == common_pb2.TIER_16_24
        vram.write_text("6GiB")
        assert status(proc).tier == common_pb2.TIER_LT12
        _, result = run(proc, request(steps=2))
        assert result.metadata["tier"] == "lt12"
        assert metric_value(proc.metrics(), "i2v_node_tier", tier="lt12") == 1
    finally:
        assert proc.stop() == 0


# --- OOM injection ---------------------------------------------------------------------------
# One node, one plan: a 64x64 job hits OOM once in each stage, each time on the profile then in use
# (fast -> chunked -> sliced -> tiled), and succeeds on the next one. Jobs of 128x128 and more also
# fail at denoise on every profile: exhausted without allow_degrade, a smaller retry with it.
OOM_PLAN = "encode_prompt:fast;encode_image:chunked;denoise:sliced;decode:tiled;denoise:*@128x128"


@pytest.fixture(scope="module")
def oom_node(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(cache_dir, tmp_path_factory.mktemp("oom"), "n-oom", "--fault-inject-oom", OOM_PLAN)
    try:
        proc.wait_serving()
        yield proc
    finally:
        assert proc.stop() == 0


def test_oom_at_each_stage_is_retried_with_leaner_profile(oom_node: NodeProcess) -> None:
    progress, result = run(oom_node, request(steps=3))
    retries = [p for p in progress if p.stage == common_pb2.STAGE_RETRY]
    assert len(retries) == 4, [p.message for p in retries]
    assert result.metadata["first_profile"] == "fast"
    assert result.profile == "group_offload_block", "the result names the profile that succeeded"
    assert decode(result.video)[0] == 8
    text = oom_node.metrics()
    for stage in ("encode_prompt", "encode_image", "denoise", "decode"):
        assert metric_value(text, "i2v_oom_total", stage=stage, tier="cpu") >= 1, stage
    assert metric_value(text, "i2v_jobs_total", outcome="succeeded") >= 1


def test_oom_at_every_profile_is_resource_exhausted_and_node_serves_on(oom_node: NodeProcess) -> None:
    err: Any = error_of(oom_node, request(width=128, height=128, steps=2))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "denoise" in err.details()
    assert not status(oom_node).busy and oom_node.health() == SERVING
    assert metric_value(oom_node.metrics(), "i2v_jobs_total", outcome="oom") >= 1
    _, result = run(oom_node, request(steps=2))
    assert result.frames == 8


def test_oom_with_allow_degrade_returns_smaller_video(oom_node: NodeProcess) -> None:
    _, result = run(oom_node, request(width=128, height=128, steps=2, allow_degrade=True))
    assert result.degradations, "the result lists the degradation applied"
    assert result.width * result.height < 128 * 128
    assert decode(result.video)[2:] == (result.width, result.height)
    assert metric_value(oom_node.metrics(), "i2v_degradations_total", kind="resolution") >= 1


# --- drain ------------------------------------------------------------------------------------


def test_sigterm_finishes_running_job_refuses_new_and_exits_0(cache_dir: Path, tmp_path: Path) -> None:
    proc = start_node(cache_dir, tmp_path, "n-drain", "--drain-grace-seconds", "60")
    try:
        proc.wait_serving()
        call: Any = stub(proc).Generate(request(steps=20), timeout=120)
        outcome: dict[str, Any] = {}

        def consume() -> None:
            try:
                outcome["result"] = [e for e in call if e.HasField("result")]
            except grpc.RpcError as exc:
                outcome["error"] = exc

        first_denoise_step(call)
        reader = threading.Thread(target=consume)
        reader.start()
        proc.terminate()
        deadline = time.monotonic() + 10
        while proc.health() == SERVING and time.monotonic() < deadline:
            time.sleep(0.02)
        refused: Any = error_of(proc, request(steps=2))
        assert refused.code() == grpc.StatusCode.UNAVAILABLE
        assert "draining" in refused.details()
        reader.join(120)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["result"][0].result.frames == 8
        assert proc.proc.wait(60) == 0
    finally:
        proc.stop()
    assert "stopped" in proc.log()
