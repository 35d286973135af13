"""Tables for `i2v status` and `i2v jobs` that fit the terminal (80 columns when not one), the
`--wide` form (every column, nothing shortened: the SDK's text forms) and `--json` for scripts.

Job ids are never shortened (people copy them into `i2v get`); what gives way is the outcome: a
long URI keeps its scheme and its last path segments (`file://…/j1/out-1.mp4`), an error its start.
"""

from __future__ import annotations

import argparse
import enum
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console, RenderableType
from rich.table import Table

from i2v_client.text import format_job, format_jobs, format_nodes, format_status, shorten_uri
from i2v_contract.states import state_name
from i2v_contract.tiers import tier_name
from i2v_contract.wire import coordinator_pb2

NARROW = 80  # when the output is not a terminal
NODE_ID_MAX = 16
OUTCOME_MIN = 12
GAP = 2  # between columns
RICH_ROWS_MAX = 500


class Form(enum.Enum):
    TABLE = "table"
    WIDE = "wide"
    JSON = "json"


def form_of(args: argparse.Namespace) -> Form:
    if getattr(args, "json", False):
        return Form.JSON
    return Form.WIDE if getattr(args, "wide", False) else Form.TABLE


def console(stream: TextIO) -> Console:
    """A console on `stream`: the terminal's width on a terminal, else NARROW, no colour codes."""
    return Console(file=stream, width=None if stream.isatty() else NARROW, highlight=False)


def show(out: TextIO, renderable: RenderableType) -> None:
    """`renderable` through a console on `out`, without the blanks rich pads the last column with."""
    screen = console(out)
    with screen.capture() as captured:
        screen.print(renderable)
    out.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def as_json(message: Message | Sequence[Message], **more: Any) -> str:
    """protobuf's JSON mapping with the .proto field names; a list is {"items": [...]}."""

    def one(m: Message) -> dict[str, Any]:
        return MessageToDict(m, preserving_proto_field_name=True)

    body: dict[str, Any] = (
        one(message) if isinstance(message, Message) else {"items": [one(m) for m in message]}
    )
    return json.dumps({**body, **more}, indent=2, sort_keys=True)


def _table() -> Table:
    return Table(box=None, pad_edge=False, padding=(0, GAP // 2), header_style="bold")


def _created(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%m-%d %H:%M") if unix_s else "-"


def _node(node_id: str) -> str:
    return node_id if len(node_id) <= NODE_ID_MAX else node_id[: NODE_ID_MAX - 1] + "…"


def _outcome(job: coordinator_pb2.Job, width: int) -> str:
    if job.state == coordinator_pb2.JOB_STATE_SUCCEEDED:
        return shorten_uri(job.result.artifact_uri, width)
    error = job.error.splitlines()[0] if job.error else ""
    return error if len(error) <= width else error[: width - 1] + "…"


def _job_layout(jobs: Sequence[coordinator_pb2.Job], width: int) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of `i2v jobs` in `width` columns: JOB, STATE, TRY, NODE, CREATED (UTC; dropped
    when it leaves the outcome too little room) and OUTCOME, shortened to the room left."""
    rows = [
        [
            j.job_id,
            state_name(j.state).lower(),
            str(j.attempt),
            _node(j.node_id or "-"),
            _created(j.created_at),
        ]
        for j in jobs
    ]
    headers = ["JOB", "STATE", "TRY", "NODE", "CREATED (UTC)"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    room = width - sum(widths) - GAP * len(widths)
    if room < OUTCOME_MIN:  # the outcome matters more than when
        headers, widths, rows = headers[:-1], widths[:-1], [r[:-1] for r in rows]
        room = width - sum(widths) - GAP * len(widths)
    room = max(OUTCOME_MIN, room)
    return [*headers, "OUTCOME"], [[*row, _outcome(job, room)] for job, row in zip(jobs, rows, strict=True)]


def _aligned(headers: list[str], rows: list[list[str]]) -> str:
    """The table as aligned plain lines (TRY right-aligned), as rich lays out `_table()`."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if h == "TRY" else c.ljust(w) for h, c, w in zip(headers, cells, widths, strict=True)
        ]
        return (" " * GAP).join(padded).rstrip()

    return "\n".join([line(headers), *map(line, rows)])


def jobs_table(jobs: Sequence[coordinator_pb2.Job], width: int) -> Table | str:
    """`i2v jobs` in `width` columns (`_job_layout`): a rich table, or past RICH_ROWS_MAX rows (rich
    takes about a millisecond a row) the same layout as plain aligned lines."""
    if not jobs:
        return "no jobs"
    headers, rows = _job_layout(jobs, width)
    if len(rows) > RICH_ROWS_MAX:
        return _aligned(headers, rows)
    table = _table()
    for header in headers:
        table.add_column(header, no_wrap=True, justify="right" if header == "TRY" else "left")
    for row in rows:
        table.add_row(*row)
    return table


def _health(n: coordinator_pb2.NodeInfo) -> str:
    if n.set_aside:
        return f"{n.node_id}: SET ASIDE after {n.consecutive_failures} failed: {n.health_reason}"
    if n.cooldown_s > 0:
        failed = f"{n.consecutive_failures} failed: {n.health_reason}"
        return f"{n.node_id}: cooling down {n.cooldown_s:.0f}s after {failed}"
    return ""


def nodes_table(nodes: coordinator_pb2.ListNodesResponse) -> Table:
    """The node table of `i2v status`: one row per live node; held-back nodes are flagged here and
    explained below the table (`node_notes`)."""
    gib = 1024**3
    table = _table()
    for header, right in (("NODE", False), ("ADDRESS", False), ("TIER", False), ("FREE / TOTAL GiB", True)):
        table.add_column(header, no_wrap=True, justify="right" if right else "left")
    table.add_column("STATE", no_wrap=True, overflow="ellipsis", max_width=18)
    table.add_column("MODEL", no_wrap=True, overflow="ellipsis")
    for n in nodes.nodes:
        state = "set aside" if n.set_aside else "cooling" if n.cooldown_s > 0 else "idle"
        if n.busy or n.job_id:
            state = f"busy {n.job_id}".strip()
        memory = f"{n.free_bytes / gib:.1f} / {n.total_bytes / gib:.1f}"
        table.add_row(_node(n.node_id), n.addr, tier_name(n.tier), memory, state, n.model)
    return table


def node_notes(nodes: coordinator_pb2.ListNodesResponse) -> list[str]:
    return [note for note in map(_health, nodes.nodes) if note]


def print_status(
    out: TextIO,
    status: coordinator_pb2.ClusterStatusResponse,
    nodes: coordinator_pb2.ListNodesResponse,
    form: Form,
) -> None:
    if form is Form.JSON:
        listed = [MessageToDict(n, preserving_proto_field_name=True) for n in nodes.nodes]
        out.write(as_json(status, nodes=listed) + "\n")
        return
    out.write(format_status(status) + "\n")
    if not nodes.nodes or form is Form.WIDE:
        out.write((format_nodes(nodes) or "(no live nodes)") + "\n")
        return
    show(out, nodes_table(nodes))
    for note in node_notes(nodes):
        out.write(note + "\n")


def print_jobs(out: TextIO, jobs: Sequence[coordinator_pb2.Job], form: Form, more: str) -> None:
    if form is Form.JSON:
        out.write(as_json(jobs, next_page_token=more) + "\n")
    elif form is Form.WIDE:
        out.write(format_jobs(jobs) + "\n")
    else:
        table = jobs_table(jobs, console(out).width)
        if isinstance(table, str):
            out.write(table + "\n")
        else:
            show(out, table)


def print_job(out: TextIO, job: coordinator_pb2.Job, form: Form) -> None:
    out.write((as_json(job) if form is Form.JSON else format_job(job)) + "\n")
