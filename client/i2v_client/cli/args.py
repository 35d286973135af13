"""The `i2v` argument tree, and where a command runs (`--node`, `--target` or $I2V_TARGETS).

Every refusal is one line and exit 2, before anything is dialled: argument types name the flag and
the range (`types.py`), and addresses must be HOST:PORT (`check_address`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from i2v_client.addresses import check_address, parse_targets
from i2v_client.cli import types
from i2v_client.cli.cluster import cmd_cancel, cmd_get, cmd_jobs, cmd_status, cmd_watch
from i2v_client.cli.context import Listing
from i2v_client.cli.generate import cmd_generate
from i2v_client.cli.tokens import add_command as add_token_command
from i2v_client.cli.tokens import add_token_flags, resolve_token
from i2v_client.local import commands as local
from i2v_client.text import clip
from i2v_common import tls
from i2v_common.tls import ClientTls
from i2v_contract.version import package_version

TARGETS_ENV = "I2V_TARGETS"
ERROR_MAX = 300  # argparse repeats what it refuses (an unknown command, a bad choice): bounded
L = types.LIMITS


class Parser(argparse.ArgumentParser):
    """argparse with a one-line refusal: `i2v generate: error: ...`, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {clip(message, ERROR_MAX)} (see {self.prog} --help)\n")


def _add_tls(group: argparse._ActionsContainer) -> None:
    tls.add_client_flags(group)


def resolve_tls(args: argparse.Namespace, env: Mapping[str, str]) -> ClientTls | None:
    """The command's TLS settings from its flags, else the environment; None for plaintext.
    ValueError (TlsConfigError) names a missing or unreadable file."""
    if not hasattr(args, "tls_ca"):
        return None
    return tls.client_tls_from_env(args.tls_ca, args.tls_cert, args.tls_key, env, args.tls_server_name)


def _add_target(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--target",
        metavar="ADDR[,ADDR...]",
        default=None,
        help=f"coordinator addresses, HOST:PORT, any of them (default: ${TARGETS_ENV})",
    )


def _cluster_parent(*, tables: bool = False, timeout: bool = False) -> Parser:
    """The flags every cluster command shares: connection, and the output forms of tables."""
    parent = Parser(add_help=False)
    connection = parent.add_argument_group("connection")
    _add_target(connection)
    add_token_flags(connection)
    _add_tls(connection)
    if timeout:
        connection.add_argument(
            "--timeout", type=types.seconds, default=None, metavar="S", help="give up after S seconds"
        )
    output = parent.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="JSON for scripts instead of text")
    if tables:
        output.add_argument("--wide", action="store_true", help="every column, nothing shortened")
    return parent


def _add_request(gen: argparse.ArgumentParser) -> None:
    req = gen.add_argument_group("request (0 or omitted: the server's default)")
    req.add_argument(
        "--prompt", required=True, help=f"what should happen (at most {L.max_prompt_chars} chars)"
    )
    req.add_argument("--negative-prompt", default="", metavar="TEXT", help="what should not")
    step = f"in steps of {L.size_multiple}"
    req.add_argument(
        "--width",
        type=types.width,
        default=0,
        metavar="W",
        help=f"pixels, {L.min_size}..{L.max_width} {step} (default {L.default_width})",
    )
    req.add_argument(
        "--height",
        type=types.height,
        default=0,
        metavar="H",
        help=f"pixels, {L.min_size}..{L.max_height} {step} (default {L.default_height})",
    )
    req.add_argument(
        "--frames",
        type=types.frames,
        default=0,
        metavar="N",
        help=f"1..{L.max_frames} (default {L.default_frames})",
    )
    req.add_argument(
        "--fps",
        type=types.fps,
        default=0,
        metavar="N",
        help=f"output frame rate, 1..{L.max_fps} (default {L.default_fps})",
    )
    req.add_argument(
        "--steps",
        type=types.steps,
        default=0,
        metavar="N",
        help=f"denoising steps, 1..{L.max_steps} (default {L.default_steps})",
    )
    req.add_argument(
        "--guidance",
        type=types.guidance,
        default=0.0,
        metavar="G",
        help=f"classifier-free guidance, {L.min_guidance:g}..{L.max_guidance:g} "
        f"(default {L.default_guidance:g})",
    )
    req.add_argument(
        "--seed", type=types.seed, default=None, metavar="N", help="0..2^64-1 (default: random, printed)"
    )
    req.add_argument("--model", default="", help="model the server must serve (default: any)")
    req.add_argument(
        "--allow-degrade",
        action="store_true",
        help="let the node lower resolution, then frames, to fit memory (steps are never lowered)",
    )


def _add_generate(sub: argparse._SubParsersAction[Parser]) -> None:
    gen = sub.add_parser(
        "generate",
        help="turn an image and a prompt into an MP4",
        description="Turn an image and a prompt into an MP4, on one node or through the coordinators.",
    )
    gen.add_argument("image", type=Path, help="input image (PNG, JPEG or WebP, at most 20 MiB)")
    _add_request(gen)
    output = gen.add_argument_group("output")
    output.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUT.mp4",
        help="where to write the MP4 (missing directories are made)",
    )
    output.add_argument(
        "--frames-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write every frame as PNG here",
    )
    output.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    connection = gen.add_argument_group("connection (one of --node, --target or $I2V_TARGETS)")
    either = connection.add_mutually_exclusive_group()
    either.add_argument("--node", metavar="HOST:PORT", default=None, help="call this node directly")
    _add_target(either)
    add_token_flags(connection)
    connection.add_argument(
        "--timeout",
        type=types.seconds,
        default=None,
        metavar="S",
        help="give up after S seconds, time queued included (the job goes on)",
    )
    _add_tls(connection)
    gen.set_defaults(run=cmd_generate, subparser=gen)


def _add_jobs(sub: argparse._SubParsersAction[Parser], listing: Listing) -> None:
    jobs = sub.add_parser(
        "jobs",
        parents=[_cluster_parent(tables=True)],
        help="list jobs, newest first",
        description="List jobs: open ones newest first, then finished ones newest-finished first.",
    )
    which = jobs.add_argument_group("which jobs")
    which.add_argument(
        "--state",
        type=types.states,
        default=[],
        metavar="STATE[,STATE...]",
        help="only these: queued, assigned, running, succeeded, failed, cancelled",
    )
    how_many = which.add_mutually_exclusive_group()
    how_many.add_argument(
        "--limit",
        type=types.limit,
        default=listing.shown,
        metavar="N",
        help=f"show at most N jobs (default {listing.shown})",
    )
    how_many.add_argument(
        "--all", action="store_true", help=f"every job, to the end of the history (at most {listing.all_max})"
    )
    which.add_argument(
        "--page-token", default="", metavar="TOKEN", help="continue where a previous listing stopped"
    )
    jobs.set_defaults(run=cmd_jobs, subparser=jobs)


def _add_one_job(sub: argparse._SubParsersAction[Parser]) -> None:
    for name, run, text, parent in (
        ("get", cmd_get, "show one job and its outcome; -o writes its video", _cluster_parent()),
        ("cancel", cmd_cancel, "cancel a queued or running job", _cluster_parent()),
        ("watch", cmd_watch, "follow a job's progress until it ends", _cluster_parent(timeout=True)),
    ):
        one = sub.add_parser(name, parents=[parent], help=text, description=text[0].upper() + text[1:] + ".")
        one.add_argument("job_id", metavar="JOB", help="the job id (printed by generate and jobs)")
        if name == "get":
            one.add_argument(
                "-o",
                "--output",
                type=Path,
                default=None,
                metavar="OUT.mp4",
                help="write the job's video here",
            )
        if name == "watch":
            one.add_argument("-q", "--quiet", action="store_true", help="no progress display")
        one.set_defaults(run=run, subparser=one)


def build_parser(listing: Listing | None = None) -> Parser:
    listing = listing or Listing()
    parser = Parser(prog="i2v", description="Image-to-video generation on an i2v cluster.")
    parser.add_argument("--version", action="version", version=f"i2v {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_generate(sub)
    status = sub.add_parser(
        "status",
        parents=[_cluster_parent(tables=True)],
        help="cluster leader, members, nodes and queue",
        description="The cluster's leader, members, nodes (held-back ones explained) and queue.",
    )
    status.set_defaults(run=cmd_status, subparser=status)
    _add_jobs(sub, listing)
    _add_one_job(sub)
    local.add_commands(sub)
    add_token_command(sub)
    return parser


def resolve_where(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """Sets args.targets (a list, or None with --node) from checked addresses; ValueError says what
    to pass instead; args.token from the token flags or environment."""
    args.targets = None
    resolve_token(args, env)
    if getattr(args, "command", "") == "token":
        return
    if getattr(args, "local", False):  # up, down: a state dir, no addresses
        local.resolve(args, env)
        return
    if getattr(args, "node", None):
        args.node = check_address(args.node, "--node")
        return
    from_env = args.target is None
    text = env.get(TARGETS_ENV, "") if from_env else args.target
    if not text.strip():
        node = "--node HOST:PORT or " if hasattr(args, "node") else ""
        raise ValueError(f"say where to run: {node}--target ADDR[,ADDR...] (or set {TARGETS_ENV})")
    args.targets = parse_targets(text, f"${TARGETS_ENV}" if from_env else "--target")
