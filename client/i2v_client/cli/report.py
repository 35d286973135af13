"""What a command prints when a call fails, and its exit status: one line, the server's words,
nothing unbounded, and a straight answer where the code alone would puzzle (a node asked for a
coordinator's call, a job cancelled elsewhere)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import grpc

from i2v_client.cli.context import EXIT_FAILED, EXIT_USAGE, Context
from i2v_client.errors import CallError, JobEnded
from i2v_client.probe import COORDINATOR, NODE
from i2v_client.text import ECHO_MAX, clip
from i2v_contract.wire import coordinator_pb2


def capped(message: str, echoes: Sequence[str]) -> str:
    """`message` with every long user-supplied value in it cut down to ECHO_MAX characters."""
    for echo in echoes:
        if len(echo) > ECHO_MAX:
            message = message.replace(echo, clip(echo))
    return message


def where_flag(args: argparse.Namespace) -> str:
    """The flags that say where this command ran, for a command to copy."""
    return f"--target {','.join(args.targets)}" if args.targets else f"--node {args.node}"


def _wrong_server(exc: CallError, args: argparse.Namespace, ctx: Context) -> str:
    """The sentence for UNIMPLEMENTED at `exc.address`: which server that is and the flag to use."""
    address = exc.address or args.node
    kind = ctx.connector.kind(address)
    if args.targets is None and kind == COORDINATOR:
        return f"error: {address} is a coordinator, not a node: use --target {address}"
    if args.targets is not None and kind == NODE:
        if hasattr(args, "node"):
            return f"error: {address} is a node, not a coordinator: use --node {address}"
        return (
            f"error: {address} is a node, not a coordinator: `i2v {args.command}` needs coordinator addresses"
        )
    wanted = "node" if args.targets is None else "coordinator"
    return f"error: {address} is not an i2v {wanted} (it answered {exc}); check the address"


def explain(exc: CallError, args: argparse.Namespace, ctx: Context) -> tuple[str, int]:
    """The line to print for `exc` and the exit status."""
    echoes = [args.job_id] if getattr(args, "job_id", None) else []
    if exc.code is grpc.StatusCode.UNIMPLEMENTED and (exc.address or args.targets is None):
        return capped(_wrong_server(exc, args, ctx), echoes), EXIT_USAGE
    if isinstance(exc, JobEnded) and exc.state == coordinator_pb2.JOB_STATE_CANCELLED:
        return capped(
            f"job {exc.job_id} was cancelled: {exc.message.partition(': ')[2]}", echoes
        ), EXIT_FAILED
    return capped(f"error: {exc}{_access_hint(exc, args)}", echoes), EXIT_FAILED


def _access_hint(exc: CallError, args: argparse.Namespace) -> str:
    """What to do about a refused token or a job that is not the caller's."""
    sent = getattr(args, "token_from", "")
    if exc.code is grpc.StatusCode.UNAUTHENTICATED:
        if sent:
            return f" (the token from {sent} was refused: ask the operator for a current one)"
        return " (no token was sent: pass --token-file PATH or set I2V_TOKEN)"
    if exc.code is grpc.StatusCode.PERMISSION_DENIED:
        who = f"the token from {sent}" if sent else "no token"
        return f" ({who} does not allow this: use the submitting client's token, or an admin's)"
    return ""


def report(exc: CallError, args: argparse.Namespace, ctx: Context) -> int:
    line, code = explain(exc, args, ctx)
    ctx.err.write(line + "\n")
    return code
