"""`i2v generate`: an image and a prompt to an MP4, on one node (`--node`) or through the
coordinators (`--target`).

The image and the output path are checked before anything is sent. A node's video (and frames)
come inline; a job's are downloaded from the coordinators once it succeeds. Ctrl-C cancels the job
and says truthfully what happened (cancelled, never submitted, already over, or could not be
reached), exit 130. A video that cannot be written after the job ran is not lost: the message names
the job and the command that fetches it again (or, from a node, the file it was saved to instead).
"""

from __future__ import annotations

import argparse
import contextlib

import grpc

from i2v_client.cli.context import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Context
from i2v_client.cli.output import output_problem, save_elsewhere
from i2v_client.cli.progress import LINE_EVERY_S, ProgressDisplay, mode_for
from i2v_client.cli.report import report, where_flag
from i2v_client.errors import CallError
from i2v_client.node_client import Call
from i2v_client.request import build_request
from i2v_client.text import clip
from i2v_contract.states import state_name
from i2v_contract.wire import common_pb2, coordinator_pb2


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def summary(result: common_pb2.Result, where: str, wall_s: float, job_id: str = "") -> str:
    t = result.timings
    n = result.video_size or len(result.video)
    size = f", {n} bytes" if n else ""
    lines = [
        f"{where}: {result.frames} frames {result.width}x{result.height} @ {result.fps} fps{size}",
        f"seed {result.seed}, {result.steps} steps, profile {result.profile}, peak {_mib(result.peak_bytes)}"
        + (f", tier {result.metadata['tier']}" if "tier" in result.metadata else ""),
        f"time: total {t.total_s:.2f}s on the node (encode {t.encode_s:.2f}, denoise {t.denoise_s:.2f}, "
        f"decode {t.decode_s:.2f}, video {t.video_s:.2f}); {wall_s:.2f}s here",
    ]
    if result.degradations:
        lines.append("degraded: " + ", ".join(result.degradations))
    if job_id:
        lines.append(f"job {job_id}")
    return "\n".join(lines)


def _request(args: argparse.Namespace, image: bytes) -> common_pb2.GenerationRequest:
    return build_request(
        image,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        width=args.width,
        height=args.height,
        frames=args.frames,
        fps=args.fps,
        steps=args.steps,
        guidance_scale=args.guidance,
        seed=args.seed,
        allow_degrade=args.allow_degrade,
        model=args.model,
        return_frames=args.frames_dir is not None,
    )


def _write_failed(
    args: argparse.Namespace, ctx: Context, result: common_pb2.Result, job_id: str, why: str
) -> int:
    """Say where the video is when it could not be written: in the cluster (and how to fetch it) or,
    from a node that keeps nothing, in a file saved elsewhere."""
    if job_id:
        fetch = f"i2v get {job_id} -o {args.output} {where_flag(args)}"
        ctx.err.write(
            f"error: cannot write {clip(str(args.output))}: {why}; job {job_id} keeps the video: {fetch}\n"
        )
        return EXIT_USAGE
    saved = save_elsewhere(result.video)
    kept = f"saved it to {saved} instead" if saved else "it could not be saved elsewhere either"
    ctx.err.write(f"error: cannot write {clip(str(args.output))}: {why}; {kept}\n")
    return EXIT_USAGE


def _deliver(
    args: argparse.Namespace, ctx: Context, call: Call, result: common_pb2.Result, job_id: str, wall_s: float
) -> int:
    """Write the video (and frames: a node's came inline, a job's are downloaded) and say what was
    made."""
    try:
        call.save(result, args.output, args.frames_dir)
    except CallError as exc:
        return report(exc, args, ctx)
    except KeyboardInterrupt:
        kept = f"; job {job_id} keeps its video: i2v get {job_id} -o {args.output} {where_flag(args)}"
        ctx.err.write(f"interrupted: {clip(str(args.output))} not written{kept if job_id else ''}\n")
        return EXIT_INTERRUPTED
    except OSError as exc:
        return _write_failed(args, ctx, result, job_id, exc.strerror or str(exc))
    ctx.out.write(summary(result, f"wrote {args.output}", wall_s, job_id) + "\n")
    return EXIT_OK


def _cancelled(job: coordinator_pb2.Job | None, job_id: str, args: argparse.Namespace) -> str:
    if not job_id:
        return f"interrupted: cancelled the run on node {args.node}"
    if job is None:
        return "interrupted before any coordinator was reached: no job was submitted"
    if job.state == coordinator_pb2.JOB_STATE_CANCELLED:
        return f"interrupted: job {job_id} was cancelled"
    return f"interrupted: job {job_id} is {state_name(job.state).lower()}; it was not cancelled"


def _interrupted(call: Call, job_id: str, args: argparse.Namespace, ctx: Context) -> int:
    """Ctrl-C: cancel the job (bounded), and say what became of it."""
    try:
        line = _cancelled(call.cancel(), job_id, args)
    except CallError as exc:
        if exc.code is grpc.StatusCode.NOT_FOUND:
            line = f"interrupted: the cluster has no job {job_id}, so there was nothing to cancel"
        elif exc.code is grpc.StatusCode.FAILED_PRECONDITION:
            line = f"interrupted: {exc.message}"
        else:
            line = f"interrupted: could not cancel job {job_id} ({exc}); it may still run: "
            line += f"i2v cancel {job_id} {where_flag(args)}"
    except KeyboardInterrupt:
        line = f"interrupted again: job {job_id} may still run: i2v cancel {job_id} {where_flag(args)}"
    ctx.err.write(line + "\n")
    return EXIT_INTERRUPTED


def cmd_generate(args: argparse.Namespace, ctx: Context) -> int:
    problem = output_problem(args.output)
    if problem:
        ctx.err.write(f"error: {problem}\n")
        return EXIT_USAGE
    try:
        image = args.image.read_bytes()
    except OSError as exc:
        ctx.err.write(f"error: cannot read image {clip(str(args.image))}: {exc.strerror}\n")
        return EXIT_USAGE
    request = _request(args, image)
    client = (
        ctx.connector.node(args.node)
        if args.targets is None
        else ctx.connector.cluster_generator(args.targets)
    )
    display = ProgressDisplay(ctx.err, mode_for(ctx.err, args.quiet), ctx.clock, line_every_s=LINE_EVERY_S)
    started = ctx.clock()
    call: Call | None = None
    with contextlib.closing(client):  # open until the outputs are saved (a download needs it)
        try:
            call = client.generate(request, timeout=args.timeout)
            result = call.wait(display.update, on_pause=display.pause)
        except CallError as exc:
            display.close()
            return report(exc, args, ctx)
        except KeyboardInterrupt:
            display.close()
            if call is None:
                ctx.err.write("interrupted before the job was sent: nothing to cancel\n")
                return EXIT_INTERRUPTED
            return _interrupted(call, getattr(call, "job_id", ""), args, ctx)
        display.close()
        return _deliver(args, ctx, call, result, getattr(call, "job_id", ""), ctx.clock() - started)
