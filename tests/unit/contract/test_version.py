"""The package version every process reports: the installed distribution's, or "unknown"."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from i2v_contract.version import package_version

ROOT = Path(__file__).resolve().parents[3]


def _installed(found: str | None):
    def fake_version(name: str) -> str:
        assert name == "i2v-cluster"
        if found is None:
            raise metadata.PackageNotFoundError(name)
        return found

    return fake_version


@pytest.mark.parametrize(
    ("found", "reported"),
    [
        pytest.param("1.2.3", "1.2.3", id="installed-reports-its-version"),
        pytest.param("0.1.0.dev4+g1234abc", "0.1.0.dev4+g1234abc", id="dev-build-reported-as-is"),
        pytest.param(None, "unknown", id="not-installed-is-unknown"),
    ],
)
def test_the_version_is_the_installed_distributions(
    monkeypatch: pytest.MonkeyPatch, found: str | None, reported: str
) -> None:
    monkeypatch.setattr(metadata, "version", _installed(found))  # looked up on each call
    assert package_version() == reported


def test_an_installed_package_reports_the_version_in_pyproject() -> None:
    try:
        installed = metadata.version("i2v-cluster")
    except metadata.PackageNotFoundError:
        pytest.skip("i2v-cluster is not installed in this environment")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert installed == declared == package_version()
