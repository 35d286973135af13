"""The commands that ask the coordinators: `status`, `jobs`, `get` (and `get -o`, its video),
`cancel` and `watch`. Tables fit the terminal; `--wide` and `--json` are the other forms."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from i2v_client.calls import ProgressLine, final_result
from i2v_client.cli.context import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Cluster, Context
from i2v_client.cli.output import output_problem
from i2v_client.cli.progress import LINE_EVERY_S, ProgressDisplay, mode_for
from i2v_client.cli.report import capped, report
from i2v_client.cli.tables import form_of, print_job, print_jobs, print_status
from i2v_client.errors import CallError
from i2v_client.paging import collect_jobs
from i2v_client.text import clip
from i2v_contract.states import FINAL_STATES, SUCCEEDED, state_name
from i2v_contract.wire import coordinator_pb2

T = TypeVar("T")


def _cluster_call(args: argparse.Namespace, ctx: Context, call: Callable[[Cluster], T]) -> T | int:
    """Run `call` against the coordinators; on failure, the exit status after saying why."""
    client = ctx.connector.cluster(args.targets)
    try:
        return call(client)
    except CallError as exc:
        return report(exc, args, ctx)
    finally:
        client.close()


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    answer = _cluster_call(args, ctx, lambda c: (c.cluster_status(), c.list_nodes()))
    if isinstance(answer, int):
        return answer
    print_status(ctx.out, *answer, form_of(args))
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace, ctx: Context) -> int:
    want = ctx.listing.all_max if args.all else args.limit
    answer = _cluster_call(
        args,
        ctx,
        lambda c: collect_jobs(
            lambda limit, token: c.list_jobs(args.state, limit, token),
            want,
            args.page_token,
            requests_max=ctx.listing.requests_max,
        ),
    )
    if isinstance(answer, int):
        return answer
    jobs, more = answer
    print_jobs(ctx.out, jobs, form_of(args), more)
    if more:
        rest = "" if args.all else ", or --all"
        ctx.err.write(f"more jobs: go on with --page-token {more} (same --state){rest}\n")
    return EXIT_OK


def _write_video(args: argparse.Namespace, ctx: Context, client: Cluster) -> int:
    """`i2v get JOB -o OUT`: the job's video downloaded through the coordinators (verified, resumed
    across broken streams). A job that ended without one is said here; one not finished yet, the
    server refuses."""
    job = client.get(args.job_id)
    if job.state in FINAL_STATES and job.state != SUCCEEDED:
        job_id = clip(job.job_id)
        ctx.err.write(f"error: job {job_id} is {state_name(job.state).lower()}: it has no video to write\n")
        return EXIT_FAILED
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        done = client.download(job.job_id, args.output)
    except OSError as exc:
        ctx.err.write(f"error: cannot write {clip(str(args.output))}: {exc.strerror or exc}\n")
        return EXIT_USAGE
    ctx.out.write(f"wrote {args.output}: {done.size} bytes, sha256 {done.sha256}\n")
    return EXIT_OK


def cmd_get(args: argparse.Namespace, ctx: Context) -> int:
    if args.output is not None:
        problem = output_problem(args.output)
        if problem:
            ctx.err.write(f"error: {problem}\n")
            return EXIT_USAGE
        return _cluster_call(args, ctx, lambda c: _write_video(args, ctx, c))
    job = _cluster_call(args, ctx, lambda c: c.get(args.job_id))
    if isinstance(job, int):
        return job
    print_job(ctx.out, job, form_of(args))
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, ctx: Context) -> int:
    job = _cluster_call(args, ctx, lambda c: c.cancel(args.job_id))
    if isinstance(job, int):
        return job
    print_job(ctx.out, job, form_of(args))
    return EXIT_OK


def cmd_watch(args: argparse.Namespace, ctx: Context) -> int:
    display = ProgressDisplay(ctx.err, mode_for(ctx.err, args.quiet), ctx.clock, line_every_s=LINE_EVERY_S)
    line = ProgressLine(display.update, ctx.clock)
    client = ctx.connector.cluster(args.targets)
    try:
        final = client.watch(args.job_id, line.event, timeout=args.timeout, on_pause=display.pause)
        result = final_result(final)
    except CallError as exc:
        display.close()
        return report(exc, args, ctx)
    except KeyboardInterrupt:
        display.close()
        why = capped(f"interrupted: stopped watching; job {args.job_id} goes on", [args.job_id])
        ctx.err.write(why + "\n")
        return EXIT_INTERRUPTED
    finally:
        display.close()
        client.close()
    if args.json:
        print_job(ctx.out, final_job(final), form_of(args))
    else:
        ctx.out.write(f"job {clip(args.job_id)} succeeded: {result.artifact_uri}\n")
    return EXIT_OK


def final_job(event: coordinator_pb2.JobEvent) -> coordinator_pb2.Job:
    """A final event as the Job it ended (for `watch --json`)."""
    return coordinator_pb2.Job(
        job_id=event.job_id,
        state=event.state,
        attempt=event.attempt,
        node_id=event.node_id,
        result=event.result,
    )
