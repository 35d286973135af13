"""Accelerator memory probing, the node's tier, and the first profile to try for a job.

Probes are thin adapters (NVML through nvidia-ml-py's `pynvml`, then torch, then host memory on a
CPU node); the decisions on top of a reading (`tier_of`, `apply_cap`, `first_profile`) are pure.
A testing-only probe makes a CPU node report a chosen free-VRAM figure, optionally re-read from a
file at every probe, so tier logic and "free memory dropped" scenarios run without GPUs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from i2v_contract.dtypes import dtype_bytes
from i2v_contract.memory import ArchSpec, choose_profile, estimate_bytes
from i2v_contract.profiles import Profile
from i2v_contract.tiers import tier_for_free_bytes
from i2v_contract.units import parse_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryReading:
    """One probe of the memory a job can use."""

    label: str  # metrics label: "cuda:0", "cpu", "simulated"
    name: str  # human-readable device name
    accelerator: bool  # False: host memory of a CPU node
    total_bytes: int
    free_bytes: int
    source: str  # "nvml", "torch", "host", "simulated"
    own_bytes: int = 0  # of free_bytes: what this process's allocator holds (counted free for its jobs)

    @property
    def used_bytes(self) -> int:
        return max(0, self.total_bytes - self.free_bytes)


class ProbeError(RuntimeError):
    """A probe could not read memory (no driver, NVML error, unreadable file)."""


class MemoryProbe(Protocol):
    def read(self) -> MemoryReading: ...


def tier_of(reading: MemoryReading) -> int:
    """The node's tier (common_pb2.Tier value): CPU for host memory, else by free accelerator bytes."""
    return tier_for_free_bytes(reading.free_bytes if reading.accelerator else None)


def apply_cap(reading: MemoryReading, cap_bytes: int | None) -> MemoryReading:
    """What a node capped at `cap_bytes` (--max-vram) may use; host memory is never capped."""
    if cap_bytes is None or not reading.accelerator:
        return reading
    return replace(
        reading,
        total_bytes=min(reading.total_bytes, cap_bytes),
        free_bytes=min(reading.free_bytes, cap_bytes),
    )


@dataclass(frozen=True)
class ProfileChoice:
    profile: Profile
    fits: bool  # False: nothing fits by the model; the leanest profile is tried anyway
    free_bytes: int
    reason: str = ""  # the memory model's answer in words, for the caller to log
    estimated_bytes: int = 0  # the memory model's peak for the job at `profile`


def first_profile(
    width: int,
    height: int,
    frames: int,
    reading: MemoryReading,
    ladder: Sequence[Profile],
    *,
    arch: ArchSpec,
    dtype_name: str,
    accelerator: bool,
) -> ProfileChoice:
    """The fastest profile the memory model says fits; the leanest when none does.

    Trying the leanest anyway is deliberate: the model keeps a safety margin, and the engine's OOM
    handling turns a real failure into RESOURCE_EXHAUSTED with a message saying what would fit.
    """
    ladder_t = tuple(ladder)
    fit = choose_profile(
        width,
        height,
        frames,
        reading.free_bytes,
        ladder_t,
        arch=arch,
        dtype_bytes=dtype_bytes(dtype_name),
        accelerator=accelerator,
    )
    profile = ladder_t[-1] if fit.profile is None else fit.profile
    estimate = estimate_bytes(
        width,
        height,
        frames,
        profile,
        arch=arch,
        dtype_bytes=dtype_bytes(dtype_name),
        accelerator=accelerator,
    )
    return ProfileChoice(profile, fit.profile is not None, reading.free_bytes, fit.reason, estimate)


def parse_size_file(path: Path) -> int:
    try:
        return parse_bytes(path.read_text().strip())
    except (OSError, ValueError) as err:
        raise ProbeError(f"cannot read simulated free VRAM from {path}: {err}") from None


class SimulatedProbe:
    """TESTING ONLY: a CPU node that reports `free_bytes` of accelerator memory.

    With `path`, the figure is re-read at every probe (the last good value is kept when the file is
    briefly unreadable), so a test can make free memory drop while the node runs. The simulated card
    reports total == free: nothing else uses it.
    """

    def __init__(self, free_bytes: int | None = None, path: Path | None = None) -> None:
        if (free_bytes is None) == (path is None):
            raise ValueError("give exactly one of free_bytes and path")
        self._path = path
        self._last = free_bytes if free_bytes is not None else parse_size_file(path)  # type: ignore[arg-type]

    def read(self) -> MemoryReading:
        if self._path is not None:
            try:
                self._last = parse_size_file(self._path)
            except ProbeError as err:
                log.warning("keeping simulated free VRAM %d bytes: %s", self._last, err)
        return MemoryReading(
            "simulated", "simulated accelerator (testing)", True, self._last, self._last, "simulated"
        )


class HostProbe:
    """Host memory of a CPU node (MemAvailable from /proc/meminfo, else sysconf)."""

    def read(self) -> MemoryReading:
        total, free = _host_memory()
        return MemoryReading("cpu", "cpu", False, total, free, "host")


def _host_memory() -> tuple[int, int]:
    try:
        fields: dict[str, int] = {}
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                fields[key] = int(rest.split()[0]) * 1024
        return fields["MemTotal"], fields["MemAvailable"]
    except (OSError, KeyError, ValueError, IndexError):
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page


def cuda_index(device: str) -> int:
    return int(device.partition(":")[2] or 0)


class NvmlProbe:
    """Free/total memory of one GPU via NVML (device-wide: other processes' use counts too)."""

    def __init__(self, index: int) -> None:
        try:
            import pynvml
        except ImportError as err:
            raise ProbeError(f"nvidia-ml-py is not installed: {err}") from None
        self._nvml: Any = pynvml
        self._index = index
        try:
            pynvml.nvmlInit()
            self._handle = self._find_handle(index)
            name = pynvml.nvmlDeviceGetName(self._handle)
        except pynvml.NVMLError as err:
            raise ProbeError(f"NVML unavailable: {err}") from None
        self._name = name.decode() if isinstance(name, bytes) else str(name)

    def _find_handle(self, index: int) -> Any:
        # torch numbers devices after CUDA_VISIBLE_DEVICES, NVML does not: match by UUID when possible.
        try:
            import torch

            uuid = str(torch.cuda.get_device_properties(index).uuid)
            return self._nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        except Exception as err:
            log.debug("NVML lookup by UUID failed (%s); using index %d", err, index)
            return self._nvml.nvmlDeviceGetHandleByIndex(index)

    def read(self) -> MemoryReading:
        try:
            info = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
        except self._nvml.NVMLError as err:
            raise ProbeError(f"NVML read failed: {err}") from None
        return MemoryReading(f"cuda:{self._index}", self._name, True, int(info.total), int(info.free), "nvml")


class TorchCudaProbe:
    """Free/total memory of one GPU via torch.cuda.mem_get_info (fallback when NVML is missing)."""

    def __init__(self, index: int) -> None:
        import torch

        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ProbeError(f"cuda:{index} is not available to torch")
        self._index = index
        self._name = torch.cuda.get_device_name(index)

    def read(self) -> MemoryReading:
        import torch

        try:
            free, total = torch.cuda.mem_get_info(self._index)
        except RuntimeError as err:
            raise ProbeError(f"torch.cuda.mem_get_info failed: {err}") from None
        return MemoryReading(f"cuda:{self._index}", self._name, True, int(total), int(free), "torch")


class OwnReservedProbe:
    """A device probe plus what this process's allocator already holds on the device.

    NVML and mem_get_info report memory free to anyone; the pipeline's own resident weights and
    torch's cached blocks are not in it, yet the next job of this process can use them, and the
    memory model's estimate counts the weights itself. Without this, the weights would count twice
    after the first job (leaner profiles than needed, and a smaller tier published to routing).
    """

    def __init__(self, inner: MemoryProbe, reserved: Callable[[], int]) -> None:
        self._inner = inner
        self._reserved = reserved

    def read(self) -> MemoryReading:
        reading = self._inner.read()
        own = max(0, self._reserved())
        return replace(reading, free_bytes=min(reading.total_bytes, reading.free_bytes + own), own_bytes=own)


def _torch_reserved(index: int) -> Callable[[], int]:
    def reserved() -> int:
        import torch

        return int(torch.cuda.memory_reserved(index))

    return reserved


class FirstWorkingProbe:
    """Reads from the first probe that answers; a failing probe is skipped from then on."""

    def __init__(self, probes: Sequence[MemoryProbe]) -> None:
        if not probes:
            raise ValueError("no probes")
        self._probes = list(probes)

    def read(self) -> MemoryReading:
        while len(self._probes) > 1:
            try:
                return self._probes[0].read()
            except ProbeError as err:
                log.warning("memory probe failed (%s); falling back to the next probe", err)
                self._probes.pop(0)
        return self._probes[0].read()


class MemoryMonitor:
    """The node's view of its memory: probe, then the --max-vram cap. Thread-safe."""

    def __init__(self, probe: MemoryProbe, cap_bytes: int | None = None) -> None:
        self._probe = probe
        self._cap = cap_bytes
        self._lock = threading.Lock()

    def read(self) -> MemoryReading:
        with self._lock:
            return apply_cap(self._probe.read(), self._cap)


def make_monitor(
    device: str,
    *,
    max_vram_bytes: int | None = None,
    simulate_free_bytes: int | None = None,
    simulate_file: Path | None = None,
) -> MemoryMonitor:
    """The monitor for a node's device: simulated (testing), host (cpu) or NVML with torch fallback."""
    if simulate_free_bytes is not None or simulate_file is not None:
        return MemoryMonitor(SimulatedProbe(simulate_free_bytes, simulate_file), max_vram_bytes)
    if device == "cpu":
        return MemoryMonitor(HostProbe(), None)
    index = cuda_index(device)
    probes: list[MemoryProbe] = []
    for make in (NvmlProbe, TorchCudaProbe):
        try:
            probes.append(make(index))
        except ProbeError as err:
            log.warning("%s not usable for %s: %s", make.__name__, device, err)
    if not probes:
        raise ProbeError(f"no way to read memory of {device}: NVML and torch.cuda both failed")
    return MemoryMonitor(OwnReservedProbe(FirstWorkingProbe(probes), _torch_reserved(index)), max_vram_bytes)


def limit_torch_memory(device: str, cap_bytes: int, total_bytes: int) -> float:
    """Make torch's allocator refuse more than `cap_bytes` on a CUDA device; returns the fraction set."""
    import torch

    fraction = min(1.0, cap_bytes / total_bytes) if total_bytes > 0 else 1.0
    torch.cuda.set_per_process_memory_fraction(fraction, cuda_index(device))
    log.info(
        "capped %s at %d bytes (memory fraction %.3f) because --max-vram was given",
        device,
        cap_bytes,
        fraction,
    )
    return fraction
