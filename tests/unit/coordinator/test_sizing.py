"""Job sizing: required bytes and tier for a request, and the model shape nodes advertise."""

from __future__ import annotations

import pytest

from i2v_contract import memory
from i2v_contract.keys import NodeRecord
from i2v_contract.limits import Normalized
from i2v_contract.tiers import GIB
from i2v_contract.wire import common_pb2
from i2v_coordinator.routing import NodeView
from i2v_coordinator.sizing import ArchCache, advertised_arch, job_need

NORM = Normalized(
    prompt="p",
    negative_prompt="",
    width=512,
    height=512,
    frames=16,
    fps=8,
    steps=50,
    guidance_scale=9.0,
    seed=11,
    allow_degrade=False,
    return_frames=False,
    model="m",
)


def view(node_id: str, tier: int, model: str = "m") -> NodeView:
    return NodeView(node_id, "a", tier, 100 * GIB, busy=False, model=model, total_bytes=100 * GIB)


def record(models: tuple[str, ...], arch: dict[str, object]) -> NodeRecord:
    return NodeRecord(
        addr="a",
        gpu="",
        total_bytes=1,
        free_bytes=1,
        tier=1,
        busy=False,
        models=models,
        version="v",
        arch=arch,
    )


@pytest.mark.parametrize(
    ("nodes", "cpu_floor"),
    [
        pytest.param([], False, id="nothing known: the memory model's GPU tier"),
        pytest.param([view("c", common_pb2.TIER_CPU)], True, id="a CPU-only cluster (dev/CI) runs it on CPU"),
        pytest.param(
            [view("c", common_pb2.TIER_CPU), view("g", common_pb2.TIER_GE40)],
            False,
            id="never on CPU beside GPUs",
        ),
        pytest.param(
            [view("c", common_pb2.TIER_CPU), view("g", common_pb2.TIER_GE40, model="other")],
            True,
            id="the GPU serves another model: CPU-only for this one",
        ),
    ],
)
def test_job_need_uses_the_cpu_tier_only_in_a_cpu_only_cluster(
    nodes: list[NodeView], cpu_floor: bool
) -> None:
    need = job_need("j", NORM, memory.I2VGEN_XL, nodes)
    assert need.required_bytes == memory.required_bytes(512, 512, 16)
    expected = common_pb2.TIER_CPU if cpu_floor else memory.required_tier(512, 512, 16)
    assert need.required_tier == expected
    assert (need.job_id, need.model, need.min_tier) == ("j", "m", common_pb2.TIER_UNSPECIFIED)


def test_advertised_arch_comes_from_nodes_serving_the_model() -> None:
    small = memory.I2VGEN_XL.to_dict() | {"name": "copy"}
    records = {
        "a": record(("m",), small),
        "b": record(("other",), {"name": "broken"}),  # not this model, and undecodable anyway
        "c": record(("m",), {}),  # publishes no shape
    }
    assert advertised_arch(records, "m")[0].name == "copy"
    assert advertised_arch(records, "absent") == (memory.I2VGEN_XL, [])
    arch, ignored = advertised_arch({"b": records["b"]}, "")
    assert arch == memory.I2VGEN_XL  # the broken one is ignored ...
    assert len(ignored) == 1 and ignored[0].startswith("ignoring a node's arch summary")  # ... and said


class Adverts:
    def __init__(self, records: dict[str, NodeRecord]) -> None:
        self.records_ = records
        self.adverts_revision = 1
        self.reads = 0

    def records(self) -> dict[str, NodeRecord]:
        self.reads += 1
        return self.records_


def test_the_arch_cache_reads_adverts_once_per_revision_and_model() -> None:
    adverts = Adverts({"a": record(("m",), memory.I2VGEN_XL.to_dict() | {"name": "copy"})})
    cache = ArchCache(adverts)
    assert cache.get("m")[0].name == "copy" and cache.get("m")[0].name == "copy"
    assert cache.get("") == cache.get("")
    assert adverts.reads == 2  # one per model
    adverts.records_ = {"b": record(("m",), {"name": "broken"})}
    assert cache.get("m")[0].name == "copy"  # same revision: what was read stands
    adverts.adverts_revision = 2
    arch, notes = cache.get("m")
    assert arch == memory.I2VGEN_XL and len(notes) == 1
    assert cache.get("m") == (memory.I2VGEN_XL, [])  # the note comes with the read that found it
