"""A job's coordinator events as Server-Sent Events (pure): names, ids, rate and ETA.

Each event's id is its place in the job's life, made from the job itself (attempt, state, the
node's elapsed milliseconds, stage, step), not from a counter: any gateway replica that a client
reconnects to with `Last-Event-ID` can tell which events the client has seen, and skips them. The
coordinators stream a job from its current state, so a resumed stream carries on from now without
repeating what came before.

Events: `state` (queued, assigned, running: node and attempt), `progress` (stage, step i/n, steps
per second, ETA of the denoising, node, profile), `retry` (a new attempt, or an out-of-memory retry
with a leaner profile), `failover` (the gateway re-attached through another coordinator; no id, it
is news about the stream, not the job) and the final `done` with the Video object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from i2v_contract.states import FINAL_STATES, stage_name, state_name
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_gateway.mapping import STATUS, percent

Key = tuple[int, int, int, int, int]


def event_key(event: coordinator_pb2.JobEvent) -> Key:
    p = event.progress
    elapsed_ms = round(p.elapsed_s * 1000) if event.HasField("progress") else 0
    return (event.attempt, event.state, elapsed_ms, p.stage, p.step)


def final_key(job: coordinator_pb2.Job) -> Key:
    """The key of a finished job's last event (as its final JobEvent would have)."""
    return (job.attempt, job.state, 0, 0, 0)


def key_text(key: Key) -> str:
    return ".".join(str(part) for part in key)


def parse_key(text: str | None) -> Key | None:
    """A Last-Event-ID back to its key; None for anything this gateway did not send."""
    if not text:
        return None
    parts = text.strip().split(".")
    if len(parts) != 5 or not all(part.isdigit() for part in parts):
        return None
    a, b, c, d, e = (int(part) for part in parts)
    return (a, b, c, d, e)


@dataclass(frozen=True)
class Sse:
    """One Server-Sent Event."""

    event: str
    data: dict[str, Any]
    id: str | None = None
    retry_ms: int | None = None

    def encode(self) -> bytes:
        lines = [f"event: {self.event}"]
        if self.id is not None:
            lines.append(f"id: {self.id}")
        if self.retry_ms is not None:
            lines.append(f"retry: {self.retry_ms}")
        lines.append("data: " + json.dumps(self.data, separators=(",", ":")))
        return ("\n".join(lines) + "\n\n").encode()


class Narrator:
    """JobEvents of one stream -> SSE events, skipping those at or before `after` (a resume) and
    before the latest one sent (a watch re-opened repeats the job's current state).

    The rate comes from the node's own elapsed times between denoise steps of the same attempt and
    profile, so it needs no clock.
    """

    def __init__(self, job_id: str, after: Key | None) -> None:
        self._job_id = job_id
        self._after = after
        self._attempt = after[0] if after else 0
        self._profile = ""
        self._base: tuple[float, int] | None = None  # (elapsed_s, step) of the first step seen
        self.failovers = 0
        self.ended = False

    def event(self, event: coordinator_pb2.JobEvent) -> list[Sse]:
        key = event_key(event)
        if self.ended or (self._after is not None and key <= self._after and event.state not in FINAL_STATES):
            self._track(event)  # seen before (a resume, or the current state again after a re-attach)
            return []
        self._after = key
        out: list[Sse] = []
        if event.attempt > self._attempt and self._attempt:
            out.append(
                Sse("retry", {"attempt": event.attempt, "retries": event.attempt - 1, "why": "new attempt"})
            )
        self._attempt = max(self._attempt, event.attempt)
        ident = key_text(key)
        if event.state in FINAL_STATES:
            self.ended = True
            out.append(Sse("done", self._state(event), ident))  # the route sends the Video object
        elif event.HasField("progress"):
            if event.progress.stage == common_pb2.STAGE_RETRY:
                why = event.progress.message or "out of memory; retrying with a leaner profile"
                out.append(Sse("retry", {"attempt": event.attempt, "retries": event.attempt - 1, "why": why}))
            out.append(Sse("progress", self._progress(event), ident))
        else:
            out.append(Sse("state", self._state(event), ident))
        return out

    def failover(self, lost: str, reason: str, next_target: str) -> Sse:
        self.failovers += 1
        data = {"lost": lost, "reason": reason, "next": next_target, "failovers": self.failovers}
        return Sse("failover", data)

    def _state(self, event: coordinator_pb2.JobEvent) -> dict[str, Any]:
        return {
            "id": self._job_id,
            "status": STATUS.get(event.state, "queued"),
            "state": state_name(event.state).lower(),
            "progress": percent(event.state, None),
            "node_id": event.node_id or None,
            "attempt": event.attempt,
            "retries": max(0, event.attempt - 1),
            "failovers": self.failovers,
        }

    def _track(self, event: coordinator_pb2.JobEvent) -> tuple[float | None, float | None]:
        """Steps per second and seconds of denoising left, from this attempt's steps so far."""
        p = event.progress
        if p.stage != common_pb2.STAGE_DENOISE or not p.step:
            return None, None
        if self._base is None or p.profile != self._profile or p.step <= self._base[1]:
            self._base, self._profile = (p.elapsed_s, p.step), p.profile
            return None, None
        took = p.elapsed_s - self._base[0]
        if took <= 0:
            return None, None
        rate = (p.step - self._base[1]) / took
        return rate, max(0, p.total_steps - p.step) / rate

    def _progress(self, event: coordinator_pb2.JobEvent) -> dict[str, Any]:
        p = event.progress
        rate, eta = self._track(event)
        data = self._state(event)
        data.update(
            stage=stage_name(p.stage),
            step=p.step,
            total_steps=p.total_steps,
            elapsed_s=round(p.elapsed_s, 3),
            rate=None if rate is None else round(rate, 3),
            eta_s=None if eta is None else round(eta, 1),
            profile=p.profile or None,
            message=p.message or None,
            progress=percent(event.state, p),
            node_id=p.node_id or event.node_id or None,
        )
        return data
