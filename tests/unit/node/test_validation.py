"""Request checks that need no gRPC: a dispatch's job_id/attempt, output URIs inside the node's
store, and the JobSpec a validated request becomes."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import torch
from PIL import Image

from i2v_common.artifacts import FileStore
from i2v_contract.limits import SEED_MAX, FieldError, Normalized
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node.validation import NodeFault, check_output_uri, dispatch_error, job_spec, output_name


@pytest.mark.parametrize(
    ("job_id", "attempt", "field", "says"),
    [
        pytest.param("", 0, None, "", id="standalone"),
        pytest.param("job-1", 1, None, "", id="dispatched"),
        pytest.param("a/b", 1, "job_id", "job_id: 'a/b' is not allowed; job ids are", id="slash-in-job-id"),
        pytest.param("a b", 1, "job_id", "job_id: 'a b' is not allowed", id="space-in-job-id"),
        pytest.param("j\x00", 1, "job_id", "job_id: 'j\\x00' is not allowed", id="nul-in-job-id"),
        pytest.param("j" * 129, 1, "job_id", "is longer than 128 characters", id="long-job-id"),
        pytest.param(
            "job-5",
            0,
            "attempt",
            "attempt: 0 must be >= 1 for a dispatched job (job_id job-5)",
            id="attempt-zero",
        ),
    ],
)
def test_dispatch_error(job_id: str, attempt: int, field: str | None, says: str) -> None:
    request = node_pb2.NodeGenerateRequest(
        request=common_pb2.GenerationRequest(), job_id=job_id, attempt=attempt
    )
    error = dispatch_error(request)
    assert (error.field if error else None) == field
    assert says in (error.message if error else "")


def test_output_name_inside_the_store(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    assert output_name(store.uri_for("jobs/j1/output-1.mp4"), store) == "jobs/j1/output-1.mp4"


def test_output_uri_outside_the_store_is_the_nodes_fault(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    with pytest.raises(NodeFault) as err:
        output_name((tmp_path / "elsewhere" / "x.mp4").as_uri(), store)
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "outside this node's artifact store" in err.value.message and "--artifacts" in err.value.message


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("../../../tmp/x", id="parent-segments"),
        pytest.param("jobs/j1/a/b/c.mp4", id="five-segments"),
        pytest.param("jobs//x.mp4", id="empty-segment"),
        pytest.param("jobs/j1/.hidden", id="dot-first"),
        pytest.param("jobs/j1/x y.mp4", id="space"),
        pytest.param("jobs/j1/%2e%2e", id="percent-encoded"),
        pytest.param("jobs/j1/x\x00.mp4", id="nul"),
        pytest.param("jobs/j1/" + "x" * 129, id="long-segment"),
        pytest.param("jobs/j1/" + "x" * 124 + ".mp4", id="frame-name-too-long"),
        pytest.param("", id="the-store-itself"),
    ],
)
def test_output_uri_with_a_name_no_artifact_may_have_is_invalid(tmp_path: Path, name: str) -> None:
    store = FileStore(tmp_path / "store")
    with pytest.raises(FieldError) as err:
        check_output_uri(f"{store.root_url}/{name}", store)
    assert err.value.field == "output_uri" and "names" in err.value.message


def test_output_uri_the_coordinator_sends_is_valid(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    check_output_uri(store.uri_for(f"jobs/{'j' * 128}/attempt-1000.mp4"), store)


def test_job_spec_carries_every_normalised_field() -> None:
    norm = Normalized(
        prompt="p", negative_prompt="n", width=64, height=48, frames=8, fps=7, steps=3,
        guidance_scale=9.0, seed=5, allow_degrade=True, return_frames=True, model="tiny",
    )  # fmt: skip
    image = Image.new("RGB", (64, 48))
    spec = job_spec(norm, image)
    assert spec.image is image
    assert (spec.prompt, spec.negative_prompt, spec.width, spec.height, spec.frames, spec.fps) == (
        "p",
        "n",
        64,
        48,
        8,
        7,
    )
    assert (spec.steps, spec.guidance_scale, spec.seed, spec.allow_degrade, spec.return_frames) == (
        3,
        9.0,
        5,
        True,
        True,
    )


@pytest.mark.parametrize(
    "seed",
    [pytest.param(2**63, id="above-int64"), pytest.param(SEED_MAX, id="largest-uint64")],
)
def test_torch_seeds_with_every_uint64_seed_as_it_is(seed: int) -> None:
    """The engine hands the seed to torch.Generator.manual_seed and torch.manual_seed unchanged."""
    assert torch.Generator().manual_seed(seed).initial_seed() == seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        assert torch.initial_seed() == seed
