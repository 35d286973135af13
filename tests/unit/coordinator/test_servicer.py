"""Pure helpers of the coordinator servicer: job sizing, advertised model shape, stored request."""

from __future__ import annotations

import pytest

from i2v_contract import memory
from i2v_contract.keys import NodeRecord
from i2v_contract.limits import Normalized
from i2v_contract.tiers import GIB
from i2v_contract.wire import common_pb2
from i2v_coordinator.routing import NodeView
from i2v_coordinator.servicer import advertised_arch, image_ext, job_need, stored_request

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
        ([], False),  # nothing known: the memory model's GPU tier
        ([view("c", common_pb2.TIER_CPU)], True),  # a CPU-only cluster (dev/CI) runs it on CPU
        (
            [view("c", common_pb2.TIER_CPU), view("g", common_pb2.TIER_GE40)],
            False,
        ),  # never on CPU beside GPUs
        ([view("c", common_pb2.TIER_CPU), view("g", common_pb2.TIER_GE40, model="other")], True),
    ],
)
def test_job_need_uses_the_cpu_tier_only_in_a_cpu_only_cluster(
    nodes: list[NodeView], cpu_floor: bool
) -> None:
    need_bytes, tier = job_need("j", NORM, memory.I2VGEN_XL, nodes)
    assert need_bytes == memory.required_bytes(512, 512, 16)
    expected = common_pb2.TIER_CPU if cpu_floor else memory.required_tier(512, 512, 16)
    assert tier == expected


def test_advertised_arch_comes_from_nodes_serving_the_model() -> None:
    small = memory.I2VGEN_XL.to_dict() | {"name": "copy"}
    records = {
        "a": record(("m",), small),
        "b": record(("other",), {"name": "broken"}),  # not this model, and undecodable anyway
        "c": record(("m",), {}),  # publishes no shape
    }
    assert advertised_arch(records, "m").name == "copy"
    assert advertised_arch(records, "absent") == memory.I2VGEN_XL
    assert advertised_arch({"b": records["b"]}, "") == memory.I2VGEN_XL  # the broken one is ignored


def test_stored_request_fixes_every_default_and_points_at_the_stored_image() -> None:
    req = stored_request(NORM, "file:///s/in.png")
    assert req.image_uri == "file:///s/in.png" and not req.image
    assert (req.width, req.frames, req.steps, req.seed, req.model) == (512, 16, 50, 11, "m")
    assert req.HasField("seed")


@pytest.mark.parametrize(
    ("data", "ext"),
    [(b"\x89PNG\r\n", "png"), (b"\xff\xd8\xff", "jpg"), (b"RIFF....WEBP", "webp"), (b"??", "img")],
)
def test_image_ext(data: bytes, ext: str) -> None:
    assert image_ext(data) == ext
