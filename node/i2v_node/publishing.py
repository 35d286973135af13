"""What a node publishes in its NodeRecord, when a change is worth a write, its lease timing: pure."""

from __future__ import annotations

from dataclasses import dataclass

from i2v_contract.kv import DEFAULT_LEASE_MARGIN_S
from i2v_contract.memory import ArchSpec


@dataclass(frozen=True)
class NodeState:
    """What changes while a node runs; published in its NodeRecord."""

    busy: bool  # running a job, or not serving (loading, draining): routing must skip it
    free_bytes: int
    total_bytes: int
    tier: int  # common_pb2.Tier value
    serving: bool = True  # model loaded and not draining
    arch: ArchSpec | None = None  # the loaded model's shape (None until loaded)


@dataclass(frozen=True)
class PublishPolicy:
    min_interval_s: float = 0.5  # memory-only changes go out at most this often
    free_bytes_step: int = 256 * 1024**2  # free-memory moves smaller than this are not worth a write


DEFAULT_POLICY = PublishPolicy()


def publish_delay(
    published: NodeState | None, wanted: NodeState, last_put_at: float, now: float, policy: PublishPolicy
) -> float | None:
    """Seconds until `wanted` should be written (0 = now), or None when it is not worth a write.

    Busy, serving and model-shape changes go out at once (routing depends on them); tier, total
    and large free-memory moves are coalesced to one write per `min_interval_s`; small
    free-memory jitter is never written.
    """
    if (
        published is None
        or wanted.busy != published.busy
        or wanted.serving != published.serving
        or wanted.arch != published.arch
    ):
        return 0.0
    moved = (
        wanted.tier != published.tier
        or wanted.total_bytes != published.total_bytes
        or abs(wanted.free_bytes - published.free_bytes) >= policy.free_bytes_step
    )
    if not moved:
        return None
    return max(0.0, last_put_at + policy.min_interval_s - now)


def lease_timing(ttl: float) -> tuple[float, float]:
    """(keepalive interval, validity margin) for a lease TTL: ttl/3 and at most 1.5 s
    (docs/architecture.md, timings)."""
    return ttl / 3, min(DEFAULT_LEASE_MARGIN_S, ttl / 4)
