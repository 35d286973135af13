"""`i2v generate`: an image and a prompt to an MP4, on one node (`--node`) or through the
coordinators (`--target`); Ctrl-C cancels the job."""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from i2v_client.cli.context import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Context
from i2v_client.cli.progress import ProgressDisplay, mode_for, stop
from i2v_client.errors import CallError
from i2v_client.request import build_request, checked
from i2v_contract.wire import common_pb2


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def summary(result: common_pb2.Result, where: str, wall_s: float, job_id: str = "") -> str:
    t = result.timings
    size = f", {len(result.video)} bytes" if result.video else ""
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


def read_local_artifact(uri: str) -> bytes | None:
    """The bytes behind a file:// URI when this machine can read it, else None."""
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    try:
        return Path(url2pathname(parsed.path)).read_bytes()
    except OSError:
        return None


def with_video(result: common_pb2.Result) -> common_pb2.Result:
    """The result with its video inline: as sent, or read from a local file:// artifact (checked)."""
    if result.video or not result.artifact_uri:
        return result
    video = read_local_artifact(result.artifact_uri)
    if video is None:
        return result
    fetched = common_pb2.Result()
    fetched.CopyFrom(result)
    fetched.video = video
    return checked(fetched)


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


def _write_outputs(args: argparse.Namespace, result: common_pb2.Result) -> None:
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(result.video)
    if args.frames_dir is not None:
        args.frames_dir.mkdir(parents=True, exist_ok=True)
        for i, png in enumerate(result.frames_png):
            (args.frames_dir / f"frame_{i:04d}.png").write_bytes(png)


def _deliver(
    args: argparse.Namespace, ctx: Context, result: common_pb2.Result, job_id: str, wall_s: float
) -> int:
    """Write the video (and frames) and say what was made; a video only in the store is named."""
    if not result.video:
        # Too large to inline and not readable here: the store holds it.
        where = f"video stored at {result.artifact_uri} (not written to {args.output})"
        ctx.out.write(summary(result, where, wall_s, job_id) + "\n")
        return EXIT_OK
    try:
        _write_outputs(args, result)
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
    call = client.generate(request, timeout=args.timeout)
    job_id: str = getattr(call, "job_id", "")
    try:
        result = with_video(call.wait(display.update))
    except CallError as exc:
        return stop(display, ctx.err, f"error: {exc}", EXIT_FAILED)
    except KeyboardInterrupt:
        call.cancel()
        the_job = f"job {job_id}" if job_id else "the job"
        return stop(display, ctx.err, f"interrupted: {the_job} was cancelled", EXIT_INTERRUPTED)
    finally:
        client.close()
    display.close()
    return _deliver(args, ctx, result, job_id, ctx.clock() - started)
