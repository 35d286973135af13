"""Peak memory of one engine attempt, as the result's peak_bytes reports it."""

from __future__ import annotations

import torch


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMeter:
    """Peak memory of one attempt. CUDA: torch's peak allocated bytes (weights included). CPU: growth
    of the process's peak resident set over its size at the start (Linux /proc; coarse: counts every
    thread of the process and the allocator's caching, 0 where /proc is missing)."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._rss_before = 0

    def start(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self._device)
            return
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self._rss_before = _proc_status_bytes("VmRSS")
        except OSError:
            self._rss_before = 0

    def peak(self) -> int:
        if self._device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self._device))
        if not self._rss_before:
            return 0
        try:
            return max(0, _proc_status_bytes("VmHWM") - self._rss_before)
        except OSError:
            return 0
