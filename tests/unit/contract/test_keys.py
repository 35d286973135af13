"""etcd key schema and record codecs: layout, round trips, strict decoding."""

from __future__ import annotations

import json

import pytest

from i2v_contract.keys import (
    ClaimRecord,
    Keys,
    LeaderRecord,
    MemberRecord,
    NodeRecord,
    ResultRecord,
)
from i2v_contract.wire import common_pb2

K = Keys()


def test_keys_follow_the_documented_layout() -> None:
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


def test_ids_and_attempts_parse_back_out_of_keys() -> None:
    assert K.id_of(K.node("n-1"), K.nodes) == "n-1"
    assert K.job_attempt_of(K.claim("job-7", 4), K.claims) == ("job-7", 4)
    with pytest.raises(ValueError):
        K.job_attempt_of("/i2v/v1/claims/job-7/x", K.claims)
    with pytest.raises(ValueError):
        K.id_of("/other/nodes/a", K.nodes)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: K.job(""), id="empty-job-id"),
        pytest.param(lambda: K.job("a/b"), id="slash-in-job-id"),
        pytest.param(lambda: K.claim("j", 0), id="attempt-0"),
        pytest.param(lambda: Keys("i2v"), id="prefix-without-slashes"),
        pytest.param(lambda: K.node(""), id="empty-node-id"),
    ],
)
def test_bad_ids_and_prefixes_are_refused(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


RECORDS = [
    pytest.param(LeaderRecord("c1", "127.0.0.1:5000"), id="leader"),
    pytest.param(MemberRecord("127.0.0.1:5001", "0.1.0"), id="member"),
    pytest.param(
        NodeRecord(
            "127.0.0.1:6000",
            "NVIDIA RTX 4090",
            24 * 2**30,
            20 * 2**30,
            5,
            False,
            ("tiny", "i2vgen-xl"),
            "0.1.0",
        ),
        id="node",
    ),
    pytest.param(ClaimRecord("n1", 17), id="claim"),
    pytest.param(
        ResultRecord(
            "OK",
            result=common_pb2.Result(
                artifact_uri="file:///a/out.mp4",
                sha256="ab" * 32,
                profile="chunked",
                timings=common_pb2.Timings(denoise_s=4.5),
                peak_bytes=123,
            ),
        ),
        id="result-ok-with-timings",
    ),
    pytest.param(
        ResultRecord(
            "RESOURCE_EXHAUSTED",
            "decode ran out of memory",
            common_pb2.Result(profile="sequential_offload"),
        ),
        id="result-error-with-message-and-profile",
    ),
    pytest.param(
        ResultRecord(
            "OK",
            result=common_pb2.Result(
                artifact_uri="file:///a/o.mp4",
                sha256="cd" * 32,
                profile="fast",
                peak_bytes=9,
                width=32,
                height=48,
                frames=2,
                fps=8,
                steps=3,
                seed=2**63,
                degradations=["steps 6->3"],
                metadata={"dtype": "float32"},
            ),
        ),
        id="result-with-shape-seed-and-metadata",
    ),
]


@pytest.mark.parametrize("record", RECORDS)
def test_every_record_survives_a_json_round_trip(record: object) -> None:
    cls = type(record)
    assert cls.from_json(record.to_json()) == record  # type: ignore[attr-defined]


def test_unknown_fields_are_ignored_and_defaults_fill_in() -> None:
    raw = b'{"node_id":"n","epoch":3,"future":true}'
    assert ClaimRecord.from_json(raw) == ClaimRecord("n", 3)
    result = ResultRecord.from_json(b'{"status":"OK","artifact_uri":"u","future":{"x":1}}')
    assert result == ResultRecord("OK", result=common_pb2.Result(artifact_uri="u"))


def test_the_video_never_goes_into_etcd() -> None:
    record = ResultRecord("OK", result=common_pb2.Result(artifact_uri="u", video=b"mp4", frames_png=[b"p"]))
    assert ResultRecord.from_json(record.to_json()).result == common_pb2.Result(artifact_uri="u")


def test_a_stored_result_keeps_the_size_and_frame_uris_a_download_needs() -> None:
    produced = common_pb2.Result(artifact_uri="u", video_size=9, frame_uris=["f0", "f1"], frames_png=[b"p"])
    stored = ResultRecord.from_json(ResultRecord("OK", result=produced).to_json()).result
    assert stored == common_pb2.Result(artifact_uri="u", video_size=9, frame_uris=["f0", "f1"])


def test_a_result_record_from_an_older_node_reads_its_profile() -> None:
    old = b'{"status":"OK","artifact_uri":"u","sha256":"s","profile_used":"p","timings":{},"peak_bytes":1}'
    expected = common_pb2.Result(
        artifact_uri="u", sha256="s", profile="p", peak_bytes=1, timings=common_pb2.Timings()
    )
    assert ResultRecord.from_json(old).result == expected


@pytest.mark.parametrize(
    ("cls", "raw", "words"),
    [
        pytest.param(ClaimRecord, b"not json", "not JSON", id="not-json"),
        pytest.param(ClaimRecord, b"\xff\xfe", "not JSON", id="not-utf8"),
        pytest.param(ClaimRecord, b"[1, 2]", "expected a JSON object", id="array-not-object"),
        pytest.param(ClaimRecord, b'{"node_id": "n"}', "'epoch' is missing", id="required-field-missing"),
        pytest.param(ClaimRecord, b'{"node_id": "n", "epoch": "7"}', "'epoch'", id="int-given-as-string"),
        pytest.param(ClaimRecord, b'{"node_id": "n", "epoch": true}', "'epoch'", id="int-given-as-bool"),
        pytest.param(
            NodeRecord,
            b'{"addr":"a","gpu":"","total_bytes":1,"free_bytes":1,"tier":1,"busy":false,"models":[1],"version":"v"}',
            "'models'",
            id="list-item-of-wrong-type",
        ),
        pytest.param(
            ResultRecord,
            b'{"status":"OK","artifact_uri":"","sha256":"","profile_used":"","timings":{"total_s":"x"},"peak_bytes":0}',
            "timings field",
            id="result-timing-not-a-number",
        ),
        pytest.param(
            ResultRecord,
            b'{"status":"OK","artifact_uri":"","sha256":"","profile_used":"","timings":{},"peak_bytes":0,'
            b'"metadata":{"tier":1}}',
            "metadata field",
            id="result-metadata-not-a-string",
        ),
    ],
)
def test_malformed_values_raise_clear_errors(cls: type, raw: bytes, words: str) -> None:
    with pytest.raises(ValueError) as info:
        cls.from_json(raw)  # type: ignore[attr-defined]
    assert cls.__name__ in str(info.value) and words in str(info.value)


def test_a_record_without_the_later_fields_reads_with_defaults() -> None:
    old = {
        "addr": "a:1",
        "gpu": "",
        "total_bytes": 1,
        "free_bytes": 1,
        "tier": 1,
        "busy": False,
        "models": ["tiny"],
        "version": "0",
    }
    record = NodeRecord.from_json(json.dumps(old).encode())
    assert (record.serving, record.arch) == (True, {})
