from __future__ import annotations

from pathlib import Path

import pytest

from i2v_contract.memory import I2VGEN_XL
from i2v_contract.profiles import PROFILES, Profile, usable_profiles
from i2v_contract.wire import common_pb2
from i2v_node.gpu import (
    FirstWorkingProbe,
    HostProbe,
    MemoryMonitor,
    MemoryReading,
    OwnReservedProbe,
    ProbeError,
    ProfileChoice,
    SimulatedProbe,
    apply_cap,
    first_profile,
    make_monitor,
    tier_of,
)

GIB = 1024**3


def gpu(free: int, total: int = 24 * GIB) -> MemoryReading:
    return MemoryReading("cuda:0", "test card", True, total, free, "nvml")


@pytest.mark.parametrize(
    ("reading", "tier"),
    [
        pytest.param(
            MemoryReading("cpu", "cpu", False, 64 * GIB, 60 * GIB, "host"), common_pb2.TIER_CPU, id="host"
        ),
        pytest.param(gpu(6 * GIB), common_pb2.TIER_LT12, id="6GiB"),
        pytest.param(gpu(12 * GIB), common_pb2.TIER_12_16, id="12GiB"),
        pytest.param(gpu(20 * GIB), common_pb2.TIER_16_24, id="20GiB"),
        pytest.param(gpu(30 * GIB, 40 * GIB), common_pb2.TIER_24_40, id="30GiB"),
        pytest.param(gpu(79 * GIB, 80 * GIB), common_pb2.TIER_GE40, id="79GiB"),
    ],
)
def test_tier_of(reading: MemoryReading, tier: int) -> None:
    assert tier_of(reading) == tier


@pytest.mark.parametrize(
    ("reading", "cap", "free", "total"),
    [
        pytest.param(gpu(20 * GIB), None, 20 * GIB, 24 * GIB, id="no-cap"),
        pytest.param(gpu(20 * GIB), 10 * GIB, 10 * GIB, 10 * GIB, id="capped"),
        pytest.param(gpu(4 * GIB), 10 * GIB, 4 * GIB, 10 * GIB, id="free-below-cap"),
        pytest.param(
            MemoryReading("cpu", "cpu", False, 8 * GIB, 6 * GIB, "host"),
            GIB,
            6 * GIB,
            8 * GIB,
            id="host-memory-never-capped-by-max-vram",
        ),
    ],
)
def test_apply_cap(reading: MemoryReading, cap: int | None, free: int, total: int) -> None:
    capped = apply_cap(reading, cap)
    assert (capped.free_bytes, capped.total_bytes) == (free, total)


def test_capped_tier_drops() -> None:
    assert tier_of(apply_cap(gpu(30 * GIB, 40 * GIB), 10 * GIB)) == common_pb2.TIER_LT12


def choose(
    width: int, height: int, frames: int, free: int, ladder: tuple[Profile, ...] = PROFILES
) -> ProfileChoice:
    return first_profile(
        width,
        height,
        frames,
        gpu(free, 80 * GIB),
        ladder,
        arch=I2VGEN_XL,
        dtype_name="float16",
        accelerator=True,
    )


def test_first_profile_fastest_when_plenty() -> None:
    choice = choose(512, 512, 16, 79 * GIB)
    assert choice.fits
    assert choice.profile == PROFILES[0]
    assert choice.reason.startswith(f"profile {PROFILES[0].name} for 512x512x16: needs ")


def test_first_profile_leaner_when_tight() -> None:
    roomy = choose(1024, 1024, 16, 79 * GIB)
    tight = choose(1024, 1024, 16, 10 * GIB)
    names = [p.name for p in PROFILES]
    assert names.index(tight.profile.name) > names.index(roomy.profile.name)


def test_first_profile_falls_back_to_leanest() -> None:
    ladder = usable_profiles(True)
    choice = choose(1024, 1024, 32, GIB // 4, ladder)
    assert not choice.fits
    assert choice.profile == ladder[-1]
    assert choice.reason.startswith("no profile fits 1024x1024x32 in ")


def test_simulated_probe_fixed() -> None:
    reading = SimulatedProbe(6 * GIB).read()
    assert reading.accelerator
    assert reading.free_bytes == 6 * GIB
    assert tier_of(reading) == common_pb2.TIER_LT12


def test_simulated_probe_file_changes_at_runtime(tmp_path: Path) -> None:
    path = tmp_path / "free"
    path.write_text("20GiB\n")
    monitor = MemoryMonitor(SimulatedProbe(path=path))
    assert tier_of(monitor.read()) == common_pb2.TIER_16_24
    path.write_text("6GiB")
    assert tier_of(monitor.read()) == common_pb2.TIER_LT12
    # a briefly unreadable file keeps the last good value
    path.write_text("garbage")
    assert monitor.read().free_bytes == 6 * GIB


def test_simulated_probe_needs_readable_file_at_start(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="cannot read simulated free VRAM"):
        SimulatedProbe(path=tmp_path / "missing")


def test_simulated_probe_respects_cap() -> None:
    monitor = make_monitor("cpu", max_vram_bytes=8 * GIB, simulate_free_bytes=30 * GIB)
    assert monitor.read().free_bytes == 8 * GIB


def test_host_probe_reports_no_accelerator() -> None:
    reading = HostProbe().read()
    assert not reading.accelerator
    assert 0 < reading.free_bytes <= reading.total_bytes
    assert tier_of(make_monitor("cpu").read()) == common_pb2.TIER_CPU


class _Broken:
    def read(self) -> MemoryReading:
        raise ProbeError("driver gone")


class _Fixed:
    def __init__(self, reading: MemoryReading) -> None:
        self.reading = reading

    def read(self) -> MemoryReading:
        return self.reading


def test_first_working_probe_falls_back() -> None:
    probe = FirstWorkingProbe([_Broken(), _Fixed(gpu(5 * GIB))])
    assert probe.read().free_bytes == 5 * GIB
    assert probe.read().free_bytes == 5 * GIB


@pytest.mark.parametrize(
    ("name", "device_free", "own", "free"),
    [
        ("weights resident after a job count as ours", 10 * GIB, 5 * GIB, 15 * GIB),
        ("nothing held yet", 20 * GIB, 0, 20 * GIB),
        ("never above the device's total", 20 * GIB, 9 * GIB, 24 * GIB),
    ],
)
def test_own_reserved_memory_is_free_for_the_next_job(
    name: str, device_free: int, own: int, free: int
) -> None:
    reading = OwnReservedProbe(_Fixed(gpu(device_free)), lambda: own).read()
    assert (reading.free_bytes, reading.total_bytes) == (free, 24 * GIB), name


def test_own_reserved_memory_moves_the_first_profile_back_to_the_fastest() -> None:
    """After a `fast` job the weights stay on the card: the same job must get `fast` again."""

    def pick(reading: MemoryReading) -> str:
        kwargs = {"arch": I2VGEN_XL, "dtype_name": "float16", "accelerator": True}
        return first_profile(512, 512, 16, reading, PROFILES, **kwargs).profile.name

    device_free_after_job = gpu(16 * GIB - 5 * GIB)  # about 5 GiB of fp16 weights stayed resident
    assert pick(gpu(16 * GIB)) == "fast"
    assert pick(device_free_after_job) != "fast"  # what the node chose before it counted its own
    assert pick(OwnReservedProbe(_Fixed(device_free_after_job), lambda: 5 * GIB).read()) == "fast"


def test_first_working_probe_last_error_surfaces() -> None:
    with pytest.raises(ProbeError):
        FirstWorkingProbe([_Broken()]).read()


def test_cuda_without_gpu_fails_clearly() -> None:
    with pytest.raises(ProbeError, match="no way to read memory of cuda:0"):
        make_monitor("cuda:0")
