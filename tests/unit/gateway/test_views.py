"""Range headers, limits and the cluster view (pure, table-driven)."""

from __future__ import annotations

import pytest

from i2v_contract.limits import DEFAULT_LIMITS
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_gateway.views import Unsatisfiable, byte_range, cluster_view, limits_view


@pytest.mark.parametrize(
    ("header", "want"),
    [
        pytest.param(None, None, id="none"),
        pytest.param("bytes=0-99", (0, 99), id="first-100"),
        pytest.param("bytes=100-", (100, 999), id="from"),
        pytest.param("bytes=-10", (990, 999), id="suffix"),
        pytest.param("bytes=-5000", (0, 999), id="suffix-longer-than-file"),
        pytest.param("bytes=900-5000", (900, 999), id="past-end-clipped"),
        pytest.param("bytes=5-2", None, id="backwards-ignored"),
        pytest.param("bytes=0-1,5-6", None, id="multi-ignored"),
        pytest.param("items=0-1", None, id="other-unit-ignored"),
        pytest.param("bytes=-", None, id="empty-ignored"),
    ],
)
def test_byte_range(header: str | None, want: tuple[int, int] | None) -> None:
    assert byte_range(header, 1000) == want


@pytest.mark.parametrize(
    "header", [pytest.param("bytes=1000-", id="at-end"), pytest.param("bytes=-0", id="none")]
)
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        byte_range(header, 1000)


def test_limits_view_has_every_field_range_and_default() -> None:
    view = limits_view(DEFAULT_LIMITS)
    assert view["fields"]["width"] == {"min": 64, "max": 1280, "multiple": 8, "default": 512}
    assert view["fields"]["steps"]["default"] == DEFAULT_LIMITS.default_steps
    assert view["presets"] == {"512p": "512x512", "768p": "768x768", "1024p": "1024x1024"}
    assert view["limits"]["max_frames"] == DEFAULT_LIMITS.max_frames


def test_cluster_view() -> None:
    status = coordinator_pb2.ClusterStatusResponse(
        leader_id="c1",
        leader_addr="h:1",
        queued=2,
        running=1,
        members=[coordinator_pb2.Member(id="c1", addr="h:1", leader=True)],
    )
    nodes = coordinator_pb2.ListNodesResponse(
        nodes=[
            coordinator_pb2.NodeInfo(
                node_id="n1", tier=common_pb2.TIER_16_24, free_bytes=7, busy=True, job_id="j"
            )
        ]
    )
    view = cluster_view(status, nodes)
    assert view["leader"] == {"id": "c1", "addr": "h:1"} and view["queue"] == {"queued": 2, "running": 1}
    (node,) = view["nodes"]
    assert (node["id"], node["tier"], node["free_bytes"], node["busy"], node["job_id"]) == (
        "n1",
        "16-24",
        7,
        True,
        "j",
    )
