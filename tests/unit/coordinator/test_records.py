"""The job record codec: jobs/ and history/ values round-trip, never holding image bytes."""

from __future__ import annotations

import dataclasses

import pytest

from i2v_contract import states
from i2v_contract.keys import ClaimRecord, Keys, ResultRecord
from i2v_contract.kv import KeyValue
from i2v_contract.wire import common_pb2
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
