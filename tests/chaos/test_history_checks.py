"""The chaos judge itself: History.violations catches each broken invariant in a hand-made etcd history.

Pure (no processes): a chaos test that passes means something only if this checker fails on bad runs.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from i2v_contract.keys import ClaimRecord, DoneRecord, Keys, LeaderRecord, NodeRecord, ResultRecord
from i2v_contract.kv import KeyValue, WatchEvent
from i2v_contract.states import ASSIGNED, QUEUED, RUNNING, SUCCEEDED
from i2v_contract.wire import common_pb2
from i2v_coordinator.jobs import JobView
from i2v_coordinator.records import JobRecord, encode_job
from tests.chaos.cluster import History, Seen

KEYS = Keys("/t/")
GIB = 1024**3
JOB = JobView("j1", QUEUED, required_bytes=GIB, required_tier=common_pb2.TIER_LT12)


def event(key: str, value: bytes, revision: int, *, create: int = 0, version: int = 1) -> Seen:
    kv = KeyValue(key, value, create or revision, revision, version, 0)
    return Seen(float(revision), WatchEvent("put", kv))


def deleted(key: str, revision: int) -> Seen:
    return Seen(float(revision), WatchEvent("delete", KeyValue(key, b"", 0, revision, 0, 0)))


def job(view: JobView, revision: int, create: int = 4) -> Seen:
    record = JobRecord(view, common_pb2.GenerationRequest(), "file:///in.png", "d")
    return event(KEYS.job(view.job_id), encode_job(record), revision, create=create, version=revision - 3)


def finished(view: JobView, revision: int, *, done: bool = True) -> list[Seen]:
    """The finalising txn at `revision`: history/ put, done/ put, jobs/, claims and results deleted."""
    entry = KEYS.history_entry(view.finished_at, view.job_id)
    record = JobRecord(view, common_pb2.GenerationRequest(), "file:///in.png", "d")
    return [
        deleted(KEYS.job(view.job_id), revision),
        deleted(KEYS.claim(view.job_id, 1), revision),
        deleted(KEYS.result(view.job_id, 1), revision),
        event(entry, encode_job(record), revision),
        *([event(KEYS.done_of(view.job_id), DoneRecord(entry, 1.0).to_json(), revision)] if done else []),
    ]


def node(free: int, revision: int) -> Seen:
    record = NodeRecord("a:1", "sim", free, free, common_pb2.TIER_24_40, False, ("tiny",), "t")
    return event(KEYS.node("n1"), record.to_json(), revision)


def result(attempt: int, status: str, revision: int, version: int = 1) -> Seen:
    record = ResultRecord(
        status,
        result=common_pb2.Result(artifact_uri="file:///v.mp4", sha256="abc", profile="fast", peak_bytes=1),
    )
    return event(KEYS.result("j1", attempt), record.to_json(), revision, version=version)


def claim(epoch: int, revision: int, attempt: int = 1) -> Seen:
    return event(KEYS.claim("j1", attempt), ClaimRecord("n1", epoch).to_json(), revision)


LEADER = event(KEYS.leader, LeaderRecord("c1", "c:1").to_json(), 3)
ASSIGN = replace(JOB, state=ASSIGNED, node_id="n1", epoch=3)
DONE = replace(ASSIGN, state=SUCCEEDED, result_attempt=1, finished_at=1.0)
CLEAN = [
    node(24 * GIB, 2),
    LEADER,
    job(JOB, 4),
    job(ASSIGN, 5),
    claim(3, 6),
    job(replace(ASSIGN, state=RUNNING), 7),
    result(1, "OK", 8),
    *finished(DONE, 9),
]


def test_a_clean_history_has_no_violations() -> None:
    history = History.replay(CLEAN, KEYS)
    assert history.violations(["j1"]) == []
    assert history.epochs == [3]


@pytest.mark.parametrize(
    ("events", "acked", "expected"),
    [
        (CLEAN, ["j1", "j2"], "j2: acknowledged but never stored"),
        ([*CLEAN, *finished(DONE, 10)], ["j1"], "2 final writes"),
        ([*CLEAN, job(JOB, 10)], ["j1"], "ended QUEUED"),  # re-opened after it finished
        ([*CLEAN, result(2, "OK", 10)], ["j1"], "2 OK results"),
        ([*CLEAN, result(1, "OK", 10, version=2)], ["j1"], "written twice"),
        ([*CLEAN[:4], claim(2, 6), *CLEAN[5:]], ["j1"], "made for epoch 2 while 3 led"),
        ([*CLEAN[:3], job(replace(ASSIGN, epoch=1), 5), *CLEAN[4:]], ["j1"], "with epoch 1 while epoch 3"),
        ([*CLEAN[:7], deleted(KEYS.leader, 9), *finished(DONE, 10)], ["j1"], "while no leader key existed"),
        ([*CLEAN[:7], *finished(replace(DONE, result_attempt=2), 9)], ["j1"], "with attempt 2's result"),
        ([*CLEAN[:7], job(DONE, 9)], ["j1"], "SUCCEEDED written under jobs/ at revision 9"),
        ([*CLEAN[:7], *finished(DONE, 9, done=False)], ["j1"], "finished at revision 9 without its done/"),
        (
            [*CLEAN[:7], deleted(KEYS.result("j1", 1), 9), *finished(DONE, 10)],
            ["j1"],
            "outside its job's final",
        ),
        (CLEAN[:7], ["j1"], "ended RUNNING"),
        ([node(GIB // 2, 2), *CLEAN[1:]], ["j1"], "assigned at 5 to n1"),
        ([*CLEAN, event(KEYS.leader, b'{"id":"c2","addr":"c:2"}', 10)], ["j1"], "created at 10 over epoch 3"),
    ],
)
def test_each_broken_invariant_is_reported(events: list[Seen], acked: list[str], expected: str) -> None:
    violations = History.replay(events, KEYS).violations(acked)
    assert any(expected in v for v in violations), violations
