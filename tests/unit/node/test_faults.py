"""Parsing and matching of the testing-only OOM fault plan."""

import pytest

from i2v_contract.wire import common_pb2 as pb
from i2v_node.faults import FaultRule, parse_fault_plan


@pytest.mark.parametrize(
    ("text", "rules"),
    [
        ("denoise", (FaultRule(pb.STAGE_DENOISE, None),)),
        ("encode_prompt:*", (FaultRule(pb.STAGE_ENCODE_PROMPT, None),)),
        ("decode:fast,chunked", (FaultRule(pb.STAGE_DECODE, frozenset({"fast", "chunked"})),)),
        (" encode_image : sliced ", (FaultRule(pb.STAGE_ENCODE_IMAGE, frozenset({"sliced"})),)),
        ("denoise:*@64x48", (FaultRule(pb.STAGE_DENOISE, None, 64 * 48),)),
        (
            "decode:fast;denoise:tiled@8x8;",
            (
                FaultRule(pb.STAGE_DECODE, frozenset({"fast"})),
                FaultRule(pb.STAGE_DENOISE, frozenset({"tiled"}), 64),
            ),
        ),
    ],
)
def test_parse(text, rules):
    assert parse_fault_plan(text).rules == rules


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty fault plan"),
        (" ; ", "empty fault plan"),
        ("upload", "unknown stage 'upload'"),
        ("denoise:turbo", "unknown profile 'turbo'"),
        ("denoise:", "empty profile name"),
        ("denoise:fast,", "empty profile name"),
        ("denoise:*,fast", "'*' already means every profile"),
        ("denoise@64", "is not WxH"),
        ("denoise@axb", "is not WxH"),
    ],
)
def test_bad_plans_name_the_problem(text, needle):
    with pytest.raises(ValueError) as err:
        parse_fault_plan(text)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("text", "stage", "profile", "size", "fires"),
    [
        ("denoise", pb.STAGE_DENOISE, "fast", (64, 64), True),
        ("denoise", pb.STAGE_DECODE, "fast", (64, 64), False),
        ("decode:fast,chunked", pb.STAGE_DECODE, "chunked", (64, 64), True),
        ("decode:fast,chunked", pb.STAGE_DECODE, "sliced", (64, 64), False),
        ("denoise:*@64x64", pb.STAGE_DENOISE, "tiled", (64, 64), True),
        ("denoise:*@64x64", pb.STAGE_DENOISE, "tiled", (48, 48), False),
        ("denoise:*@64x64", pb.STAGE_DENOISE, "tiled", (128, 32), True),
        ("encode_prompt;decode:sliced", pb.STAGE_DECODE, "sliced", (8, 8), True),
    ],
)
def test_should_fail(text, stage, profile, size, fires):
    assert parse_fault_plan(text).should_fail(stage, profile, *size) is fires
