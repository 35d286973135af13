"""The etcd key schema and the JSON values stored under it (docs/architecture.md, etcd data model).

Every value is a JSON object. Decoding is strict about types and the presence of required fields
(a clear ValueError names the record and the field) and tolerant of unknown fields, so a newer
writer can add fields without breaking an older reader.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Self

from google.protobuf import json_format

from i2v_contract.ids import quote
from i2v_contract.wire import common_pb2

DEFAULT_PREFIX = "/i2v/v1/"


@dataclass(frozen=True)
class Keys:
    """Key layout under `prefix` (which ends with "/")."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or not self.prefix.endswith("/"):
            raise ValueError(f"key prefix {self.prefix!r} must start and end with '/'")

    @property
    def leader(self) -> str:
        return f"{self.prefix}coord/leader"

    @property
    def members(self) -> str:
        return f"{self.prefix}coord/members/"

    @property
    def store(self) -> str:
        return f"{self.prefix}coord/store"

    @property
    def nodes(self) -> str:
        return f"{self.prefix}nodes/"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}jobs/"

    @property
    def claims(self) -> str:
        return f"{self.prefix}claims/"

    @property
    def results(self) -> str:
        return f"{self.prefix}results/"

    @property
    def history(self) -> str:
        return f"{self.prefix}history/"

    @property
    def done(self) -> str:
        return f"{self.prefix}done/"

    @property
    def expired(self) -> str:
        return f"{self.prefix}expired/"

    def member(self, member_id: str) -> str:
        return self.members + _segment("member id", member_id)

    def node(self, node_id: str) -> str:
        return self.nodes + _segment("node id", node_id)

    def job(self, job_id: str) -> str:
        return self.jobs + _segment("job id", job_id)

    def claim(self, job_id: str, attempt: int) -> str:
        return f"{self.claims}{_segment('job id', job_id)}/{_attempt(attempt)}"

    def result(self, job_id: str, attempt: int) -> str:
        return f"{self.results}{_segment('job id', job_id)}/{_attempt(attempt)}"

    def claims_of(self, job_id: str) -> str:
        """The prefix of every claim of one job (deleted as a range when the job finishes)."""
        return f"{self.claims}{_segment('job id', job_id)}/"

    def results_of(self, job_id: str) -> str:
        return f"{self.results}{_segment('job id', job_id)}/"

    def history_entry(self, finished_at: float, job_id: str) -> str:
        """history/{finished_us:016d}-{id}: key order is finish order (newest-first, oldest-first reads)."""
        return f"{self.history}{max(0, round(finished_at * 1e6)):016d}-{_segment('job id', job_id)}"

    def history_of(self, key: str) -> tuple[float, str]:
        """(finished_at, job id) of a history/ key."""
        stamp, sep, job_id = self.id_of(key, self.history).partition("-")
        if not sep or not job_id or len(stamp) != 16 or not stamp.isdigit():
            raise ValueError(f"key {key!r} is not {self.history}<16-digit finish us>-<job id>")
        return int(stamp) / 1e6, job_id

    def done_of(self, job_id: str) -> str:
        return self.done + _segment("job id", job_id)

    def expired_of(self, job_id: str) -> str:
        return self.expired + _segment("job id", job_id)

    def id_of(self, key: str, collection: str) -> str:
        """The id in `key` under `collection` (one of the prefix properties, e.g. keys.nodes)."""
        if not key.startswith(collection) or len(key) == len(collection):
            raise ValueError(f"key {key!r} is not under {collection!r}")
        return key[len(collection) :]

    def job_attempt_of(self, key: str, collection: str) -> tuple[str, int]:
        """(job id, attempt) of a claims/ or results/ key."""
        job_id, _, attempt = self.id_of(key, collection).rpartition("/")
        if not job_id or not attempt.isdigit():
            raise ValueError(f"key {key!r} is not {collection}<job id>/<attempt>")
        return job_id, int(attempt)


def _segment(what: str, value: str) -> str:
    if not value or "/" in value:
        raise ValueError(f"{what} {quote(value)} must be non-empty and contain no '/'")
    return value


def _attempt(attempt: int) -> int:
    if attempt < 1:
        raise ValueError(f"attempt {attempt} must be >= 1")
    return attempt


def _allowed(annotation: Any) -> tuple[type, ...]:
    """The JSON types a field annotation accepts (a float field takes an int; a tuple, a list)."""
    if isinstance(annotation, types.UnionType):
        return tuple(t for arg in typing.get_args(annotation) for t in _allowed(arg))
    origin = typing.get_origin(annotation) or annotation
    if origin is float:
        return (float, int)
    if origin is tuple:
        return (list,)
    return (origin,)


def _items_ok(annotation: Any, value: Any) -> bool:
    """Element types of tuple[X, ...] and dict[str, X] values."""
    args = typing.get_args(annotation)
    if isinstance(value, list):
        return all(_is(v, args[0]) for v in value)
    if isinstance(value, dict) and len(args) == 2:
        return all(isinstance(k, str) and _is(v, args[1]) for k, v in value.items())
    return True


def _is(value: Any, annotation: Any) -> bool:
    if annotation is Any:
        return True
    allowed = _allowed(annotation)
    if isinstance(value, bool) and bool not in allowed:
        return False
    return isinstance(value, allowed) and _items_ok(annotation, value)


class _Record:
    """JSON object codec shared by the records: to_json() / from_json(bytes)."""

    def to_json(self) -> bytes:
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Self:
        name = cls.__name__
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{name}: value is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{name}: value is {type(data).__name__}, expected a JSON object")
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ValueError(f"{name}: field {f.name!r} is missing")
                continue
            value = data[f.name]
            if not _is(value, hints[f.name]):
                raise ValueError(
                    f"{name}: field {f.name!r} is {json.dumps(value)[:80]}, expected {hints[f.name]}"
                )
            values[f.name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)


@dataclass(frozen=True)
class LeaderRecord(_Record):
    """coord/leader, on the leader's lease; the epoch is this key's create_revision."""

    id: str
    addr: str


@dataclass(frozen=True)
class StoreRecord(_Record):
    """coord/store, written once (create-if-absent) by the first coordinator; no lease."""

    id: str  # the random id held in the artifact store itself (store_identity.STORE_ID_NAME)
    uri: str  # the store's root URL as that coordinator saw it, for error messages


@dataclass(frozen=True)
class MemberRecord(_Record):
    """coord/members/{id}, on the member's lease."""

    addr: str
    version: str


@dataclass(frozen=True)
class NodeRecord(_Record):
    """nodes/{node_id}, on the node's lease, re-put when anything changes."""

    addr: str
    gpu: str  # device name, "" on a CPU node
    total_bytes: int
    free_bytes: int
    tier: int  # common_pb2.Tier value
    busy: bool
    models: tuple[str, ...]
    version: str
    # Added after the first schema; readers get these defaults from nodes that do not write them.
    serving: bool = True  # False while loading or draining (busy is then also true)
    arch: dict[str, Any] = field(default_factory=dict)  # memory.ArchSpec.to_dict() of the model; {} = unknown


@dataclass(frozen=True)
class ClaimRecord(_Record):
    """claims/{job_id}/{attempt}, on the node's lease."""

    node_id: str
    epoch: int


@dataclass(frozen=True)
class ResultRecord:
    """results/{job_id}/{attempt}, written once by the node: its status and the Result it produced.

    Stored as the Result message in protobuf's JSON mapping (field names as in common.proto) plus
    `status` (the gRPC code name, "OK" on success) and `message` (the error when not OK). The video
    itself never goes into etcd: it is in the artifact store at result.artifact_uri.
    """

    status: str
    message: str = ""
    result: common_pb2.Result = field(default_factory=common_pb2.Result)

    def to_json(self) -> bytes:
        stored = common_pb2.Result()
        stored.CopyFrom(self.result)
        stored.ClearField("video")
        stored.ClearField("frames_png")
        data = json_format.MessageToDict(stored, preserving_proto_field_name=True)
        data.update(status=self.status, message=self.message)
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ResultRecord:
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"ResultRecord: value is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"ResultRecord: value is {type(data).__name__}, expected a JSON object")
        status, message = data.pop("status", None), data.pop("message", "")
        if not isinstance(status, str) or not isinstance(message, str):
            raise ValueError("ResultRecord: 'status' (required) and 'message' must be strings")
        if "profile_used" in data:  # nodes before the one-shape record named this one field differently
            data["profile"] = data.pop("profile_used")
        result = common_pb2.Result()
        try:
            json_format.ParseDict(data, result, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise ValueError(f"ResultRecord: {exc}") from None
        return cls(status, message, result)


@dataclass(frozen=True)
class DoneRecord(_Record):
    """done/{job_id}: where a finished job's record lives under history/."""

    key: str
    finished_at: float


@dataclass(frozen=True)
class ExpiredRecord(_Record):
    """expired/{job_id}, on a lease as long as the tombstone window: retention removed the job."""

    finished_at: float
    expired_at: float
    reason: str  # e.g. "kept 7d" or "kept the newest 100000 finished jobs"
