"""The job record codec: the coordinator's own JSON for jobs/ and history/ values, and the readers of
the nodes' claims/ and results/ records.

A job record holds the pure `jobs.JobView` fields, the normalised request (image bytes removed,
`image_uri` set), the input URI and the digest of the client's original request, which makes a
retried submit idempotent, and the owner (the client that submitted it, when tokens are on);
history/ records also embed the accepted result. The coordinator is the
only reader and writer of jobs/ and history/; claims/ and results/ follow i2v_contract.keys.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from dataclasses import dataclass

from i2v_contract.codes import code_of
from i2v_contract.keys import ClaimRecord, Keys, ResultRecord
from i2v_contract.kv import KeyValue
from i2v_contract.wire import common_pb2
from i2v_coordinator.jobs import ClaimView, JobView, ResultView

RECORD_VERSION = 1
_JOB_FIELDS = frozenset(f.name for f in dataclasses.fields(JobView))


@dataclass(frozen=True)
class JobRecord:
    view: JobView
    request: common_pb2.GenerationRequest  # normalised; no image bytes, image_uri set
    input_uri: str
    digest: str  # of the client's original SubmitRequest.request
    mod_revision: int = 0  # from etcd, not stored in the value
    result: common_pb2.Result | None = None  # finished jobs: the accepted result, embedded in history/
    owner: str = ""  # the client that submitted it ("" without authentication)

    @property
    def job_id(self) -> str:
        return self.view.job_id


@dataclass(frozen=True)
class StoredResult:
    view: ResultView
    result: common_pb2.Result  # what the node reported (no inline video)


def request_digest(request: common_pb2.GenerationRequest, owner: str = "") -> str:
    """The request's identity for idempotent submits; with an owner, another client's identical
    request is a different one (its request_id is taken, ALREADY_EXISTS), never the same job."""
    digest = hashlib.sha256(request.SerializeToString(deterministic=True))
    if owner:
        digest.update(b"\0owner:" + owner.encode())
    return digest.hexdigest()


def _b64(message: common_pb2.GenerationRequest | common_pb2.Result) -> str:
    return base64.b64encode(message.SerializeToString(deterministic=True)).decode()


def encode_job(record: JobRecord) -> bytes:
    data = {
        "v": RECORD_VERSION,
        "job": dataclasses.asdict(record.view),
        "request": _b64(record.request),
        "input_uri": record.input_uri,
        "digest": record.digest,
    }
    if record.result is not None:
        data["result"] = _b64(record.result)
    if record.owner:
        data["owner"] = record.owner
    return json.dumps(data, separators=(",", ":")).encode()


def decode_job(kv: KeyValue) -> JobRecord:
    """A jobs/ or history/ value (history records also carry the accepted result)."""
    data = json.loads(kv.value)
    view = JobView(**{k: v for k, v in data["job"].items() if k in _JOB_FIELDS})
    request = common_pb2.GenerationRequest.FromString(base64.b64decode(data["request"]))
    result = common_pb2.Result.FromString(base64.b64decode(data["result"])) if "result" in data else None
    return JobRecord(
        view,
        request,
        data.get("input_uri", ""),
        data.get("digest", ""),
        kv.mod_revision,
        result,
        str(data.get("owner", "")),
    )


def decode_claim(kv: KeyValue, keys: Keys) -> ClaimView:
    job_id, attempt = keys.job_attempt_of(kv.key, keys.claims)
    record = ClaimRecord.from_json(kv.value)
    return ClaimView(job_id, attempt, record.node_id, record.epoch)


def decode_result(kv: KeyValue, keys: Keys) -> StoredResult:
    """A node's result record: its view for the state machine and its Result message."""
    job_id, attempt = keys.job_attempt_of(kv.key, keys.results)
    record = ResultRecord.from_json(kv.value)
    result = record.result
    if result.artifact_uri and not result.mime_type:
        result.mime_type = "video/mp4"
    view = ResultView(job_id, attempt, code_of(record.status), record.message, result.artifact_uri)
    return StoredResult(view, result)
