"""No response message of any RPC nears gRPC's default 4 MiB receive limit (grpc-js, grpc-go and
grpc-java refuse bigger ones by default), for the largest request the limits allow.

Computed from the messages the servers build for such a job, never from a run: the longest prompts
(every character 4 bytes of UTF-8), the longest model name and request id, 1280x1280 x 64 frames
with every frame stored, a 1 KiB artifact store URL, and generous bounds where the servers write
free text (node metadata, degradations, error messages). The video itself never rides in a
Coordinator message (Download sends it in 1 MiB pieces), and a node's standalone output goes in
1 MiB chunks.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, NoReturn, cast

import grpc
import pytest

from i2v_contract import states
from i2v_contract.keys import DoneRecord, Keys
from i2v_contract.limits import DEFAULT_LIMITS, SEED_MAX
from i2v_contract.outputs import frame_uri
from i2v_contract.wire import common_pb2, coordinator_pb2, node_pb2
from i2v_coordinator import jobs
from i2v_coordinator.download import CHUNK_BYTES
from i2v_coordinator.jobstore import JobStore
from i2v_coordinator.jobtable import JobTable, job_event
from i2v_coordinator.listing import LIST_JOBS_MAX
from i2v_coordinator.messages import job_message
from i2v_coordinator.records import JobRecord, encode_job
from i2v_coordinator.servicer import CoordinatorServicer
from i2v_node.chunks import result_events
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV

GRPC_DEFAULT_MAX = 4 * 1024 * 1024
LIMITS = DEFAULT_LIMITS
KEYS = Keys("/sizes/")
WIDE = "\U0001f600"  # 4 bytes of UTF-8: the most a prompt character can weigh
ROOT = "s3://" + "b" * 1019  # a 1 KiB artifact store URL (operators choose it; real ones are short)
TEXT = "x" * 4096  # a server-written message (errors, progress notes): real ones are a few hundred bytes


def job_id(i: int = 0) -> str:
    return f"{i:06d}".ljust(128, "j")  # the longest request id admission accepts


def largest_request(i: int = 0) -> common_pb2.GenerationRequest:
    """As the coordinator stores it: defaults filled, no image bytes."""
    return common_pb2.GenerationRequest(
        image_uri=f"{ROOT}/jobs/{job_id(i)}/input-{'0' * 16}.webp",
        prompt=WIDE * LIMITS.max_prompt_chars,
        negative_prompt=WIDE * LIMITS.max_prompt_chars,
        width=LIMITS.max_width,
        height=LIMITS.max_height,
        frames=LIMITS.max_frames,
        fps=LIMITS.max_fps,
        steps=LIMITS.max_steps,
        guidance_scale=LIMITS.max_guidance,
        seed=SEED_MAX,
        allow_degrade=True,
        model=WIDE * LIMITS.max_model_chars,
        return_frames=True,
    )


def largest_result(i: int = 0) -> common_pb2.Result:
    """A dispatched job's result by reference: every frame stored beside the video."""
    video_uri = f"{ROOT}/jobs/{job_id(i)}/attempt-1000.mp4"
    result = common_pb2.Result(
        artifact_uri=video_uri,
        mime_type="video/mp4",
        frames=LIMITS.max_frames,
        fps=LIMITS.max_fps,
        width=LIMITS.max_width,
        height=LIMITS.max_height,
        steps=LIMITS.max_steps,
        seed=SEED_MAX,
        profile="group_offload_leaf",
        degradations=["resolution 1280x1280 -> 960x960", "frames 64 -> 48"] * 4,
        peak_bytes=2**62,
        timings=common_pb2.Timings(queue_s=1e9, encode_s=1e9, denoise_s=1e9, decode_s=1e9, total_s=1e9),
        sha256=hashlib.sha256(b"").hexdigest(),
        video_size=2**40,
        frame_uris=[frame_uri(video_uri, f) for f in range(LIMITS.max_frames)],
    )
    result.metadata.update({f"key-{k:02d}".ljust(64, "k"): "v" * 512 for k in range(16)})
    return result


def finished_record(i: int = 0, state: int = states.SUCCEEDED) -> JobRecord:
    view = dataclasses.replace(
        jobs.new_job(job_id(i), 2**40, common_pb2.TIER_GE40, WIDE * LIMITS.max_model_chars, 1.0),
        state=state,
        attempt=1000,
        result_attempt=1000,
        node_id="n" * 256,
        finished_at=2.0 + i,
        error=TEXT if state != states.SUCCEEDED else "",
        error_code=13 if state != states.SUCCEEDED else 0,
    )
    result = largest_result(i) if state == states.SUCCEEDED else None
    request = largest_request(i)
    return JobRecord(view, request, request.image_uri, "d" * 64, result=result)


def under_the_limit(message: Any, *, at_most: int = GRPC_DEFAULT_MAX) -> int:
    size = int(message.ByteSize())
    assert size < at_most, f"{type(message).__name__} is {size} bytes, over {at_most}"
    return size


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(states.SUCCEEDED, id="succeeded"),
        pytest.param(states.FAILED, id="failed"),
        pytest.param(states.RUNNING, id="running"),
    ],
)
def test_watch_generate_get_and_cancel_answers_are_small(state: int) -> None:
    record = finished_record(state=state)
    if state == states.RUNNING:
        record = dataclasses.replace(record, view=dataclasses.replace(record.view, finished_at=0.0))
    event = job_event(record, JobTable(KEYS))
    assert not event.result.video and not event.result.frames_png  # by reference only
    under_the_limit(event, at_most=128 * 1024)
    under_the_limit(job_message(record, event), at_most=192 * 1024)  # Get, Cancel
    progress = coordinator_pb2.JobEvent(
        job_id=job_id(),
        state=coordinator_pb2.JobState.ValueType(states.RUNNING),
        progress=common_pb2.Progress(
            stage=common_pb2.STAGE_RETRY, message=TEXT, profile="p" * 64, node_id="n" * 256
        ),
    )
    under_the_limit(progress, at_most=16 * 1024)


class _Aborted(Exception):
    pass


class _Context:
    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise _Aborted(f"{code.name}: {details}")


class _Standby:
    member_id = "c2"
    epoch = None
    term = None
    leader = ("c1", "127.0.0.1:1")


async def test_a_list_jobs_page_of_the_largest_jobs_stays_under_the_limit_and_goes_on() -> None:
    kv = MemoryKV(ManualClock())
    for i in range(LIST_JOBS_MAX):
        record = finished_record(i)
        entry = KEYS.history_entry(record.view.finished_at, record.job_id)
        await kv.put(entry, encode_job(record))
        await kv.put(KEYS.done_of(record.job_id), DoneRecord(entry, record.view.finished_at).to_json())
    unused = cast(Any, None)
    servicer = CoordinatorServicer(_Standby(), unused, JobStore(kv, KEYS), unused, unused, unused)
    request = coordinator_pb2.ListJobsRequest(limit=LIST_JOBS_MAX)
    first = await servicer.ListJobs(request, cast(Any, _Context()))
    under_the_limit(first)
    assert 0 < len(first.jobs) < LIST_JOBS_MAX and first.next_page_token  # cut by bytes, not by limit
    request.page_token = first.next_page_token
    second = await servicer.ListJobs(request, cast(Any, _Context()))
    under_the_limit(second)
    newest = [job_id(i) for i in reversed(range(LIST_JOBS_MAX))]
    assert [j.job_id for j in (*first.jobs, *second.jobs)] == newest[: len(first.jobs) + len(second.jobs)]


def test_download_messages_are_one_mib_of_data_at_most() -> None:
    header = coordinator_pb2.DownloadResponse(
        total_size=2**62, sha256="f" * 64, mime_type="application/octet-stream", offset=2**62
    )
    under_the_limit(header, at_most=1024)
    piece = coordinator_pb2.DownloadResponse(offset=2**62, data=b"\xff" * CHUNK_BYTES)
    assert under_the_limit(piece) <= CHUNK_BYTES + 32


def test_cluster_views_stay_small_for_a_large_fleet() -> None:
    node = coordinator_pb2.NodeInfo(
        node_id="n" * 128,
        addr="a" * 256,
        tier=common_pb2.TIER_GE40,
        gpu="g" * 256,
        total_bytes=2**62,
        free_bytes=2**62,
        busy=True,
        job_id=job_id(),
        model="m" * 256,
        version="v" * 64,
        cooldown_s=60.0,
        consecutive_failures=2**31,
        set_aside=True,
        health_reason="r" * 512,
    )
    # 1000 nodes with every string near its longest: about 1.8 MiB.
    under_the_limit(coordinator_pb2.ListNodesResponse(nodes=[node] * 1000))
    member = coordinator_pb2.Member(id="c" * 128, addr="a" * 256, leader=True)
    tiers = [coordinator_pb2.TierCount(tier=t, nodes=1000, busy=1000) for t in common_pb2.Tier.values()]
    status = coordinator_pb2.ClusterStatusResponse(
        leader_id="c" * 128, leader_addr="a" * 256, epoch=2**62, members=[member] * 64, tiers=tiers
    )
    under_the_limit(status, at_most=64 * 1024)
    submitted = coordinator_pb2.SubmitResponse(job_id=job_id(), required_tier=common_pb2.TIER_GE40)
    under_the_limit(submitted, at_most=1024)


def test_a_nodes_generate_stream_is_chunks_of_one_mib_and_a_small_result() -> None:
    # Standalone: a 5 MiB video (512x512x32 of the tiny model's noise is 4.2 MB) and large frames.
    standalone = largest_result()
    standalone.ClearField("frame_uris")
    standalone.artifact_uri = ""
    standalone.video = b"\xff" * (5 * 1024 * 1024 + 3)
    standalone.frames_png.extend([b"\xff" * (5 * 1024 * 1024)] * 3)
    events = list(result_events(standalone))
    assert max(under_the_limit(e) for e in events) <= CHUNK_BYTES + 32
    assert not events[-1].result.video and not events[-1].result.frames_png
    # Dispatched: the outputs are in the store, the result names them.
    under_the_limit(common_pb2.GenerateEvent(result=largest_result()), at_most=128 * 1024)
    progress = common_pb2.GenerateEvent(
        progress=common_pb2.Progress(stage=common_pb2.STAGE_RETRY, message=TEXT, profile="p" * 64)
    )
    under_the_limit(progress, at_most=16 * 1024)
    status = node_pb2.NodeStatus(
        node_id="n" * 128, model="m" * 256, device="d" * 256, profile="p" * 64, profiles=["p" * 64] * 16
    )
    under_the_limit(status, at_most=16 * 1024)
