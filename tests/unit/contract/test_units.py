"""Byte sizes as operators write them."""

from __future__ import annotations

import pytest

from i2v_contract.units import parse_bytes

GIB = 1024**3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("4096", 4096, id="plain-bytes"),
        pytest.param("24GiB", 24 * GIB, id="gib"),
        pytest.param("1.5 GiB", int(1.5 * GIB), id="fraction-with-space"),
        pytest.param("16GB", 16 * 1000**3, id="decimal-gb"),
        pytest.param("512mib", 512 * 1024**2, id="lower-case-unit"),
    ],
)
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("GiB", id="unit-only"),
        pytest.param("12 parsecs", id="unknown-unit"),
        pytest.param("-3GiB", id="negative"),
        pytest.param("1e9", id="exponent"),
    ],
)
def test_parse_bytes_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_bytes(text)
