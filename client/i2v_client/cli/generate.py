"""`i2v generate`: an image and a prompt to an MP4, on one node (`--node`) or through the
coordinators (`--target`); Ctrl-C cancels the job."""

from __future__ import annotations

import argparse
import contextlib

from i2v_client.cli.context import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Context
from i2v_client.cli.progress import ProgressDisplay, mode_for, stop
from i2v_client.errors import CallError
from i2v_client.node_client import Call
from i2v_client.request import build_request
from i2v_contract.wire import common_pb2


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


def _deliver(
    args: argparse.Namespace, ctx: Context, call: Call, result: common_pb2.Result, job_id: str, wall_s: float
) -> int:
    """Write the video (and frames) and say what was made."""
    try:
        call.save(result, args.output, args.frames_dir)  # from a node: inline; else downloaded
    except CallError as exc:
        ctx.err.write(f"error: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        kept = f"; job {job_id} keeps its video" if job_id else ""
        ctx.err.write(f"interrupted: {args.output} not written{kept}\n")
        return EXIT_INTERRUPTED
    except OSError as exc:
        ctx.err.write(f"error: cannot write output: {exc}\n")
        return EXIT_USAGE
    ctx.out.write(summary(result, f"wrote {args.output}", wall_s, job_id) + "\n")
    return EXIT_OK


def cmd_generate(args: argparse.Namespace, ctx: Context) -> int:
    try:
        image = args.image.read_bytes()
    except OSError as exc:
        ctx.err.write(f"error: cannot read image {args.image}: {exc.strerror}\n")
        return EXIT_USAGE
    request = _request(args, image)
    display = ProgressDisplay(ctx.err, mode_for(ctx.err, args.quiet))
    if args.targets is None:
        client = ctx.connector.node(args.node)
    else:
        client = ctx.connector.cluster_generator(args.targets)
    started = ctx.clock()
    with contextlib.closing(client):  # open until the outputs are saved (a download needs it)
        call = client.generate(request, timeout=args.timeout)
        job_id: str = getattr(call, "job_id", "")
        try:
            result = call.wait(display.update)
        except CallError as exc:
            return stop(display, ctx.err, f"error: {exc}", EXIT_FAILED)
        except KeyboardInterrupt:
            call.cancel()
            the_job = f"job {job_id}" if job_id else "the job"
            return stop(display, ctx.err, f"interrupted: {the_job} was cancelled", EXIT_INTERRUPTED)
        display.close()
        return _deliver(args, ctx, call, result, job_id, ctx.clock() - started)
