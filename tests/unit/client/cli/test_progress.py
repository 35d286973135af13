from __future__ import annotations

import io

import pytest

from i2v_client.cli.progress import Mode, ProgressDisplay, mode_for, render, worth_a_line
from i2v_contract.states import stage_name
from i2v_contract.wire import common_pb2
from tests.fakes.client import progress


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
