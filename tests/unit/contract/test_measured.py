"""Measured GPU costs (i2v_contract/measured.py): the format, the fit, the fallback, and the memory
model against the committed measurements once a CUDA run has produced them."""

import json
from typing import Any

import pytest

from i2v_contract import measured, memory
from i2v_contract.measured import MeasuredRun, Measurements, OverheadSample, RuntimeCosts
from i2v_contract.profiles import profile_by_name

GB = 10**9


def synthetic() -> dict[str, Any]:
    samples = [
        OverheadSample(base=5 * GB, allocated=9 * GB, reserved=9 * GB + 400_000_000),  # 0.10
        OverheadSample(base=5 * GB, allocated=7 * GB, reserved=7 * GB + 100_000_000),  # 0.05
        OverheadSample(base=5 * GB, allocated=13 * GB, reserved=13 * GB + 1_600_000_000),  # 0.20
    ]
    costs = measured.fit_costs([600_000_000, 640_000_000, 620_000_000], samples)
    fast = profile_by_name("fast")
    runs = tuple(
        MeasuredRun("fast", s, s, 16, memory.estimate_bytes(s, s, 16, fast, costs=costs)) for s in (512, 768)
    )
    return Measurements(
        device="synthetic GPU",
        costs=costs,
        context_samples=(600_000_000, 640_000_000, 620_000_000),
        overhead_samples=tuple(samples),
        runs=runs,
        versions={"torch": "2.11.0+cu130"},
    ).to_dict()


def test_the_fit_takes_the_median_of_each_sample_kind():
    data = synthetic()
    assert data["costs"] == {"cuda_context_bytes": 620_000_000, "allocator_overhead": 0.1}


def test_the_fit_needs_usable_samples():
    with pytest.raises(ValueError, match="context"):
        measured.fit_costs([], [OverheadSample(1, 2, 3)])
    with pytest.raises(ValueError, match="beyond its base"):
        measured.fit_costs([1], [OverheadSample(5, 5, 6)])


def test_the_fitted_overhead_never_goes_negative():
    # reserved below allocated cannot happen, but a stray sample must not make the overhead negative
    assert measured.fit_costs([1], [OverheadSample(0, 10, 9)]).allocator_overhead == 0.0


def test_round_trip_through_a_file(tmp_path):
    path = tmp_path / "gpu_memory.json"
    data = synthetic()
    path.write_text(json.dumps(data))
    found = measured.load(path)
    assert found is not None
    assert found.to_dict() == data
    assert found.costs == RuntimeCosts(620_000_000, 0.1)


def test_whole_floats_are_accepted(tmp_path):
    data = synthetic()
    data["runs"][0]["peak_bytes"] = float(data["runs"][0]["peak_bytes"])
    assert measured.parse(data).runs[0].peak_bytes == int(data["runs"][0]["peak_bytes"])


def test_an_absent_file_means_no_measurements(tmp_path):
    assert measured.load(tmp_path / "missing.json") is None


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(lambda d: d.update(schema=2), "schema", id="unknown-schema"),
        pytest.param(
            lambda d: d["costs"].update(allocator_overhead=1.5), "allocator_overhead", id="overhead-above-1"
        ),
        pytest.param(
            lambda d: d["costs"].update(cuda_context_bytes=-1), "cuda_context_bytes", id="negative-context"
        ),
        pytest.param(lambda d: d["runs"][0].update(width=512.5), r"runs\[0\].width", id="fractional-width"),
        pytest.param(
            lambda d: d["overhead_samples"][1].pop("reserved"),
            r"overhead_samples\[1\].reserved",
            id="sample-field-missing",
        ),
        pytest.param(lambda d: d.update(runs="none"), "runs", id="runs-not-a-list"),
    ],
)
def test_bad_files_name_the_field(tmp_path, mutate, field):
    data = synthetic()
    mutate(data)
    path = tmp_path / "gpu_memory.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=field):
        measured.load(path)


def test_costs_fall_back_to_the_assumed_ones(tmp_path, caplog):
    assumed = RuntimeCosts(512 * 1024**2, 0.1)
    assert measured.runtime_costs(assumed, tmp_path / "missing.json") == assumed
    broken = tmp_path / "gpu_memory.json"
    broken.write_text("{not json")
    assert measured.runtime_costs(assumed, broken) == assumed
    assert "ignoring measured GPU costs" in caplog.text
    broken.write_text(json.dumps(synthetic()))
    assert measured.runtime_costs(assumed, broken) == RuntimeCosts(620_000_000, 0.1)


def test_estimates_follow_the_costs():
    fast = profile_by_name("fast")
    base = memory.estimate_bytes(512, 512, 16, fast, costs=RuntimeCosts(0, 0.0))
    more = memory.estimate_bytes(512, 512, 16, fast, costs=RuntimeCosts(10**9, 0.0))
    assert more - base == 10**9
    assert memory.estimate_bytes(512, 512, 16, fast, costs=RuntimeCosts(0, 0.5)) > base


def test_without_a_committed_file_the_assumed_costs_apply():
    if measured.MEASURED_PATH.exists():
        pytest.skip("measurements are committed; test_model_reproduces_committed_measurements covers them")
    assert memory.RUNTIME_COSTS == memory.ASSUMED_COSTS


def test_model_reproduces_committed_measurements():
    found = measured.load()
    if found is None:
        pytest.skip(
            f"no {measured.MEASURED_PATH.name} committed yet: run scripts/gpu_check.sh on a CUDA machine "
            "and commit its gpu_memory.json there"
        )
    assert found.costs == memory.RUNTIME_COSTS
    assert found.costs == measured.fit_costs(found.context_samples, found.overhead_samples)
    off = []
    for run in found.runs:
        estimate = memory.estimate_bytes(run.width, run.height, run.frames, profile_by_name(run.profile))
        error = (estimate - run.peak_bytes) / run.peak_bytes
        if abs(error) > 0.10:
            off.append(f"{run.profile} {run.width}x{run.height}x{run.frames}: {error:+.1%}")
    assert not off, "memory model off by more than 10 %: " + "; ".join(off)
