"""What `i2v up` and `i2v down` print (pure): the addresses, the first video, the next commands."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from i2v_client.local.plan import PROMETHEUS, SCRAPE_S, Plan
from i2v_client.local.state import Record, Started


@dataclass(frozen=True)
class FirstDone:
    path: str  # as displayed
    seconds: float
    node: str  # the node that made it ("" when unknown)
    tier: str


def shown(path: Path, cwd: Path) -> str:
    """A path relative to the current directory when it is inside it, else absolute."""
    try:
        return str(path.relative_to(cwd)) or "."
    except ValueError:
        return str(path)


def i2v_flags(state: Path, default: Path, cwd: Path) -> str:
    """The --state-dir flag later commands need ('' for the default state dir)."""
    return "" if state == default else f" --state-dir {shlex.quote(shown(state, cwd))}"


def table(procs: Sequence[Started], leader: str = "") -> list[str]:
    rows = [("process", "address", "metrics", "what")]
    for p in procs:
        detail = p.detail + (" (leader)" if p.name == leader else "")
        if p.kind == PROMETHEUS:
            detail += f", scrapes every process every {SCRAPE_S} s"
        rows.append((p.name, p.addr, "" if p.kind == PROMETHEUS else p.metrics, detail))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3] for r in rows
    ]


def ready(
    plan: Plan,
    record: Record,
    first: FirstDone,
    *,
    state_shown: str,
    i2v: str,
    flags: str,
    leader: str,
) -> str:
    targets = ",".join(plan.targets)
    sample = shlex.quote(f"{state_shown}{os.sep}sample.png")
    up_s = record.timings.get("ready_s", 0.0)
    lines = [
        f"local cluster up in {up_s:.1f} s (state dir {state_shown}); {plan.why}",
        f"first video: {first.path} ({plan.first.width}x{plan.first.height}, {plan.first.frames} frames, "
        f"{plan.first.steps} steps) made in {first.seconds:.1f} s"
        + (f" on node {first.node} (tier {first.tier})" if first.node else ""),
        "",
        *table(record.procs, leader),
    ]
    if plan.gateway_url:
        lines.append(
            f"  web page: {plan.gateway_url}/  (OpenAI-compatible videos API under {plan.gateway_url}/v1, "
            f"its docs at {plan.gateway_url}/docs)"
        )
    if plan.prometheus_url:
        lines.append(f"  Prometheus: {plan.prometheus_url}/targets lists what it scrapes")
    lines += [
        f"  logs: {state_shown}{os.sep}logs{os.sep}",
        "",
        "next:",
        f"  export I2V_TARGETS={targets}      # then --target may be left out",
        f"  {i2v} status --target {targets}",
        f"  {i2v} generate {sample} --prompt 'a red fox running' {' '.join(plan.first.size_flags)} "
        f"--target {targets} -o out.mp4",
        f"  {i2v} jobs --target {targets}",
        f"  {i2v} down{flags}",
        "",
        (
            f"running in the background: {i2v} down{flags} stops it"
            if record.detached
            else "Ctrl-C stops it (nodes drain first)"
        ),
    ]
    return "\n".join(lines) + "\n"


def already_running(record: Record, state_shown: str, i2v: str, flags: str) -> str:
    alive = record.running()
    names = ", ".join(p.name for p in alive)
    how = "" if record.ready else " (still starting)"
    return (
        f"a local cluster is already running from {state_shown}{how}: {len(alive)} of "
        f"{len(record.procs)} processes alive ({names}); coordinators {','.join(record.targets)}\n"
        f"stop it with: {i2v} down{flags}\n"
    )


def stopped(stops: Sequence[tuple[Started, str]]) -> str:
    """One line per process: how it ended ('exited', 'killed after 15 s', 'was not running')."""
    return "".join(f"  {p.name:<12} {p.kind:<12} {how}\n" for p, how in stops)
