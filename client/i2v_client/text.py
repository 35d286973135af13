"""Jobs, nodes and cluster status as text for people (what `i2v` prints), and the job state words
it accepts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from i2v_contract.states import state_name
from i2v_contract.tiers import tier_name
from i2v_contract.wire import coordinator_pb2

ECHO_MAX = 80  # the most of a user-supplied value a message repeats


def clip(text: str, limit: int = ECHO_MAX) -> str:
    """`text` at most `limit` characters: a longer one keeps its start and end around an ellipsis."""
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head) :]}"


def shorten_uri(uri: str, width: int) -> str:
    """`uri` in at most `width` characters, keeping what tells artifacts apart: the scheme and as many
    trailing path segments as fit (`file://…/jobs/j1/out-1.mp4`), else the segments alone, else the
    end of the name."""
    if len(uri) <= width:
        return uri
    scheme, sep, rest = uri.partition("://")
    segments = (rest if sep else uri).split("/")[1:]
    for prefix in ([f"{scheme}{sep}…"] if sep else []) + ["…"]:
        tail = ""
        for segment in reversed(segments):
            if len(prefix) + len(tail) + 1 + len(segment) > width:
                break
            tail = f"/{segment}{tail}"
        if tail:
            return prefix + tail
    return "…" + uri[len(uri) - max(0, width - 1) :]


def _state(state: int) -> str:
    return state_name(state).lower()


def format_status(status: coordinator_pb2.ClusterStatusResponse) -> str:
    """`i2v status`: leader, epoch, members, nodes by tier, queue; etcd when it is out of reach."""
    lines = [
        f"leader {status.leader_id or '(none)'} at {status.leader_addr or '-'}, epoch {status.epoch} "
        f"(answered by {status.answered_by})",
        "members: "
        + (", ".join(f"{m.id}{'*' if m.leader else ''} {m.addr}" for m in status.members) or "none"),
        "nodes: "
        + (
            ", ".join(f"{tier_name(t.tier)} {t.nodes} ({t.busy} busy)" for t in status.tiers)
            or "none registered"
        ),
        f"jobs: {status.queued} queued, {status.running} assigned or running",
    ]
    if status.nodes_cooling or status.nodes_set_aside:
        lines.append(
            f"held back: {status.nodes_cooling} cooling down, {status.nodes_set_aside} set aside "
            "after repeated failures (see the node table)"
        )
    if status.etcd_error:
        lines.append(f"etcd: {status.etcd_error}; the lines above are {status.answered_by}'s last view")
    return "\n".join(lines)


def parse_states(text: str) -> list[int]:
    """'queued,running' -> JobState values; ValueError naming the allowed words."""
    names = {
        _state(v): v for v in coordinator_pb2.JobState.values() if v != coordinator_pb2.JOB_STATE_UNSPECIFIED
    }
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    bad = [w for w in words if w not in names]
    if bad or not words:
        raise ValueError(
            f"unknown job state {', '.join(bad) or repr(text)}; use a comma-separated list of "
            + ", ".join(names)
        )
    return list(dict.fromkeys(names[w] for w in words))


def _clock_time(unix_s: float) -> str:
    if not unix_s:
        return "-"
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _took(job: coordinator_pb2.Job) -> str:
    if not job.finished_at or not job.created_at:
        return "-"
    return f"{job.finished_at - job.created_at:.1f}s"


def format_jobs(jobs: Sequence[coordinator_pb2.Job]) -> str:
    """`i2v jobs`: one line per job, newest first, with its outcome (video URI or error)."""
    if not jobs:
        return "no jobs"
    header = f"{'JOB':<32} {'STATE':<9} {'TRY':>3} {'NODE':<14} {'CREATED (UTC)':<20} {'TOOK':>7}  OUTCOME"
    lines = [header]
    for job in jobs:
        if job.state == coordinator_pb2.JOB_STATE_SUCCEEDED:
            outcome = job.result.artifact_uri
        else:
            outcome = job.error.splitlines()[0][:80] if job.error else ""
        lines.append(
            f"{job.job_id:<32} {_state(job.state):<9} {job.attempt:>3} {job.node_id or '-':<14} "
            f"{_clock_time(job.created_at):<20} {_took(job):>7}  {outcome}"
        )
    return "\n".join(lines)


def _node_health(n: coordinator_pb2.NodeInfo) -> str:
    if n.set_aside:
        return f"  SET ASIDE after {n.consecutive_failures} failed: {n.health_reason}"
    if n.cooldown_s > 0:
        return f"  cooling down {n.cooldown_s:.0f}s after {n.consecutive_failures} failed: {n.health_reason}"
    return ""


def format_nodes(nodes: coordinator_pb2.ListNodesResponse) -> str:
    """`i2v status`'s node table: one line per live node, with its dispatch health when it is held back."""
    gib = 1024**3
    return "\n".join(
        f"{n.node_id:<16} {n.addr:<22} tier {tier_name(n.tier):<6} free {n.free_bytes / gib:6.1f} / "
        f"{n.total_bytes / gib:6.1f} GiB  {'busy ' + n.job_id if n.busy or n.job_id else 'idle'}  {n.model}"
        f"{_node_health(n)}"
        for n in nodes.nodes
    )


def format_job(job: coordinator_pb2.Job) -> str:
    """`i2v get JOB` / `i2v cancel JOB`: the job's state and, when finished, its outcome."""
    line = f"{job.job_id} {_state(job.state)} attempt {job.attempt}"
    if job.node_id:
        line += f" on {job.node_id}"
    line += f", needs tier {tier_name(job.required_tier)}"
    if job.state == coordinator_pb2.JOB_STATE_SUCCEEDED:
        r = job.result
        line += f"\nvideo: {r.artifact_uri} (sha256 {r.sha256[:12]})"
        line += (
            f"\nproduced: {r.frames} frames {r.width}x{r.height} @ {r.fps} fps, {r.steps} steps, "
            f"seed {r.seed}, profile {r.profile}, took {_took(job)}"
        )
        if r.degradations:
            line += "\ndegraded: " + ", ".join(r.degradations)
    elif job.error:
        line += f"\nerror: {job.error}"
    return line
