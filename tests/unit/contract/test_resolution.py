"""Resolution classes: the boundaries by pixel count and the bounded set of names."""

from __future__ import annotations

import pytest

from i2v_contract.resolution import NAMES, resolution_class


@pytest.mark.parametrize(
    ("width", "height", "name"),
    [
        pytest.param(64, 64, "512p", id="tiny-test-job"),
        pytest.param(512, 512, "512p", id="exactly-512-square"),
        pytest.param(384, 640, "512p", id="portrait-under-512-square"),
        pytest.param(512, 520, "768p", id="just-over-512-square"),
        pytest.param(768, 768, "768p", id="exactly-768-square"),
        pytest.param(1280, 704, "1024p", id="i2vgen-native-landscape"),
        pytest.param(1024, 1024, "1024p", id="exactly-1024-square"),
        pytest.param(1024, 1032, "other", id="just-over-1024-square"),
        pytest.param(1280, 1280, "other", id="largest-allowed"),
        pytest.param(0, 0, "512p", id="empty"),
    ],
)
def test_resolution_class(width: int, height: int, name: str) -> None:
    assert resolution_class(width, height) == name


def test_every_size_maps_into_the_four_names() -> None:
    seen = {resolution_class(w, h) for w in range(64, 1281, 8) for h in range(64, 1281, 8)}
    assert seen == set(NAMES)
    assert NAMES == ("512p", "768p", "1024p", "other")
