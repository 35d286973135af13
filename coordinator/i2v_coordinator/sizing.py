"""Job sizing: the memory and the tier a normalised request needs, for the model shape live nodes
advertise; routing takes the result as its input (routing.JobNeed).

Pure: node records and views come in, and a node summary that cannot be read is returned as a note
for the caller to log.

memory.required_tier never says CPU: CPU nodes are for development and CI. The rule here: when every
live node serving the model is a CPU node, the job's floor is the CPU tier (bytes still checked); in
a cluster with GPUs, jobs never go to CPU nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from i2v_contract import memory
from i2v_contract.keys import NodeRecord
from i2v_contract.limits import Normalized
from i2v_contract.memory import ArchSpec
from i2v_contract.wire import common_pb2
from i2v_coordinator.routing import JobNeed, NodeView, serves_model


def advertised_arch(records: Mapping[str, NodeRecord], model: str) -> tuple[ArchSpec, list[str]]:
    """The model's shape as live nodes advertise it (the largest if several); full-size I2VGen-XL
    when no node serving `model` ("" = any) publishes one. Also why any summary was ignored."""
    archs, ignored = [], []
    for record in records.values():
        if record.arch and (not model or model in record.models):
            try:
                archs.append(ArchSpec.from_dict(record.arch))
            except ValueError as exc:
                ignored.append(f"ignoring a node's arch summary: {exc}")
    return max(archs, key=lambda a: a.total_params, default=memory.I2VGEN_XL), ignored


def job_need(job_id: str, norm: Normalized, arch: ArchSpec, nodes: Sequence[NodeView]) -> JobNeed:
    """What a normalised request needs: required bytes and tier (CPU only in a CPU-only cluster)."""
    need_bytes = memory.required_bytes(norm.width, norm.height, norm.frames, arch=arch)
    tier = memory.required_tier(norm.width, norm.height, norm.frames, arch=arch)
    need = JobNeed(job_id, need_bytes, tier, model=norm.model)
    serving = [n for n in nodes if n.alive and serves_model(n, need)]
    if serving and all(n.tier == common_pb2.TIER_CPU for n in serving):
        return JobNeed(job_id, need_bytes, common_pb2.TIER_CPU, model=norm.model)
    return need


class Adverts(Protocol):
    """What the node table says nodes advertise (registry.NodeRegistry)."""

    def records(self) -> dict[str, NodeRecord]: ...

    @property
    def adverts_revision(self) -> int: ...


class ArchCache:
    """advertised_arch per model, kept while what nodes advertise is unchanged: parsing every node's
    arch on every Submit cost milliseconds at a thousand nodes, and adverts change far more rarely
    than busy flags."""

    def __init__(self, adverts: Adverts) -> None:
        self._adverts = adverts
        self._revision = -1
        self._by_model: dict[str, tuple[ArchSpec, list[str]]] = {}

    def get(self, model: str) -> tuple[ArchSpec, list[str]]:
        """The arch for `model` and the notes of the read that found it (new notes only once)."""
        revision = self._adverts.adverts_revision
        if revision != self._revision:
            self._revision, self._by_model = revision, {}
        cached = self._by_model.get(model)
        if cached is not None:
            return cached[0], []
        found = self._by_model[model] = advertised_arch(self._adverts.records(), model)
        return found
