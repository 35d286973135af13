"""etcd key schema and record codecs: layout, round trips, strict decoding."""

from __future__ import annotations

import pytest

from i2v_contract.keys import (
    ClaimRecord,
    JobRecord,
    Keys,
    LeaderRecord,
    MemberRecord,
    NodeRecord,
    ResultRecord,
)

K = Keys()


def test_layout_matches_design() -> None:
    assert (K.leader, K.member("c1"), K.node("n1")) == (
        "/i2v/v1/coord/leader",
        "/i2v/v1/coord/members/c1",
        "/i2v/v1/nodes/n1",
    )
    assert (K.job("j"), K.claim("j", 2), K.result("j", 3)) == (
        "/i2v/v1/jobs/j",
        "/i2v/v1/claims/j/2",
        "/i2v/v1/results/j/3",
    )
    assert Keys("/x/").node("a") == "/x/nodes/a"


def test_parse_keys_back() -> None:
    assert K.id_of(K.node("n-1"), K.nodes) == "n-1"
    assert K.job_attempt_of(K.claim("job-7", 4), K.claims) == ("job-7", 4)
    with pytest.raises(ValueError):
        K.job_attempt_of("/i2v/v1/claims/job-7/x", K.claims)
    with pytest.raises(ValueError):
        K.id_of("/other/nodes/a", K.nodes)


@pytest.mark.parametrize(
    "call",
    [
        lambda: K.job(""),
        lambda: K.job("a/b"),
        lambda: K.claim("j", 0),
        lambda: Keys("i2v"),
        lambda: K.node(""),
    ],
)
def test_bad_ids_and_prefixes_are_refused(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


RECORDS = [
    LeaderRecord("c1", "127.0.0.1:5000"),
    MemberRecord("127.0.0.1:5001", "0.1.0"),
    NodeRecord(
        "127.0.0.1:6000", "NVIDIA RTX 4090", 24 * 2**30, 20 * 2**30, 5, False, ("tiny", "i2vgen-xl"), "0.1.0"
    ),
    JobRecord(
        {"width": 512, "prompt": "cat"},
        "file:///a/in.png",
        3,
        2,
        "n1",
        17,
        {"created": 1.5, "assigned": 2},
        "",
    ),
    ClaimRecord("n1", 17),
    ResultRecord("OK", "file:///a/out.mp4", "ab" * 32, "chunked", {"denoise_s": 4.5}, 123),
    ResultRecord("RESOURCE_EXHAUSTED", "", "", "sequential_offload", {}, 0, "decode ran out of memory"),
    ResultRecord(
        "OK",
        "file:///a/o.mp4",
        "cd" * 32,
        "fast",
        {},
        9,
        width=32,
        height=48,
        frames=2,
        fps=8,
        steps=3,
        seed=2**63,
        degradations=("steps 6->3",),
        metadata={"dtype": "float32"},
    ),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_round_trip(record: object) -> None:
    cls = type(record)
    assert cls.from_json(record.to_json()) == record  # type: ignore[attr-defined]


def test_unknown_fields_are_ignored_and_defaults_fill_in() -> None:
    raw = b'{"spec":{},"input_uri":"u","state":1,"attempt":1,"node":"","epoch":0,"future":true}'
    assert JobRecord.from_json(raw) == JobRecord({}, "u", 1, 1, "", 0)


@pytest.mark.parametrize(
    ("cls", "raw", "words"),
    [
        (ClaimRecord, b"not json", "not JSON"),
        (ClaimRecord, b"\xff\xfe", "not JSON"),
        (ClaimRecord, b"[1, 2]", "expected a JSON object"),
        (ClaimRecord, b'{"node_id": "n"}', "'epoch' is missing"),
        (ClaimRecord, b'{"node_id": "n", "epoch": "7"}', "'epoch'"),
        (ClaimRecord, b'{"node_id": "n", "epoch": true}', "'epoch'"),
        (
            NodeRecord,
            b'{"addr":"a","gpu":"","total_bytes":1,"free_bytes":1,"tier":1,"busy":false,"models":[1],"version":"v"}',
            "'models'",
        ),
        (
            ResultRecord,
            b'{"status":"OK","artifact_uri":"","sha256":"","profile_used":"","timings":{"a":"x"},"peak_bytes":0}',
            "'timings'",
        ),
        (
            ResultRecord,
            b'{"status":"OK","artifact_uri":"","sha256":"","profile_used":"","timings":{},"peak_bytes":0,'
            b'"metadata":{"tier":1}}',
            "'metadata'",
        ),
    ],
)
def test_malformed_values_raise_clear_errors(cls: type, raw: bytes, words: str) -> None:
    with pytest.raises(ValueError) as info:
        cls.from_json(raw)  # type: ignore[attr-defined]
    assert cls.__name__ in str(info.value) and words in str(info.value)
