"""What every server process exports besides its own metrics: the process (CPU, memory, open files,
start time), the Python platform, and i2v_build_info{component, version} = 1.

The `_created` samples of counters and histograms are turned off, process-wide: Prometheus does not
use them, and they add one series per labelled child.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from i2v_contract.version import package_version


def register_process_metrics(registry: CollectorRegistry, component: str) -> None:
    """process_* and python_info on `registry`, and the build of `component` ('node', 'coordinator')."""
    disable_created_metrics()  # type: ignore[no-untyped-call]
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    build = Info("i2v_build", "The running build: its component and package version", registry=registry)
    build.info({"component": component, "version": package_version()})
