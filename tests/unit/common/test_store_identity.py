"""Artifact store agreement on MemoryKV and real directories: the comparison, a coordinator's
publish-or-check, and a node's wait, id check and canary round trip."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from i2v_common.artifacts import FileStore
from i2v_common.store_identity import STORE_ID_NAME, StoreMismatch, agree, canary_name, mismatch, publish
from i2v_contract.keys import Keys, StoreRecord
from tests.fakes.clock import ManualClock
from tests.fakes.memory_kv import MemoryKV

KEYS = Keys("/t/")
RECORD = StoreRecord(id="abc", uri="file:///srv/artifacts")


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        pytest.param("abc", None, id="same-id-agrees"),
        pytest.param(
            "xyz",
            "artifact store mismatch: --artifacts /mnt/a holds store id xyz but the cluster's "
            "coordinators use abc at URI file:///srv/artifacts; give this process the same store",
            id="other-id",
        ),
        pytest.param(
            None,
            "artifact store mismatch: --artifacts /mnt/a holds no store id but the cluster's "
            "coordinators use abc at URI file:///srv/artifacts; give this process the same store",
            id="no-id",
        ),
    ],
)
def test_a_mismatch_names_both_stores_and_the_fix(found: str | None, expected: str | None) -> None:
    why = mismatch(RECORD, found, "/mnt/a")
    if expected is None:
        assert why is None
    else:
        assert why is not None and why.startswith(expected)


@pytest.mark.parametrize(
    ("node_id", "name"),
    [
        pytest.param("n1", "cluster/canary-n1", id="plain-id"),
        pytest.param("gpu box:7", "cluster/canary-gpu_box_7", id="unsafe-characters-replaced"),
    ],
)
def test_canary_name_is_a_valid_artifact_name(tmp_path: Path, node_id: str, name: str) -> None:
    assert canary_name(node_id) == name
    FileStore(tmp_path).put(canary_name(node_id), b"x")


async def test_first_coordinator_publishes_and_the_next_agree(tmp_path: Path) -> None:
    kv = MemoryKV(ManualClock())
    store = FileStore(tmp_path / "shared")
    first = await publish(kv, KEYS, store, "shared")
    assert first.uri == store.root_url
    assert store.get(store.uri_for(STORE_ID_NAME)).decode() == first.id
    got = await kv.get(KEYS.store)
    assert got is not None and got.lease == 0 and StoreRecord.from_json(got.value) == first
    assert await publish(kv, KEYS, FileStore(tmp_path / "shared"), "shared") == first  # same store again


@pytest.mark.parametrize(
    "other_has_id",
    [pytest.param(False, id="other-store-empty"), pytest.param(True, id="other-store-has-its-own-id")],
)
async def test_coordinator_with_another_store_is_refused(tmp_path: Path, other_has_id: bool) -> None:
    kv = MemoryKV(ManualClock())
    first = await publish(kv, KEYS, FileStore(tmp_path / "shared"), "shared")
    other = FileStore(tmp_path / "local")
    if other_has_id:
        other.create(STORE_ID_NAME, b"someone-else")
    with pytest.raises(StoreMismatch, match=f"--artifacts local holds .* use {first.id} at URI"):
        await publish(kv, KEYS, other, "local")


async def test_racing_first_coordinators_agree_on_one_id(tmp_path: Path) -> None:
    kv = MemoryKV(ManualClock())
    records = await asyncio.gather(
        *(publish(kv, KEYS, FileStore(tmp_path / "shared"), "shared") for _ in range(4))
    )
    assert len(set(records)) == 1


class PublishLater:
    """The node's sleep: a coordinator publishes after `calls` sleeps."""

    def __init__(self, kv: MemoryKV, store: FileStore, calls: int) -> None:
        self.kv, self.store, self.left, self.slept = kv, store, calls, 0.0

    async def __call__(self, seconds: float) -> None:
        self.slept += seconds
        self.left -= 1
        if self.left == 0:
            await publish(self.kv, KEYS, self.store, "shared")


async def test_node_waits_for_the_coordinators_then_checks_id_and_canary(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "i2v_common.store_identity")
    kv = MemoryKV(ManualClock())
    shared = FileStore(tmp_path / "shared")
    sleep = PublishLater(kv, shared, 25)  # 12.5 s of 0.5 s polls
    record = await agree(kv, KEYS, FileStore(tmp_path / "shared"), "shared", "n1", sleep=sleep)
    assert record.id == shared.get(shared.uri_for(STORE_ID_NAME)).decode()
    waits = [r for r in caplog.records if r.getMessage().startswith("waiting for a coordinator")]
    assert len(waits) == 3  # at 0, 5 and 10 s: one line per few seconds, not one per poll
    assert shared.get(shared.uri_for(canary_name("n1")))  # the canary went through the node's store


async def test_node_with_another_store_is_refused(tmp_path: Path) -> None:
    kv = MemoryKV(ManualClock())
    record = await publish(kv, KEYS, FileStore(tmp_path / "shared"), "shared")
    local = FileStore(tmp_path / "local")
    with pytest.raises(StoreMismatch) as err:
        await agree(kv, KEYS, local, "local", "n1")
    assert str(err.value).startswith(
        f"artifact store mismatch: --artifacts local holds no store id but the cluster's coordinators "
        f"use {record.id} at URI {record.uri}; give this process the same store"
    )
    assert not (tmp_path / "local" / "cluster").exists()  # refused before the canary


class ReadOnlyStore(FileStore):
    def put(self, name: str, data: bytes) -> str:
        raise OSError(30, "Read-only file system")


class StaleStore(FileStore):
    """A cache in front of the store: reads do not see this node's writes."""

    def put(self, name: str, data: bytes) -> str:
        return super().put(name, data[::-1])


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        pytest.param(ReadOnlyStore, "not usable by node n1", id="read-only"),
        pytest.param(StaleStore, "returned other bytes", id="stale-reads"),
    ],
)
async def test_node_whose_store_fails_the_canary_is_refused(
    tmp_path: Path, kind: type[FileStore], says: str
) -> None:
    kv = MemoryKV(ManualClock())
    await publish(kv, KEYS, FileStore(tmp_path / "shared"), "shared")
    with pytest.raises(StoreMismatch, match=says):
        await agree(kv, KEYS, kind(tmp_path / "shared"), "shared", "n1")
