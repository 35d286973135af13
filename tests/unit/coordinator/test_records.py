"""The job record codec: jobs/ and history/ values round-trip, never holding image bytes."""

from __future__ import annotations

import dataclasses

import pytest

from i2v_contract import states
from i2v_contract.keys import ClaimRecord, Keys, ResultRecord
from i2v_contract.kv import KeyValue
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator.jobs import ClaimView, ResultView
from i2v_coordinator.records import decode_claim, decode_job, decode_result, encode_job
from tests.fakes.coordinator import job_record

KEYS = Keys("/t/")


def test_job_record_round_trips_through_its_codec() -> None:
    rec = dataclasses.replace(
        job_record(),
        view=dataclasses.replace(
            job_record().view, state=states.RUNNING, attempt=3, node_id="n1", min_tier=4
        ),
    )
    kv_value = encode_job(rec)
    back = decode_job(KeyValue(KEYS.job("job1"), kv_value, 5, 9, 2, 0))
    assert back == dataclasses.replace(rec, mod_revision=9)
    assert b"image" not in kv_value  # never image bytes in etcd


# A jobs/ value exactly as the coordinator wrote it before JobState's values were renamed
# (JOB_RUNNING -> JOB_STATE_RUNNING): the state is stored as its number, so it reads the same.
OLD_JOB_VALUE = (
    b'{"v":1,"job":{"job_id":"old-job","state":3,"attempt":2,"node_id":"n1","node_tier":0,"epoch":0,'
    b'"required_bytes":0,"required_tier":3,"min_tier":0,"model":"","lost_attempts":0,'
    b'"created_at":1700000000.0,"assigned_at":0.0,"started_at":0.0,"finished_at":0.0,"error":"",'
    b'"error_code":0,"artifact_uri":"","result_attempt":0},'
    b'"request":"EhBmaWxlOi8vL3MvaW4ucG5nGgVhIGZveChAMEBYBw==","input_uri":"file:///s/in.png",'
    b'"digest":"dddddddd"}'
)


def test_a_job_record_written_before_the_enum_rename_decodes() -> None:
    back = decode_job(KeyValue(KEYS.job("old-job"), OLD_JOB_VALUE, 5, 9, 2, 0))
    assert back.view.state == states.RUNNING == coordinator_pb2.JOB_STATE_RUNNING
    assert states.state_name(back.view.state) == "RUNNING"
    assert (back.view.attempt, back.view.node_id, back.view.required_tier) == (2, "n1", common_pb2.TIER_12_16)
    assert back.request.seed == 7 and back.request.image_uri == back.input_uri == "file:///s/in.png"
    assert encode_job(back) == OLD_JOB_VALUE  # and is written back byte for byte


@pytest.mark.parametrize(
    ("status", "uri", "code", "mime_type"),
    [
        pytest.param("OK", "file:///o.mp4", 0, "video/mp4", id="a video defaults to mp4"),
        pytest.param("RESOURCE_EXHAUSTED", "", 8, "", id="no video, no mime type"),
    ],
)
def test_a_node_s_result_record_decodes_to_its_view_and_result(
    status: str, uri: str, code: int, mime_type: str
) -> None:
    record = ResultRecord(status, "why", common_pb2.Result(artifact_uri=uri, peak_bytes=3))
    stored = decode_result(KeyValue(KEYS.result("job1", 2), record.to_json(), 4, 4, 1, 0), KEYS)
    assert stored.view == ResultView("job1", 2, code, "why", uri)
    assert (stored.result.mime_type, stored.result.peak_bytes) == (mime_type, 3)


def test_a_claim_record_decodes_to_its_view() -> None:
    kv = KeyValue(KEYS.claim("job1", 3), ClaimRecord(node_id="n1", epoch=9).to_json(), 4, 4, 1, 0)
    assert decode_claim(kv, KEYS) == ClaimView("job1", 3, "n1", 9)
