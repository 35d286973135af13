"""How a job ends: the Result assembled from the engine's outcome, the status code and message its
caller sees when there is none (or it is over the message limit), and the metrics and log line of
every finished engine run."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass

import grpc

from i2v_common.artifacts import ArtifactError, ArtifactStore
from i2v_contract.outputs import frame_uri
from i2v_contract.reasons import ErrorDetails, Reason, details
from i2v_contract.states import stage_name
from i2v_contract.tiers import tier_name
from i2v_contract.version import package_version
from i2v_contract.wire import common_pb2
from i2v_node.gpu import ProfileChoice
from i2v_node.job import Cancelled, Outcome, OutOfMemoryExhausted
from i2v_node.metrics import NodeMetrics
from i2v_node.running import CLAIM_GONE, DEADLINE, DRAIN, Final, RunningJob
from i2v_node.validation import NodeFault, output_name

log = logging.getLogger(__name__)

Finished = asyncio.Future[tuple[common_pb2.Result, Outcome]]  # the engine thread's work


@dataclass(frozen=True)
class RunInfo:
    """What a Result says about where and how it was made, besides the outcome itself."""

    node_id: str
    model: str
    device: str
    dtype: str
    choice: ProfileChoice  # the first profile, and the free memory it was chosen for


def assemble(
    outcome: Outcome, job: RunningJob, info: RunInfo, video: bytes, pngs: list[bytes]
) -> common_pb2.Result:
    """The Result of a finished run, without its video (inline or stored) and timings."""
    result = common_pb2.Result(
        mime_type="video/mp4",
        frames=int(outcome.frames.shape[0]),
        fps=outcome.spec.fps,
        width=int(outcome.frames.shape[2]),
        height=int(outcome.frames.shape[1]),
        steps=outcome.spec.steps,
        seed=outcome.spec.seed,
        profile=outcome.profile,
        degradations=list(outcome.degradations),
        peak_bytes=outcome.peak_bytes,
        sha256=hashlib.sha256(video).hexdigest(),
        video_size=len(video),
        frames_png=pngs,
    )
    result.metadata.update(outcome.metadata)
    result.metadata.update(
        {
            "tier": tier_name(job.tier),
            "node_id": info.node_id,
            "model": info.model,
            "device": info.device,
            "dtype": info.dtype,
            "first_profile": info.choice.profile.name,
            "free_bytes_at_start": str(info.choice.free_bytes),
            "i2v_cluster": package_version(),
        }
    )
    return result


def timings(outcome: Outcome, job: RunningJob, *, engine_start: float, video_s: float) -> common_pb2.Timings:
    """Where the job's time went, from its arrival until now (monotonic clock)."""
    t = outcome.timings
    return common_pb2.Timings(
        queue_s=engine_start - job.received,
        encode_s=t.get("encode_s", 0.0),
        denoise_s=t.get("denoise_s", 0.0),
        decode_s=t.get("decode_s", 0.0),
        video_s=video_s,
        total_s=time.monotonic() - job.received,
    )


def store_outputs(
    store: ArtifactStore, job: RunningJob, result: common_pb2.Result, video: bytes, node_id: str
) -> None:
    """Engine thread: write the video to output_uri and the result's frames beside it (their URIs
    replace their bytes in the result); a store failure is the node's (UNAVAILABLE)."""
    uri = job.request.output_uri
    try:
        result.artifact_uri = store.put(output_name(uri, store), video)
        result.frame_uris.extend(
            store.put(output_name(frame_uri(uri, i), store), png) for i, png in enumerate(result.frames_png)
        )
    except (ArtifactError, OSError) as err:
        raise NodeFault(
            grpc.StatusCode.UNAVAILABLE,
            f"node {node_id} could not write the outputs of job {job.job_id} to its artifact store "
            f"({store.root_url}): {err}; check the store is reachable and writable from here",
        ) from None
    result.ClearField("frames_png")


def classify(
    job: RunningJob, future: Finished, *, max_result_bytes: int, drain_grace_seconds: float
) -> Final:
    """The status the caller sees for a finished engine run."""
    if future.cancelled():
        return Final(grpc.StatusCode.UNAVAILABLE, f"node stopped before job {job.job_id} ran", None)
    err = future.exception()
    if isinstance(err, Exception):
        return Final(*failure(job, err, drain_grace_seconds), None, failure_details(job, err))
    result, _ = future.result()
    if result.ByteSize() > max_result_bytes:
        return Final(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"result is {result.ByteSize()} bytes, over this node's {max_result_bytes}-byte "
            "message limit; set return_frames=false, or use output_uri",
            None,
            details(Reason.RESULT_TOO_LARGE, job_id=job.job_id),
        )
    return Final(grpc.StatusCode.OK, "", result)


def failure(job: RunningJob, err: Exception, drain_grace_seconds: float) -> tuple[grpc.StatusCode, str]:
    """The status code and message for an engine run that raised `err`."""
    if isinstance(err, Cancelled):
        return _cancelled(job, drain_grace_seconds)
    if isinstance(err, OutOfMemoryExhausted):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(err)
    if isinstance(err, NodeFault):
        return err.code, err.message
    return grpc.StatusCode.INTERNAL, (
        f"internal error in job {job.job_id}: {type(err).__name__}; the node still serves, see its log"
    )


def failure_details(job: RunningJob, err: Exception) -> ErrorDetails | None:
    """The details beside failure()'s status, for the families i2v_contract.reasons names."""
    if isinstance(err, OutOfMemoryExhausted):
        return details(Reason.OUT_OF_MEMORY, job_id=job.job_id, stage=stage_name(err.stage))
    if isinstance(err, Cancelled) and job.reason == CLAIM_GONE:
        return details(Reason.CLAIM_GONE, job_id=job.job_id)
    if isinstance(err, Cancelled) and job.reason == DRAIN:
        return details(Reason.NODE_DRAINING, job_id=job.job_id)
    return None


def _cancelled(job: RunningJob, drain_grace_seconds: float) -> tuple[grpc.StatusCode, str]:
    if job.reason == DEADLINE:
        return grpc.StatusCode.DEADLINE_EXCEEDED, (
            f"deadline passed during job {job.job_id} (stopped after step {job.last_step}); "
            "allow more time or request fewer steps/frames"
        )
    if job.reason == CLAIM_GONE:
        # UNAVAILABLE: a dispatcher that still sees the attempt as current re-runs it elsewhere.
        return grpc.StatusCode.UNAVAILABLE, (
            f"job {job.job_id} stopped after step {job.last_step}: {job.detail}; no result written"
        )
    if job.reason == DRAIN:
        return grpc.StatusCode.UNAVAILABLE, (
            f"node is draining; job {job.job_id} was cancelled after the "
            f"{drain_grace_seconds:g} s grace period; retry on another node"
        )
    return grpc.StatusCode.CANCELLED, f"job {job.job_id} was cancelled ({job.reason or 'by the node'})"


def record_finished(metrics: NodeMetrics, job: RunningJob, future: Finished) -> None:
    """On the loop once the engine thread returned: metrics and a log line."""
    exc = future.exception() if not future.cancelled() else Cancelled("executor shut down")
    if exc is None:
        result, outcome = future.result()
        metrics.job_succeeded(
            width=result.width,
            height=result.height,
            tier=job.tier,
            seconds=result.timings.total_s,
            peak_bytes=outcome.peak_bytes,
            degradations=outcome.degradations,
        )
        log.info(
            "job %s succeeded in %.2f s with profile %s, peak %d bytes%s",
            job.job_id,
            result.timings.total_s,
            result.profile,
            result.peak_bytes,
            f", degraded: {', '.join(result.degradations)}" if result.degradations else "",
        )
    elif isinstance(exc, Cancelled):
        metrics.job_done("deadline_exceeded" if job.reason == DEADLINE else "cancelled")
        log.info("job %s stopped after step %d (%s)", job.job_id, job.last_step, job.reason or "cancelled")
    elif isinstance(exc, NodeFault):
        metrics.job_done("failed")
        log.warning("job %s failed on this node's side: %s", job.job_id, exc.message)
    elif isinstance(exc, OutOfMemoryExhausted):
        metrics.job_done("oom")
        metrics.oom_caught(exc.stage, job.tier)
        log.warning("job %s out of memory at every profile: %s", job.job_id, exc)
    else:
        metrics.job_done("failed")
        log.error("job %s failed", job.job_id, exc_info=exc)
