"""The commands that ask the coordinators: `status`, `jobs`, `get`, `cancel` and `watch`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from i2v_client.calls import ProgressLine, final_result
from i2v_client.cli.context import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Cluster, Context
from i2v_client.cli.progress import ProgressDisplay, mode_for, stop
from i2v_client.errors import CallError
from i2v_client.paging import collect_jobs
from i2v_client.text import format_job, format_jobs, format_nodes, format_status


def _cluster_call(args: argparse.Namespace, ctx: Context, call: Callable[[Cluster], str]) -> str | None:
    """Run one call against the coordinators; None after writing `error: CODE: message`."""
    client = ctx.connector.cluster(args.targets)
    try:
        return call(client)
    except CallError as exc:
        ctx.err.write(f"error: {exc}\n")
        return None
    finally:
        client.close()


def _print(text: str | None, ctx: Context) -> int:
    if text is None:
        return EXIT_FAILED
    ctx.out.write(text + "\n")
    return EXIT_OK


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    def status(client: Cluster) -> str:
        nodes = format_nodes(client.list_nodes()) or "(no live nodes)"
        return f"{format_status(client.cluster_status())}\n{nodes}"

    return _print(_cluster_call(args, ctx, status), ctx)


def cmd_jobs(args: argparse.Namespace, ctx: Context) -> int:
    want = ctx.listing.all_max if args.all else args.limit
    client = ctx.connector.cluster(args.targets)
    try:
        jobs, more = collect_jobs(
            lambda limit, token: client.list_jobs(args.state, limit, token),
            want,
            args.page_token,
            requests_max=ctx.listing.requests_max,
        )
    except CallError as exc:
        ctx.err.write(f"error: {exc}\n")
        return EXIT_FAILED
    finally:
        client.close()
    ctx.out.write(format_jobs(jobs) + "\n")
    if more:
        rest = "" if args.all else ", or --all"
        ctx.err.write(f"more jobs: go on with --page-token {more} (same --state){rest}\n")
    return EXIT_OK


def cmd_get(args: argparse.Namespace, ctx: Context) -> int:
    def get(client: Cluster) -> str:
        text = format_job(client.get(args.job_id))
        if args.output is None:
            return text
        done = client.download(args.job_id, args.output)  # verified; resumes a broken stream
        return f"{text}\nwrote {args.output}: {done.size} bytes, sha256 {done.sha256}"

    return _print(_cluster_call(args, ctx, get), ctx)


def cmd_cancel(args: argparse.Namespace, ctx: Context) -> int:
    return _print(_cluster_call(args, ctx, lambda c: format_job(c.cancel(args.job_id))), ctx)


def cmd_watch(args: argparse.Namespace, ctx: Context) -> int:
    display = ProgressDisplay(ctx.err, mode_for(ctx.err, args.quiet))
    line = ProgressLine(display.update, ctx.clock)
    client = ctx.connector.cluster(args.targets)
    try:
        final = client.watch(args.job_id, line.event, on_pause=line.pause)
        result = final_result(final)
    except CallError as exc:
        return stop(display, ctx.err, f"error: {exc}", EXIT_FAILED)
    except KeyboardInterrupt:
        why = f"interrupted: stopped watching; job {args.job_id} goes on"
        return stop(display, ctx.err, why, EXIT_INTERRUPTED)
    finally:
        client.close()
    display.close()
    ctx.out.write(f"job {args.job_id} succeeded: {result.artifact_uri}\n")
    return EXIT_OK
