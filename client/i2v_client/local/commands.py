"""`i2v up` and `i2v down`: a whole cluster on this machine (etcd, two coordinators, nodes,
Prometheus when installed) from the installed console scripts, its first video, and an orderly stop.

`up` refuses a second cluster in the same state dir, starts each part and waits for it (bounded),
makes a video from the bundled sample image, prints the addresses and next commands, then stays
until Ctrl-C (or SIGTERM, or `i2v down`) and stops everything it started; `--detach` returns once
the first video is made. `down` stops a cluster from its state dir's record, by pid."""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from i2v_client.cli import types
from i2v_client.cli.context import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Context
from i2v_client.errors import CallError
from i2v_client.local import detect, launch, report, state
from i2v_client.local.launch import Interrupted, Launcher, StartFailed
from i2v_client.local.plan import (
    COORDINATOR,
    DEFAULT_CPU_NODES,
    ETCD,
    GATEWAY,
    NODE,
    PROMETHEUS,
    TINY,
    Options,
    Plan,
    plan,
)
from i2v_client.local.state import Record
from i2v_contract.tiers import tier_name
from i2v_contract.units import parse_bytes

READY_TIMEOUT_S = 600.0  # loading full-size weights can take minutes
VIDEO_TIMEOUT_S = 600
STALE = ("etcd", "artifacts", "prometheus", "logs")  # each `up` starts empty
SAMPLE = "sample.png"  # bundled (scripts/make_sample.py), copied to the state dir for later commands


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(0 if s.strip() in ("0", "cpu") else parse_bytes(s) for s in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not 1 <= len(sizes) <= 16:
        raise argparse.ArgumentTypeError(f"give 1..16 nodes, got {len(sizes)}")
    return sizes


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
    up = sub.add_parser(
        "up",
        help="run a whole cluster on this machine and make a first video",
        description="Run etcd, two coordinators, nodes (one per CUDA device, else CPU nodes on the tiny "
        "model) and Prometheus (when installed) on free loopback ports, make a video from a sample "
        "image, print the addresses, and stop it all on Ctrl-C.",
    )
    up.add_argument(
        "--detach", action="store_true", help="return once the first video is made; i2v down stops it"
    )
    up.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where nodes run: auto (a node per CUDA device torch sees, else CPU nodes), cpu or cuda",
    )
    up.add_argument(
        "--cpu-nodes",
        type=_sizes,
        default=DEFAULT_CPU_NODES,
        metavar="SIZE[,SIZE...]",
        help="without CUDA: one CPU node per size, reporting that much free VRAM (simulated; 0 = plain CPU) "
        "(default 10GiB,14GiB,20GiB)",
    )
    up.add_argument(
        "--model",
        default="",
        help="model for the nodes (default: cached full-size weights on a GPU, else tiny)",
    )
    up.add_argument("--online", action="store_true", help="let nodes download --model from the hub")
    up.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    up.add_argument(
        "--timeout",
        type=types.seconds,
        default=READY_TIMEOUT_S,
        metavar="S",
        help=f"give up starting after S seconds (default {READY_TIMEOUT_S:g})",
    )
    down = sub.add_parser(
        "down",
        help="stop the cluster `i2v up` runs",
        description="Stop the local cluster: nodes drain, then coordinators, Prometheus, etcd.",
    )
    for parser, run in ((up, cmd_up), (down, cmd_down)):
        parser.add_argument(
            "--state-dir",
            default=None,
            metavar="DIR",
            help=f"the cluster's state (default ${state.STATE_ENV}, else {state.DEFAULT_STATE_DIR})",
        )
        parser.set_defaults(run=run, subparser=parser, local=True)


def resolve(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """The state dir and environment a local command runs with (no addresses to check)."""
    cwd = Path.cwd()
    args.state = state.state_dir(args.state_dir, env, cwd)
    args.flags = report.i2v_flags(args.state, state.state_dir(None, env, cwd), cwd)
    args.env = env


def _i2v() -> str:
    """How to call this command again: `i2v` when that is this one on PATH, else its path."""
    me = Path(sys.argv[0])
    if me.name != "i2v":
        return "i2v"  # python -m i2v_client.cli
    found = shutil.which("i2v")
    if found and Path(found).resolve() == me.resolve():
        return "i2v"
    return report.shown(me.absolute(), Path.cwd())


def _fresh(root: Path, plan_: Plan) -> None:
    for name in STALE:
        shutil.rmtree(root / name, ignore_errors=True)
    (root / "logs").mkdir(parents=True)
    (root / "artifacts").mkdir()
    for rel, text in plan_.files.items():
        (root / rel).write_text(text)
    (root / SAMPLE).write_bytes((importlib.resources.files("i2v_client.local") / SAMPLE).read_bytes())


def _start_all(launcher: Launcher, plan_: Plan, deadline: float, ctx: Context) -> None:
    say = ctx.out.write
    etcd = plan_.of(ETCD)[0]
    say(f"starting etcd on {etcd.addr}\n")
    launcher.start(etcd)
    launcher.wait("etcd", lambda: launch.etcd_ready(etcd.addr), deadline, ctx.out)
    for proc in (*plan_.of(COORDINATOR), *plan_.of(GATEWAY), *plan_.of(NODE), *plan_.of(PROMETHEUS)):
        say(f"starting {proc.name:<10} {proc.addr:<22} {proc.detail}\n")
        launcher.start(proc)
    ctx.out.flush()
    names = [n.name for n in plan_.of(NODE)]
    with launch.cluster_client(plan_.targets) as client:
        launcher.wait("a leader", lambda: launch.leader_ready(client, len(plan_.targets)), deadline, ctx.out)
        say("coordinators up, a leader elected; waiting for the nodes to load the model\n")
        ctx.out.flush()
        launcher.wait("the nodes", lambda: launch.nodes_ready(client, names), deadline, ctx.out)
    if plan_.gateway_url:
        url = f"{plan_.gateway_url}/readyz"
        launcher.wait(
            "the gateway", lambda: None if launch.http_ok(url) else f"{url} not ready", deadline, ctx.out
        )
    if plan_.prometheus_url:
        launcher.wait("Prometheus", lambda: launch.prometheus_ready(plan_.prometheus_url), deadline, ctx.out)


def _first_video(root: Path, plan_: Plan, ctx: Context) -> report.FirstDone:
    """Generates the first video through the coordinators with the `i2v generate` command itself."""
    from i2v_client.cli import main  # the CLI imports this module for its argument tree

    f = plan_.first
    out = root / "first.mp4"
    began = ctx.clock()
    argv = ["generate", str(root / SAMPLE), "--prompt", f.prompt, *f.size_flags, "--seed", str(f.seed)]
    argv += ["--target", ",".join(plan_.targets), "-o", str(out), "--timeout", str(VIDEO_TIMEOUT_S)]
    argv += [] if plan_.model == TINY else ["--allow-degrade"]
    code = main(argv, env={}, out=ctx.out, err=ctx.err, clock=ctx.clock)
    if code != EXIT_OK or not out.is_file():
        raise StartFailed(f"the first video failed (i2v generate exited {code}); logs in {root / 'logs'}")
    seconds = ctx.clock() - began
    node = tier = ""
    with launch.cluster_client(plan_.targets) as client, contextlib.suppress(CallError):
        jobs = client.list_jobs(limit=1).jobs
        if jobs:  # which node made it, for the report only
            node = jobs[0].node_id
            tiers = {n.node_id: n.tier for n in client.list_nodes().nodes}
            tier = tier_name(tiers[node]) if node in tiers else ""
    return report.FirstDone(report.shown(out, Path.cwd()), seconds, node, tier)


def _leader(targets: list[str]) -> str:
    """The leader's id for the report; '' when none answers just now."""
    with launch.cluster_client(targets) as client:
        try:
            return client.cluster_status().leader_id
        except CallError:
            return ""


def _options(args: argparse.Namespace) -> Options:
    return Options(
        state_dir=args.state,
        cpu_nodes=args.cpu_nodes,
        device=args.device,
        model=args.model,
        prometheus=not args.no_prometheus,
        online=args.online,
    )


def _prepare(args: argparse.Namespace, ctx: Context) -> Plan | None:
    """The plan for this host, None after saying why there is none."""
    try:
        host = detect.host(args.env, device=args.device, want_prometheus=not args.no_prometheus)
        return plan(_options(args), host, launch.free_port)
    except (detect.Missing, ValueError) as err:
        ctx.err.write(f"i2v up: {err}\n")
        return None


def _bring_up(args: argparse.Namespace, ctx: Context, plan_: Plan, launcher: Launcher) -> str:
    """Starts everything, makes the first video, and returns the ready report."""
    record = launcher.record
    began = ctx.clock()
    _start_all(launcher, plan_, began + args.timeout, ctx)
    record.timings["ready_s"] = round(ctx.clock() - began, 2)
    ctx.out.write(f"cluster ready in {record.timings['ready_s']:.1f} s; making the first video\n")
    ctx.out.flush()
    first = _first_video(args.state, plan_, ctx)
    record.timings["first_video_s"] = round(first.seconds, 2)
    record.timings["up_s"] = round(ctx.clock() - began, 2)
    record.first_video = str(args.state / "first.mp4")
    record.ready = True
    state.write(args.state, record)
    return report.ready(
        plan_,
        record,
        first,
        state_shown=report.shown(args.state, Path.cwd()),
        i2v=_i2v(),
        flags=args.flags,
        leader=_leader(record.targets),
    )


def _supervise(launcher: Launcher, ctx: Context) -> None:
    """Until interrupted: say once when a process exits on its own (the rest keep running)."""
    told: set[str] = set()
    while True:
        for proc, code in launcher.exited():
            if proc.name not in told:
                told.add(proc.name)
                ctx.err.write(f"i2v up: {proc.name} exited with status {code}; its log: {proc.log}\n")
                ctx.err.flush()
        time.sleep(1.0)


def _stop(launcher: Launcher, ctx: Context) -> None:
    launch.ignore_stop_signals()
    ended = launch.stop(launcher.record.procs, launcher.popens, ctx.out)
    state.remove(launcher.root)
    ctx.out.write("stopped:\n" + report.stopped(ended))
    ctx.out.flush()


def _run(args: argparse.Namespace, ctx: Context, plan_: Plan, launcher: Launcher) -> int:
    """Brings the cluster up; stays until interrupted unless detached; stops it on any failure."""
    try:
        text = _bring_up(args, ctx, plan_, launcher)
    except StartFailed as err:
        ctx.err.write(f"i2v up: {err}\n")
        _stop(launcher, ctx)
        return EXIT_FAILED
    except (KeyboardInterrupt, Interrupted):
        ctx.err.write("i2v up: interrupted while starting\n")
        _stop(launcher, ctx)
        return EXIT_INTERRUPTED
    ctx.out.write("\n" + text)
    ctx.out.flush()
    if args.detach:
        return EXIT_OK
    try:
        _supervise(launcher, ctx)
    except (KeyboardInterrupt, Interrupted):
        ctx.out.write("\nstopping the local cluster\n")
    _stop(launcher, ctx)
    return EXIT_OK


def cmd_up(args: argparse.Namespace, ctx: Context) -> int:
    root: Path = args.state
    shown = report.shown(root, Path.cwd())
    try:
        with state.locked(root, blocking=False):
            record = state.read(root)
            if record is not None and (record.running() or record.supervisor.alive()):
                ctx.err.write(report.already_running(record, shown, _i2v(), args.flags))
                return EXIT_FAILED
            try:
                plan_ = _prepare(args, ctx)
            except KeyboardInterrupt:  # during the CUDA probe
                ctx.err.write("i2v up: interrupted; nothing was started\n")
                return EXIT_INTERRUPTED
            if plan_ is None:
                return EXIT_USAGE
            _fresh(root, plan_)
            launcher = Launcher(root, Record(state.me(), args.detach, model=plan_.model), args.env)
            state.write(root, launcher.record)
            with launch.interruptible():
                return _run(args, ctx, plan_, launcher)
    except state.Busy:
        record = state.read(root)
        if record is not None:
            ctx.err.write(report.already_running(record, shown, _i2v(), args.flags))
        else:
            ctx.err.write(f"i2v up: i2v down is busy in {shown}; try again when it is done\n")
        return EXIT_FAILED


def cmd_down(args: argparse.Namespace, ctx: Context) -> int:
    root: Path = args.state
    record = state.read(root)
    if record is None:
        ctx.out.write(f"no local cluster recorded in {report.shown(root, Path.cwd())}: nothing to stop\n")
        return EXIT_OK
    try:
        return _down(root, record, ctx)
    except KeyboardInterrupt:
        ctx.err.write(f"i2v down: interrupted; what still runs stays recorded: i2v down{args.flags}\n")
        return EXIT_INTERRUPTED


def _down(root: Path, record: Record, ctx: Context) -> int:
    if record.supervisor.alive():
        # A foreground `i2v up` (or one still starting) stops its own cluster, in order.
        ctx.out.write(f"asking i2v up (pid {record.supervisor.pid}) to stop the cluster\n")
        ctx.out.flush()
        launch.stop([record.supervisor], None, None, grace={"supervisor": 120.0})
    with state.locked(root):
        left = state.read(root)
        if left is None:
            ctx.out.write("stopped by i2v up\n")
            return EXIT_OK
        ended = launch.stop(left.procs, None, ctx.out)
        state.remove(root)
    ctx.out.write("stopped:\n" + report.stopped(ended))
    return EXIT_FAILED if any(how.startswith("STILL") for _, how in ended) else EXIT_OK
