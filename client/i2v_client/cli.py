"""`i2v`: the command line client.

    i2v generate IMAGE --prompt TEXT [--frames N --width W --height H --steps S --seed X --fps F]
                 (--node HOST:PORT | --target ADDR[,ADDR...]) -o OUT.mp4
    i2v status  --target ADDR[,ADDR...]          leader, epoch, members, nodes, queue
    i2v jobs    --target ... [--state queued,running] [--limit N | --all] [--page-token T]
    i2v get     JOB --target ...
    i2v cancel  JOB --target ...
    i2v watch   JOB --target ...                 progress until the job ends

`--node` calls one node directly; `--target` goes through the coordinators (any of them: the client
follows the leader and re-attaches across failovers). Without either, `--target` comes from the
I2V_TARGETS environment variable. Exit status: 0 done, 1 the server refused or failed (the message
is `error: CODE: message`), 2 bad local usage, 130 interrupted (Ctrl-C on generate cancels the job).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO
from urllib.parse import urlparse
from urllib.request import url2pathname

import grpc

from i2v_client.calls import CoordinatorGenerator, ProgressLine, final_result
from i2v_client.coordinator import CoordinatorClient
from i2v_client.errors import CallError
from i2v_client.failover import parse_targets
from i2v_client.node_client import Generator, NodeClient
from i2v_client.paging import JobPage
from i2v_client.progress import ProgressDisplay, mode_for
from i2v_client.request import build_request, checked
from i2v_client.text import format_job, format_jobs, format_nodes, format_status, parse_states
from i2v_contract.wire import common_pb2, coordinator_pb2

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
TARGETS_ENV = "I2V_TARGETS"
JOBS_SHOWN = 20  # `i2v jobs` without --limit
JOBS_ALL_MAX = 10_000  # `i2v jobs --all` stops there (and says how to go on)
PAGE_MAX = 1000  # the most the server returns in one ListJobs page
# Requests one listing makes at most: a rare state over a long history comes back in short pages.
PAGES_MAX = 100


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be >= 1")
    return value


def _states(text: str) -> list[int]:
    try:
        return parse_states(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_target(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--target",
        metavar="ADDR[,ADDR...]",
        default=None,
        help=f"coordinator addresses (any of them; default: ${TARGETS_ENV})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="i2v", description="Image-to-video generation on an i2v cluster.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    node_or_cluster = argparse.ArgumentParser(add_help=False)
    where = node_or_cluster.add_argument_group("where to run (one of)")
    either = where.add_mutually_exclusive_group()
    either.add_argument("--node", metavar="HOST:PORT", default=None, help="call this node directly")
    _add_target(either)
    where.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="deadline for the call, seconds"
    )
    cluster = argparse.ArgumentParser(add_help=False)
    _add_target(cluster.add_argument_group("cluster"))

    gen = sub.add_parser(
        "generate",
        parents=[node_or_cluster],
        help="turn an image and a prompt into an MP4",
        description="Turn an image and a prompt into an MP4. Zero/omitted sizes use the server's defaults.",
    )
    gen.add_argument("image", type=Path, help="input image (PNG, JPEG or WebP)")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--negative-prompt", default="")
    gen.add_argument("--width", type=_non_negative_int, default=0, help="pixels, multiple of 8")
    gen.add_argument("--height", type=_non_negative_int, default=0, help="pixels, multiple of 8")
    gen.add_argument("--frames", type=_non_negative_int, default=0)
    gen.add_argument("--fps", type=_non_negative_int, default=0)
    gen.add_argument("--steps", type=_non_negative_int, default=0, help="denoising steps")
    gen.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance scale")
    gen.add_argument("--seed", type=_non_negative_int, default=None, help="default: random (printed)")
    gen.add_argument("--model", default="", help="model the server must serve (default: any)")
    gen.add_argument(
        "--allow-degrade",
        action="store_true",
        help="let the node lower resolution, then frames, to fit memory (steps are never lowered)",
    )
    gen.add_argument("--frames-dir", type=Path, default=None, help="also write every frame as PNG here")
    gen.add_argument("-o", "--output", type=Path, required=True, help="where to write the MP4")
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    gen.set_defaults(run=cmd_generate, subparser=gen)

    status = sub.add_parser("status", parents=[cluster], help="cluster leader, members, nodes and queue")
    status.set_defaults(run=cmd_status, subparser=status)

    jobs = sub.add_parser("jobs", parents=[cluster], help="list jobs, newest first")
    jobs.add_argument(
        "--state",
        type=_states,
        default=[],
        metavar="STATE[,STATE...]",
        help="only these states: queued, assigned, running, succeeded, failed, cancelled",
    )
    how_many = jobs.add_mutually_exclusive_group()
    how_many.add_argument(
        "--limit", type=_positive_int, default=JOBS_SHOWN, help=f"show at most N jobs (default {JOBS_SHOWN})"
    )
    how_many.add_argument(
        "--all", action="store_true", help=f"every job, to the end of the history (at most {JOBS_ALL_MAX})"
    )
    jobs.add_argument(
        "--page-token", default="", metavar="TOKEN", help="continue where a previous listing stopped"
    )
    jobs.set_defaults(run=cmd_jobs, subparser=jobs)

    for name, run, text in (
        ("get", cmd_get, "show one job and its outcome"),
        ("cancel", cmd_cancel, "cancel a queued or running job"),
        ("watch", cmd_watch, "follow a job's progress until it ends"),
    ):
        one = sub.add_parser(name, parents=[cluster], help=text)
        one.add_argument("job_id", metavar="JOB", help="the job id (printed by generate and jobs)")
        if name == "watch":
            one.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        one.set_defaults(run=run, subparser=one)
    return parser


def resolve_where(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """Sets args.targets (a list, or None with --node); ValueError says what to pass instead."""
    args.targets = None
    if getattr(args, "node", None):
        return
    text = args.target if args.target is not None else environ.get(TARGETS_ENV, "")
    if not text.strip():
        node = "--node HOST:PORT or " if hasattr(args, "node") else ""
        raise ValueError(f"say where to run: {node}--target ADDR[,ADDR...] (or set {TARGETS_ENV})")
    args.targets = parse_targets(text)


def connect(args: argparse.Namespace) -> Generator:
    if args.targets is None:
        return NodeClient(args.node)
    return CoordinatorGenerator(args.targets)


def coordinator(args: argparse.Namespace) -> CoordinatorClient:
    return CoordinatorClient(args.targets)


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


def _stop(display: ProgressDisplay, err: TextIO, message: str, code: int) -> int:
    """End the progress line, then say why the command stops."""
    display.close()
    err.write(message + "\n")
    return code


def _write_outputs(args: argparse.Namespace, result: common_pb2.Result) -> None:
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(result.video)
    if args.frames_dir is not None:
        args.frames_dir.mkdir(parents=True, exist_ok=True)
        for i, png in enumerate(result.frames_png):
            (args.frames_dir / f"frame_{i:04d}.png").write_bytes(png)


def cmd_generate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        image = args.image.read_bytes()
    except OSError as exc:
        err.write(f"error: cannot read image {args.image}: {exc.strerror}\n")
        return EXIT_USAGE
    request = build_request(
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
    display = ProgressDisplay(err, mode_for(err, args.quiet))
    client = connect(args)
    started = time.monotonic()
    call = client.generate(request, timeout=args.timeout)
    job_id: str = getattr(call, "job_id", "")
    try:
        result = with_video(call.wait(display.update))
    except CallError as exc:
        return _stop(display, err, f"error: {exc}", EXIT_FAILED)
    except KeyboardInterrupt:
        call.cancel()
        return _stop(
            display,
            err,
            f"interrupted: {'job ' + job_id if job_id else 'the job'} was cancelled",
            EXIT_INTERRUPTED,
        )
    finally:
        client.close()
    display.close()
    wall_s = time.monotonic() - started
    if not result.video:
        # Too large to inline and not readable here: the store holds it.
        where = f"video stored at {result.artifact_uri} (not written to {args.output})"
        out.write(summary(result, where, wall_s, job_id) + "\n")
        return EXIT_OK
    try:
        _write_outputs(args, result)
    except OSError as exc:
        err.write(f"error: cannot write output: {exc}\n")
        return EXIT_USAGE
    out.write(summary(result, f"wrote {args.output}", wall_s, job_id) + "\n")
    return EXIT_OK


def _cluster_call(
    args: argparse.Namespace, err: TextIO, call: Callable[[CoordinatorClient], str]
) -> str | None:
    """Run one call against the coordinators; None after writing `error: CODE: message`."""
    client = coordinator(args)
    try:
        return call(client)
    except CallError as exc:
        err.write(f"error: {exc}\n")
        return None
    finally:
        client.close()


def _print(text: str | None, out: TextIO) -> int:
    if text is None:
        return EXIT_FAILED
    out.write(text + "\n")
    return EXIT_OK


def cmd_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    def status(client: CoordinatorClient) -> str:
        nodes = format_nodes(client.list_nodes()) or "(no live nodes)"
        return f"{format_status(client.cluster_status())}\n{nodes}"

    return _print(_cluster_call(args, err, status), out)


def collect_jobs(
    pages: Callable[[int, str], JobPage], want: int, page_token: str = ""
) -> tuple[list[coordinator_pb2.Job], str]:
    """Up to `want` jobs from `page_token` on, following tokens (a filtered page can be short or
    empty) for at most PAGES_MAX requests; returns them and the token to go on from ("" = nothing
    more)."""
    jobs: list[coordinator_pb2.Job] = []
    for _ in range(PAGES_MAX):
        page = pages(min(PAGE_MAX, want - len(jobs)), page_token)
        jobs.extend(page.jobs)
        if not page.next_page_token:
            return jobs, ""
        if page.next_page_token == page_token:
            raise CallError(grpc.StatusCode.INTERNAL, "list jobs: the server returned the same page token")
        page_token = page.next_page_token
        if len(jobs) >= want:
            break
    return jobs, page_token


def cmd_jobs(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    want = JOBS_ALL_MAX if args.all else args.limit
    client = coordinator(args)
    try:
        jobs, more = collect_jobs(
            lambda limit, token: client.list_jobs(args.state, limit, token), want, args.page_token
        )
    except CallError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_FAILED
    finally:
        client.close()
    out.write(format_jobs(jobs) + "\n")
    if more:
        rest = "" if args.all else ", or --all"
        err.write(f"more jobs: go on with --page-token {more} (same --state){rest}\n")
    return EXIT_OK


def cmd_get(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return _print(_cluster_call(args, err, lambda c: format_job(c.get(args.job_id))), out)


def cmd_cancel(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return _print(_cluster_call(args, err, lambda c: format_job(c.cancel(args.job_id))), out)


def cmd_watch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    display = ProgressDisplay(err, mode_for(err, args.quiet))
    line = ProgressLine(display.update)
    client = coordinator(args)
    try:
        final = client.watch(args.job_id, line.event, on_pause=line.pause)
        result = final_result(final)
    except CallError as exc:
        return _stop(display, err, f"error: {exc}", EXIT_FAILED)
    except KeyboardInterrupt:
        return _stop(
            display, err, f"interrupted: stopped watching; job {args.job_id} goes on", EXIT_INTERRUPTED
        )
    finally:
        client.close()
    display.close()
    out.write(f"job {args.job_id} succeeded: {result.artifact_uri}\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        resolve_where(args, os.environ if environ is None else environ)
    except ValueError as exc:
        args.subparser.error(str(exc))
    code: int = args.run(args, sys.stdout, sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
