from __future__ import annotations

import io
from typing import ClassVar

import pytest

from i2v_client import Pause
from i2v_client.cli.progress import (
    Mode,
    ProgressDisplay,
    Tracker,
    mode_for,
    queue_position,
    render,
    worth_a_line,
)
from i2v_contract.states import stage_name
from i2v_contract.wire import common_pb2
from tests.fakes.client import progress
from tests.fakes.clock import ManualClock


@pytest.mark.parametrize(
    ("stage", "name"),
    [
        pytest.param(common_pb2.STAGE_DENOISE, "denoise", id="denoise"),
        pytest.param(common_pb2.STAGE_ENCODE_VIDEO, "encode_video", id="encode-video"),
        pytest.param(999, "unspecified", id="unknown"),
    ],
)
def test_stage_name(stage: int, name: str) -> None:
    assert stage_name(stage) == name


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        pytest.param(
            progress(common_pb2.STAGE_DENOISE, 5, 10, 3.25),
            ["denoise", "[" + "#" * 12 + "." * 12 + "] 5/10", "3.2s"],
            id="denoise-bar",
        ),
        pytest.param(
            progress(common_pb2.STAGE_DECODE, profile="chunked"), ["decode", "profile chunked"], id="profile"
        ),
        pytest.param(
            progress(common_pb2.STAGE_RETRY, message="out of memory"),
            ["retry", "out of memory"],
            id="message",
        ),
    ],
)
def test_render(p: common_pb2.Progress, expected: list[str]) -> None:
    line = render(p)
    for part in expected:
        assert part in line


def test_render_has_bar_only_while_denoising() -> None:
    assert "[" not in render(progress(common_pb2.STAGE_ENCODE_PROMPT))
    assert "[" not in render(progress(common_pb2.STAGE_DECODE, 0, 10))


@pytest.mark.parametrize(
    ("step", "total", "previous_stage", "expected"),
    [
        pytest.param(1, 50, None, True, id="first-event"),
        pytest.param(1, 50, common_pb2.STAGE_ENCODE_IMAGE, True, id="stage-change"),
        pytest.param(3, 50, common_pb2.STAGE_DENOISE, False, id="between-tenths"),
        pytest.param(5, 50, common_pb2.STAGE_DENOISE, True, id="every-tenth"),
        pytest.param(50, 50, common_pb2.STAGE_DENOISE, True, id="last-step"),
        pytest.param(3, 7, common_pb2.STAGE_DENOISE, True, id="few-steps-each"),
    ],
)
def test_worth_a_line(step: int, total: int, previous_stage: int | None, expected: bool) -> None:
    previous = None if previous_stage is None else progress(previous_stage, max(0, step - 1), total)
    assert worth_a_line(progress(common_pb2.STAGE_DENOISE, step, total), previous) is expected


def test_mode_for() -> None:
    assert mode_for(io.StringIO(), quiet=False) is Mode.LINES
    assert mode_for(io.StringIO(), quiet=True) is Mode.QUIET


def test_display_lines_and_bar() -> None:
    events = [progress(common_pb2.STAGE_ENCODE_PROMPT)] + [
        progress(common_pb2.STAGE_DENOISE, i, 20) for i in range(1, 21)
    ]
    lines, bar, quiet = io.StringIO(), io.StringIO(), io.StringIO()
    for mode, stream in ((Mode.LINES, lines), (Mode.BAR, bar), (Mode.QUIET, quiet)):
        display = ProgressDisplay(stream, mode)
        for e in events:
            display.update(e)
        display.close()
    # encode_prompt, the first denoise step (a stage change), then every second step
    assert len(lines.getvalue().splitlines()) == 1 + 1 + 10
    # On a terminal rich draws one live line (its last frame at least) and clears it at the end:
    # what stays is the outcome the command prints.
    drawn = bar.getvalue()
    assert "denoise" in drawn and "20/20" in drawn and drawn.endswith("\x1b[2K")
    assert quiet.getvalue() == ""


def test_tracker_rate_and_an_eta_that_counts_down_between_events() -> None:
    clock = ManualClock(100.0)
    tracker = Tracker(clock)
    clock.advance(3.0)
    tracker.update(progress(common_pb2.STAGE_QUEUED))
    assert tracker.line().startswith("queued") and "3.0s" in tracker.line() and tracker.details() == []
    tracker.update(progress(common_pb2.STAGE_DENOISE, 1, 10))
    assert tracker.rate is None and tracker.eta() is None  # one event is no rate yet
    clock.advance(2.0)
    tracker.update(progress(common_pb2.STAGE_DENOISE, 5, 10))
    assert tracker.rate == pytest.approx(2.0) and tracker.eta() == pytest.approx(2.5)
    assert tracker.details() == ["2.00 steps/s", "ETA 2s"]
    clock.advance(1.0)  # no event: the clock and the ETA go on
    assert tracker.eta() == pytest.approx(1.5) and tracker.elapsed() == pytest.approx(6.0)
    retried = progress(common_pb2.STAGE_DENOISE, 1, 10)
    retried.attempt = 2
    tracker.update(retried)
    assert tracker.rate is None  # a new attempt starts its own rate


def test_a_failover_pause_is_shown_as_such_until_the_next_progress() -> None:
    tracker = Tracker(ManualClock(0.0))
    tracker.update(progress(common_pb2.STAGE_DENOISE, 3, 10))
    tracker.pause(Pause("a:1", "sent nothing for 8 s", "b:2"))
    line = tracker.line()
    assert line.startswith("denoise") and "3/10" in line
    assert line.endswith("paused: coordinator a:1 lost (sent nothing for 8 s); reconnecting to b:2…")
    tracker.update(progress(common_pb2.STAGE_DENOISE, 4, 10))
    assert "paused" not in tracker.line()


class _WithQueuePosition:
    """Progress as the wire may carry it later: with a queue_position field."""

    class DESCRIPTOR:
        fields_by_name: ClassVar[dict[str, object]] = {"queue_position": object()}

    queue_position = 3


def test_queue_position_is_shown_once_the_server_sends_it() -> None:
    assert queue_position(progress(common_pb2.STAGE_QUEUED)) is None  # today's wire has none
    assert queue_position(_WithQueuePosition()) == 3


def test_plain_lines_keep_coming_while_nothing_happens() -> None:
    clock = ManualClock(0.0)
    stream = io.StringIO()
    display = ProgressDisplay(stream, Mode.LINES, clock)
    display.update(progress(common_pb2.STAGE_QUEUED))
    display.tick(15.0)
    clock.advance(14.0)
    display.tick(15.0)
    assert len(stream.getvalue().splitlines()) == 1
    clock.advance(1.0)
    display.tick(15.0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("queued") and "15.0s" in lines[1]
    display.close()
