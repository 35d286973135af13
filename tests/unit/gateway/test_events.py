"""JobEvents -> Server-Sent Events: ids that order a job's life, resume, rate and ETA (pure)."""

from __future__ import annotations

import json

import pytest

from i2v_contract.states import ASSIGNED, QUEUED, RUNNING, SUCCEEDED
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_gateway.events import Narrator, Sse, event_key, key_text, parse_key

DENOISE = common_pb2.STAGE_DENOISE


def ev(state: int, attempt: int = 1, stage: int = 0, step: int = 0, total: int = 10, elapsed: float = 0.0,
       profile: str = "p0") -> coordinator_pb2.JobEvent:  # fmt: skip
    event = coordinator_pb2.JobEvent(job_id="j", state=state, attempt=attempt, node_id="n1")
    if stage:
        event.progress.CopyFrom(
            common_pb2.Progress(stage=stage, step=step, total_steps=total, elapsed_s=elapsed, profile=profile)
        )
    return event


LIFE = [
    ev(QUEUED, 0),
    ev(ASSIGNED),
    ev(RUNNING),
    ev(RUNNING, stage=common_pb2.STAGE_LOADING, elapsed=0.1),
    ev(RUNNING, stage=DENOISE, step=1, elapsed=1.0),
    ev(RUNNING, stage=DENOISE, step=2, elapsed=1.5),
    ev(RUNNING, stage=DENOISE, step=3, elapsed=2.0),
    ev(RUNNING, 2),  # a second attempt
    ev(RUNNING, 2, stage=DENOISE, step=1, elapsed=0.5),
    ev(SUCCEEDED, 2),
]


def test_keys_order_a_jobs_life() -> None:
    keys = [event_key(e) for e in LIFE]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param("1.3.1500.6.2", (1, 3, 1500, 6, 2), id="ok"),
        pytest.param("", None, id="empty"),
        pytest.param("1.2.3", None, id="short"),
        pytest.param("a.b.c.d.e", None, id="words"),
        pytest.param(None, None, id="none"),
    ],
)
def test_parse_key(text: str | None, key: tuple[int, ...] | None) -> None:
    assert parse_key(text) == key
    if key is not None:
        assert key_text(key) == text  # type: ignore[arg-type]


def names(narrator: Narrator, events: list[coordinator_pb2.JobEvent]) -> list[Sse]:
    return [sse for e in events for sse in narrator.event(e)]


def test_a_whole_life_narrated() -> None:
    out = names(Narrator("j", None), LIFE)
    kinds = "state state state progress progress progress progress retry state progress done"
    assert [s.event for s in out] == kinds.split()
    third = out[6].data
    assert third["rate"] == 2.0 and third["eta_s"] == 3.5  # 2 steps in 1 s, 7 left
    assert out[7].data == {"attempt": 2, "retries": 1, "why": "new attempt"}
    assert all(s.id for s in out if s.event != "retry")


def test_resume_skips_what_the_client_saw_and_keeps_the_rate() -> None:
    seen = names(Narrator("j", None), LIFE[:5])
    after = parse_key(seen[-1].id)
    # the new stream starts from the job's current state, then carries on
    out = names(Narrator("j", after), [ev(RUNNING), LIFE[4], *LIFE[5:7]])
    assert [s.event for s in out] == ["progress", "progress"]
    assert out[-1].data["rate"] == 2.0  # the skipped step still set the base


def test_a_reattach_repeating_the_current_state_sends_nothing() -> None:
    narrator = Narrator("j", None)
    names(narrator, LIFE[:6])
    assert narrator.event(ev(RUNNING)) == []


def test_an_oom_retry_is_a_retry_event() -> None:
    event = ev(RUNNING, stage=common_pb2.STAGE_RETRY, elapsed=3.0)
    event.progress.message = "out of memory at denoise; retrying with offload"
    out = Narrator("j", None).event(event)
    assert [s.event for s in out] == ["retry", "progress"]
    assert out[0].data["why"] == "out of memory at denoise; retrying with offload"


def test_the_final_event_is_always_sent() -> None:
    narrator = Narrator("j", (9, 9, 9, 9, 9))
    assert [s.event for s in narrator.event(ev(SUCCEEDED))] == ["done"] and narrator.ended


def test_failover_events_count() -> None:
    narrator = Narrator("j", None)
    narrator.failover("a:1", "answered UNAVAILABLE", "b:2")
    sse = narrator.failover("b:2", "sent nothing for 8 s", "a:1")
    assert sse.id is None and sse.data["failovers"] == 2


def test_sse_wire_format() -> None:
    text = Sse("progress", {"step": 1}, "1.3.0.6.1", retry_ms=1000).encode().decode()
    assert text == 'event: progress\nid: 1.3.0.6.1\nretry: 1000\ndata: {"step":1}\n\n'
    assert json.loads(text.splitlines()[3].removeprefix("data: ")) == {"step": 1}
