"""benchmarks/fill_etcd.py writes records the project's own decoders read back, under each layout."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from benchmarks.fill_etcd import fill
from i2v_contract import states
from i2v_contract.keys import Keys, ResultRecord
from i2v_contract.kv import KeyValue
from i2v_contract.wire import common_pb2
from i2v_coordinator.records import decode_job
from tests.fakes.memory_kv import MemoryKV

KEYS = Keys("/fill-test/")
NOW = 1_700_000_000.0


def filled(layout: str, finished: int = 5, queued: int = 3, batch: int = 2) -> dict[str, KeyValue]:
    kv = MemoryKV(clock=lambda: 0.0)
    stats = asyncio.run(fill(kv, KEYS, finished, queued, layout=layout, batch=batch, concurrency=2, now=NOW))
    items, _ = asyncio.run(kv.range_prefix(KEYS.prefix))
    assert stats.puts == len(items) == 2 * finished + queued
    assert stats.txns == -(-stats.puts // batch)
    return {kv.key: kv for kv in items}


def test_history_layout_moves_finished_jobs_out_of_jobs() -> None:
    data = filled("history")
    history = {k: v for k, v in data.items() if k.startswith(f"{KEYS.prefix}history/")}
    done = {k: v for k, v in data.items() if k.startswith(f"{KEYS.prefix}done/")}
    open_jobs = {k: v for k, v in data.items() if k.startswith(KEYS.jobs)}
    assert (len(history), len(done), len(open_jobs)) == (5, 5, 3)
    assert sorted(history) == list(history)  # key order is finish order
    for key, kv in history.items():
        record = decode_job(kv)
        view = record.view
        assert view.state == states.SUCCEEDED and view.result_attempt == 1 and view.finished_at < NOW
        assert key == f"{KEYS.prefix}history/{round(view.finished_at * 1e6):016d}-{view.job_id}"
        pointer = json.loads(done[f"{KEYS.prefix}done/{view.job_id}"].value)
        assert pointer == {"key": key, "finished_at": view.finished_at}
        result = common_pb2.Result.FromString(base64.b64decode(json.loads(kv.value)["result"]))
        assert result.artifact_uri == view.artifact_uri and result.width == record.request.width > 0
    for kv in open_jobs.values():
        record = decode_job(kv)
        assert record.view.state == states.QUEUED and record.request.image_uri == record.input_uri != ""


def test_jobs_layout_keeps_finished_jobs_and_results_under_their_old_keys() -> None:
    data = filled("jobs")
    results = [kv.value for k, kv in data.items() if k.startswith(KEYS.results)]
    found = [decode_job(kv).view.state for k, kv in data.items() if k.startswith(KEYS.jobs)]
    assert sorted(found) == sorted([states.SUCCEEDED] * 5 + [states.QUEUED] * 3)
    assert [ResultRecord.from_json(v).status for v in results] == ["OK"] * 5


def test_rejects_batches_etcd_would_refuse() -> None:
    with pytest.raises(ValueError, match="128"):
        asyncio.run(fill(MemoryKV(clock=lambda: 0.0), KEYS, 1, 0, batch=129))
