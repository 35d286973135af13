"""Request checks that need no gRPC: a dispatch's job_id/attempt, output URIs inside the node's
store, and the JobSpec a validated request becomes."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import torch
from PIL import Image

from i2v_common.artifacts import FileStore
from i2v_contract.limits import SEED_MAX, Normalized
from i2v_contract.wire import common_pb2, node_pb2
from i2v_node.validation import NodeFault, dispatch_error, job_spec, output_name


@pytest.mark.parametrize(
    ("job_id", "attempt", "error"),
    [
        pytest.param("", 0, None, id="standalone"),
        pytest.param("job-1", 1, None, id="dispatched"),
        pytest.param("a/b", 1, "job_id 'a/b' must not contain '/'", id="slash-in-job-id"),
        pytest.param(
            "job-5", 0, "attempt (0) must be >= 1 for a dispatched job (job_id job-5)", id="attempt-zero"
        ),
    ],
)
def test_dispatch_error(job_id: str, attempt: int, error: str | None) -> None:
    request = node_pb2.NodeGenerateRequest(
        request=common_pb2.GenerationRequest(), job_id=job_id, attempt=attempt
    )
    assert dispatch_error(request) == error


def test_output_name_inside_the_store(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    assert output_name(store.uri_for("jobs/j1/output-1.mp4"), store) == "jobs/j1/output-1.mp4"


def test_output_uri_outside_the_store_is_the_nodes_fault(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    with pytest.raises(NodeFault) as err:
        output_name((tmp_path / "elsewhere" / "x.mp4").as_uri(), store)
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "outside this node's artifact store" in err.value.message and "--artifacts" in err.value.message


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
