"""The installed package version, reported by nodes, coordinators and the CLI."""

from __future__ import annotations

from importlib import metadata


def package_version() -> str:
    try:
        return metadata.version("i2v-cluster")
    except metadata.PackageNotFoundError:
        return "unknown"
