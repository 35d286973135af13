"""Out-of-memory fault injection, for TESTING ONLY: exercises the OOM retry and degrade paths on
machines that never run out of memory (CPU CI).

Plan syntax: rules separated by ';', each `STAGE[:PROFILE,...][@WxH]`.
  STAGE    encode_prompt | encode_image | denoise | decode
  PROFILE  a profile name, or '*' for every profile (the default when omitted)
  @WxH     only when the attempt's width*height is at least W*H (memory grows with area), which
           lets a degraded (smaller) retry succeed
Examples: "denoise", "decode:fast,chunked", "encode_prompt:*", "denoise:*@64x64;decode:fast".
"""

from __future__ import annotations

from dataclasses import dataclass

from i2v_contract.profiles import profile_by_name
from i2v_contract.wire import common_pb2

STAGES: dict[str, int] = {
    "encode_prompt": common_pb2.STAGE_ENCODE_PROMPT,
    "encode_image": common_pb2.STAGE_ENCODE_IMAGE,
    "denoise": common_pb2.STAGE_DENOISE,
    "decode": common_pb2.STAGE_DECODE,
}

_SYNTAX = "expected STAGE[:PROFILE,...][@WxH] rules separated by ';', e.g. 'denoise:fast,chunked'"


@dataclass(frozen=True)
class FaultRule:
    stage: int  # common_pb2.Stage value
    profiles: frozenset[str] | None  # None = every profile
    min_pixels: int = 0  # fire only when width*height >= this

    def matches(self, stage: int, profile: str, width: int, height: int) -> bool:
        return (
            stage == self.stage
            and (self.profiles is None or profile in self.profiles)
            and width * height >= self.min_pixels
        )


@dataclass(frozen=True)
class FaultPlan:
    rules: tuple[FaultRule, ...]

    def should_fail(self, stage: int, profile: str, width: int, height: int) -> bool:
        return any(rule.matches(stage, profile, width, height) for rule in self.rules)


def _parse_size(text: str, rule: str) -> int:
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise ValueError(f"fault plan rule {rule!r}: size {text!r} is not WxH (e.g. 64x64)")
    return int(w) * int(h)


def _parse_rule(rule: str) -> FaultRule:
    body, at, size = rule.partition("@")
    min_pixels = _parse_size(size.strip(), rule) if at else 0
    stage_text, colon, profiles_text = body.partition(":")
    stage_name = stage_text.strip()
    if stage_name not in STAGES:
        raise ValueError(
            f"fault plan rule {rule!r}: unknown stage {stage_name!r}; known: {', '.join(STAGES)}"
        )
    names = [p.strip() for p in profiles_text.split(",")] if colon else ["*"]
    if not names or any(not n for n in names):
        raise ValueError(f"fault plan rule {rule!r}: empty profile name; {_SYNTAX}")
    if "*" in names:
        if len(names) > 1:
            raise ValueError(f"fault plan rule {rule!r}: '*' already means every profile; list names or '*'")
        return FaultRule(STAGES[stage_name], None, min_pixels)
    for name in names:
        try:
            profile_by_name(name)
        except ValueError as e:
            raise ValueError(f"fault plan rule {rule!r}: {e}") from None
    return FaultRule(STAGES[stage_name], frozenset(names), min_pixels)


def parse_fault_plan(text: str) -> FaultPlan:
    """Parse a plan; raises ValueError naming the bad rule and the expected syntax."""
    rules = [r.strip() for r in text.split(";")]
    if not any(rules):
        raise ValueError(f"empty fault plan; {_SYNTAX}")
    return FaultPlan(tuple(_parse_rule(r) for r in rules if r))
