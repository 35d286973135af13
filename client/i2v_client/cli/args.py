"""The `i2v` argument tree, and where a command runs (`--node`, `--target` or $I2V_TARGETS)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from i2v_client.cli.cluster import cmd_cancel, cmd_get, cmd_jobs, cmd_status, cmd_watch
from i2v_client.cli.context import Listing
from i2v_client.cli.generate import cmd_generate
from i2v_client.failover import parse_targets
from i2v_client.text import parse_states

TARGETS_ENV = "I2V_TARGETS"


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


def _where_parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The shared flags: node or cluster (generate), and cluster only (the rest)."""
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
    return node_or_cluster, cluster


def _add_generate(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    gen = sub.add_parser(
        "generate",
        parents=[parent],
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


def _add_jobs(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    parent: argparse.ArgumentParser,
    listing: Listing,
) -> None:
    jobs = sub.add_parser("jobs", parents=[parent], help="list jobs, newest first")
    jobs.add_argument(
        "--state",
        type=_states,
        default=[],
        metavar="STATE[,STATE...]",
        help="only these states: queued, assigned, running, succeeded, failed, cancelled",
    )
    how_many = jobs.add_mutually_exclusive_group()
    how_many.add_argument(
        "--limit",
        type=_positive_int,
        default=listing.shown,
        help=f"show at most N jobs (default {listing.shown})",
    )
    how_many.add_argument(
        "--all", action="store_true", help=f"every job, to the end of the history (at most {listing.all_max})"
    )
    jobs.add_argument(
        "--page-token", default="", metavar="TOKEN", help="continue where a previous listing stopped"
    )
    jobs.set_defaults(run=cmd_jobs, subparser=jobs)


def build_parser(listing: Listing | None = None) -> argparse.ArgumentParser:
    listing = listing or Listing()
    parser = argparse.ArgumentParser(prog="i2v", description="Image-to-video generation on an i2v cluster.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    node_or_cluster, cluster = _where_parents()
    _add_generate(sub, node_or_cluster)
    status = sub.add_parser("status", parents=[cluster], help="cluster leader, members, nodes and queue")
    status.set_defaults(run=cmd_status, subparser=status)
    _add_jobs(sub, cluster, listing)
    for name, run, text in (
        ("get", cmd_get, "show one job and its outcome"),
        ("cancel", cmd_cancel, "cancel a queued or running job"),
        ("watch", cmd_watch, "follow a job's progress until it ends"),
    ):
        one = sub.add_parser(name, parents=[cluster], help=text)
        one.add_argument("job_id", metavar="JOB", help="the job id (printed by generate and jobs)")
        if name == "watch":
            one.add_argument("-q", "--quiet", action="store_true", help="no progress output")
        if name == "get":
            one.add_argument(
                "-o", "--output", type=Path, default=None, help="also download the job's video here"
            )
        one.set_defaults(run=run, subparser=one)
    return parser


def resolve_where(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """Sets args.targets (a list, or None with --node); ValueError says what to pass instead."""
    args.targets = None
    if getattr(args, "node", None):
        return
    text = args.target if args.target is not None else env.get(TARGETS_ENV, "")
    if not text.strip():
        node = "--node HOST:PORT or " if hasattr(args, "node") else ""
        raise ValueError(f"say where to run: {node}--target ADDR[,ADDR...] (or set {TARGETS_ENV})")
    args.targets = parse_targets(text)
