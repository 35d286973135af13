"""The KV interface's value types and helpers: compare validation, range deletes, prefix ranges and
paged reads (run on the in-memory fake)."""

from __future__ import annotations

import pytest

from i2v_contract.kv import Compare, Delete, count_prefix, prefix_end, range_pages
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV


@pytest.mark.parametrize(
    ("target", "value"),
    [
        pytest.param("value", 1, id="value-given-an-int"),
        pytest.param("create", b"1", id="create-given-bytes"),
        pytest.param("mod", b"x", id="mod-given-bytes"),
        pytest.param("version", b"", id="version-given-empty-bytes"),
    ],
)
def test_compare_value_type_must_match_target(target: str, value: int | bytes) -> None:
    with pytest.raises(ValueError, match="needs"):
        Compare("/k", target, "==", value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("delete", "key", "covered"),
    [
        pytest.param(Delete("/a"), "/a", True, id="single-key-itself"),
        pytest.param(Delete("/a"), "/a/b", False, id="single-key-not-its-children"),
        pytest.param(Delete("/a/", prefix=True), "/a/b", True, id="range-covers-keys-under-it"),
        pytest.param(Delete("/a/", prefix=True), "/ab", False, id="range-not-a-sibling-prefix"),
    ],
)
def test_a_delete_covers_its_key_or_its_range(delete: Delete, key: str, covered: bool) -> None:
    assert delete.covers(key) is covered


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        pytest.param("/i2v/v1/jobs/", "/i2v/v1/jobs0", id="slash-becomes-zero"),
        pytest.param("/a", "/b", id="last-letter-bumped"),
        pytest.param("~", "\x7f", id="tilde-becomes-del"),
    ],
)
def test_prefix_end_is_the_first_key_past_the_prefix(prefix: str, end: str) -> None:
    assert prefix_end(prefix) == end
    assert prefix + "\x7e" * 8 < end


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("", id="empty"),
        pytest.param("/a\x7f", id="ends-with-del"),
        pytest.param("/é", id="ends-non-ascii"),
    ],
)
def test_prefix_end_refuses_prefixes_without_a_successor(prefix: str) -> None:
    with pytest.raises(ValueError, match="must be non-empty"):
        prefix_end(prefix)


async def test_pages_cover_every_key_under_the_prefix_once_in_order() -> None:
    kv = MemoryKV(ManualClock())
    keys = [f"/p/{i:02d}" for i in range(7)]
    for key in [*keys, "/o/before", "/q/after"]:
        await kv.put(key, b"v")
    pages = [page async for page in range_pages(kv, "/p/", 3)]
    assert [[item.key for item in page.items] for page in pages] == [keys[0:3], keys[3:6], keys[6:]]
    assert [page.more for page in pages] == [True, True, False]
    assert await count_prefix(kv, "/p/") == 7


@pytest.mark.parametrize(
    ("stored", "pages"),
    [
        pytest.param(0, 1, id="empty-range-one-empty-page"),
        pytest.param(3, 1, id="exactly-one-full-page"),
        pytest.param(4, 2, id="one-over-a-page"),
    ],
)
async def test_paging_stops_after_the_last_page(stored: int, pages: int) -> None:
    kv = MemoryKV(ManualClock())
    for i in range(stored):
        await kv.put(f"/p/{i}", b"v")
    seen = [page async for page in range_pages(kv, "/p/", 3)]
    assert len(seen) == pages
    assert sum(len(page.items) for page in seen) == stored
