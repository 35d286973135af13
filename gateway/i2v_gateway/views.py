"""JSON views for the web page (pure): the request fields' ranges and defaults, the cluster, and
byte ranges of a download."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from i2v_contract.limits import Limits
from i2v_contract.tiers import tier_name
from i2v_contract.wire import coordinator_pb2

PRESETS = {"512p": (512, 512), "768p": (768, 768), "1024p": (1024, 1024)}


def limits_view(limits: Limits) -> dict[str, Any]:
    """Every field's range and default, and every limit by its own name (so limits added later show)."""
    fields = {
        "width": {"min": limits.min_size, "max": limits.max_width, "multiple": limits.size_multiple,
                  "default": limits.default_width},
        "height": {"min": limits.min_size, "max": limits.max_height, "multiple": limits.size_multiple,
                   "default": limits.default_height},
        "frames": {"min": 1, "max": limits.max_frames, "default": limits.default_frames},
        "fps": {"min": 1, "max": limits.max_fps, "default": limits.default_fps},
        "steps": {"min": 1, "max": limits.max_steps, "default": limits.default_steps},
        "guidance": {"min": limits.min_guidance, "max": limits.max_guidance,
                     "default": limits.default_guidance},
        "seed": {"min": 0, "max": 2**64 - 1, "default": None},
        "prompt": {"max_chars": limits.max_prompt_chars},
        "negative_prompt": {"max_chars": limits.max_prompt_chars},
        "input_reference": {"max_bytes": limits.max_image_bytes, "max_pixels": limits.max_image_pixels,
                            "formats": [f.lower() for f in limits.image_formats]},
        "allow_degrade": {"default": False},
    }  # fmt: skip
    presets = {name: f"{w}x{h}" for name, (w, h) in PRESETS.items()}
    return {"object": "limits", "fields": fields, "presets": presets, "limits": dataclasses.asdict(limits)}


def cluster_view(
    status: coordinator_pb2.ClusterStatusResponse, nodes: coordinator_pb2.ListNodesResponse
) -> dict[str, Any]:
    """Leader, coordinators, nodes (tier, free memory, current job, health) and the queue."""
    return {
        "object": "cluster",
        "leader": {"id": status.leader_id or None, "addr": status.leader_addr or None},
        "epoch": status.epoch,
        "answered_by": status.answered_by,
        "etcd_error": status.etcd_error or None,
        "coordinators": [{"id": m.id, "addr": m.addr, "leader": m.leader} for m in status.members],
        "queue": {"queued": status.queued, "running": status.running},
        "tiers": [{"tier": tier_name(t.tier), "nodes": t.nodes, "busy": t.busy} for t in status.tiers],
        "nodes": [
            {
                "id": n.node_id,
                "addr": n.addr,
                "tier": tier_name(n.tier),
                "gpu": n.gpu,
                "total_bytes": n.total_bytes,
                "free_bytes": n.free_bytes,
                "busy": n.busy,
                "job_id": n.job_id or None,
                "model": n.model,
                "version": n.version,
                "cooldown_s": round(n.cooldown_s, 1),
                "set_aside": n.set_aside,
                "health_reason": n.health_reason or None,
            }
            for n in nodes.nodes
        ],
    }


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class Unsatisfiable(ValueError):
    """A Range that asks for no byte of the artifact (416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A Range header -> (first, last) inclusive, or None to send the whole artifact (no header,
    or one this server does not serve ranges for, such as several ranges: RFC 9110 lets it send
    all). Unsatisfiable when the range starts past the end."""
    if not header:
        return None
    found = _RANGE.match(header.strip())
    if found is None or (not found.group(1) and not found.group(2)):
        return None
    first_s, last_s = found.groups()
    if not first_s:  # the last N bytes
        length = int(last_s)
        if length == 0 or size == 0:
            raise Unsatisfiable(header)
        return max(0, size - length), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if last_s and last < first:
        return None  # not a valid range: ignored, as RFC 9110 says
    if first >= size:
        raise Unsatisfiable(header)
    return first, min(last, size - 1)
