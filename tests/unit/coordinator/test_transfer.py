"""The Download RPC on a standby: the record from etcd (in-memory KV), the bytes from a file store."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, NoReturn, cast

import grpc
import pytest

from i2v_common.artifacts import FileStore
from i2v_common.errors import details_of
from i2v_contract import states
from i2v_contract.keys import DoneRecord, Keys
from i2v_contract.reasons import ErrorDetails
from i2v_contract.wire import common_pb2, coordinator_pb2
from i2v_coordinator.download import CHUNK_BYTES
from i2v_coordinator.jobstore import JobStore
from i2v_coordinator.records import JobRecord, encode_job
from i2v_coordinator.servicer import CoordinatorServicer
from i2v_coordinator.transfer import read_record
from tests.fakes.clock import ManualClock
from tests.fakes.coordinator import job_record
from tests.fakes.memory_kv import MemoryKV

KEYS = Keys("/dl/")
VIDEO = bytes(range(256)) * (CHUNK_BYTES // 256 * 5 // 2)  # 2.5 MiB: three pieces
IMAGE = b"\x89PNG\r\n\x1a\n" + b"i" * 100


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, trailers: tuple[Any, ...]) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.trailers = trailers


class _Ended(grpc.RpcError):
    """An Aborted as the failed call a client sees, for errors.details_of."""

    def __init__(self, aborted: Aborted) -> None:
        self._aborted = aborted

    def code(self) -> grpc.StatusCode:
        return self._aborted.code

    def details(self) -> str:
        return self._aborted.details

    def trailing_metadata(self) -> tuple[Any, ...]:
        return self._aborted.trailers


def sent_details(aborted: Aborted) -> ErrorDetails:
    return details_of(_Ended(aborted))


class FakeContext:
    async def abort(self, code: grpc.StatusCode, details: str, trailers: tuple[Any, ...] = ()) -> NoReturn:
        raise Aborted(code, details, trailers)


class Standby:
    member_id = "c2"
    addr = "127.0.0.1:2"
    epoch = None
    term = None
    leader = ("c1", "127.0.0.1:1")


@dataclasses.dataclass
class World:
    kv: MemoryKV
    artifacts: FileStore
    servicer: CoordinatorServicer

    async def finished(self, job_id: str, state: int = states.SUCCEEDED, video: bytes = VIDEO) -> JobRecord:
        """A finished job as the finishing txn leaves it: history/ entry with its result, and done/."""
        base = job_record(job_id)
        input_uri = self.artifacts.put(f"jobs/{job_id}/input.png", IMAGE)
        result = None
        if state == states.SUCCEEDED:
            uri = self.artifacts.put(f"jobs/{job_id}/attempt-1.mp4", video)
            result = common_pb2.Result(
                artifact_uri=uri,
                mime_type="video/mp4",
                sha256=hashlib.sha256(video).hexdigest(),
                video_size=len(video),
            )
        view = dataclasses.replace(base.view, state=state, finished_at=5.0, result_attempt=1)
        record = dataclasses.replace(base, view=view, input_uri=input_uri, result=result)
        entry = KEYS.history_entry(5.0, job_id)
        await self.kv.put(entry, encode_job(record))
        await self.kv.put(KEYS.done_of(job_id), DoneRecord(entry, 5.0).to_json())
        return record

    async def download(self, job_id: str, **fields: Any) -> list[coordinator_pb2.DownloadResponse]:
        request = coordinator_pb2.DownloadRequest(job_id=job_id, **fields)
        return [r async for r in self.servicer.Download(request, cast(Any, FakeContext()))]


@pytest.fixture
def world(tmp_path: Path) -> World:
    kv = MemoryKV(ManualClock())
    artifacts = FileStore(tmp_path / "store")
    unused = cast(Any, None)  # Download never touches the registry, dispatcher or hub
    servicer = CoordinatorServicer(Standby(), unused, JobStore(kv, KEYS), unused, unused, artifacts)
    return World(kv, artifacts, servicer)


async def test_a_standby_sends_the_video_header_first_then_pieces_of_at_most_one_mib(world: World) -> None:
    await world.finished("j1")
    header, *chunks = await world.download("j1")
    assert (header.total_size, header.sha256, header.mime_type) == (
        len(VIDEO),
        hashlib.sha256(VIDEO).hexdigest(),
        "video/mp4",
    )
    assert header.offset == 0 and not header.data
    assert [c.offset for c in chunks] == [0, CHUNK_BYTES, 2 * CHUNK_BYTES]
    assert all(len(c.data) <= CHUNK_BYTES and not c.total_size and not c.sha256 for c in chunks)
    assert b"".join(c.data for c in chunks) == VIDEO


@pytest.mark.parametrize(
    ("offset", "limit"),
    [
        pytest.param(CHUNK_BYTES + 7, 0, id="resume"),
        pytest.param(10, 20, id="a-range"),
        pytest.param(len(VIDEO), 0, id="at-the-end"),
    ],
)
async def test_a_download_resumes_from_an_offset_and_stops_at_its_limit(
    world: World, offset: int, limit: int
) -> None:
    await world.finished("j1")
    header, *chunks = await world.download("j1", offset=offset, limit=limit)
    end = offset + limit if limit else len(VIDEO)
    assert header.total_size == len(VIDEO) and header.offset == offset  # the whole artifact's figures
    assert b"".join(c.data for c in chunks) == VIDEO[offset:end]
    assert not chunks or chunks[0].offset == offset


async def test_the_input_image_is_hashed_from_the_store(world: World) -> None:
    await world.finished("j1", state=states.FAILED)  # a failed job still has its input
    header, chunk = await world.download("j1", what=coordinator_pb2.ARTIFACT_INPUT_IMAGE)
    assert (header.total_size, header.mime_type) == (len(IMAGE), "image/png")
    assert header.sha256 == hashlib.sha256(IMAGE).hexdigest() and chunk.data == IMAGE


async def test_read_record_finds_open_and_finished_jobs_and_nothing_else(world: World) -> None:
    await world.kv.put(KEYS.job("open"), encode_job(job_record("open")))
    await world.finished("done")
    found = [await read_record(JobStore(world.kv, KEYS), j) for j in ("open", "done", "none")]
    assert [r.view.state if r else None for r in found] == [states.QUEUED, states.SUCCEEDED, None]


async def test_refusals_carry_their_code_and_say_what_to_do(world: World) -> None:
    await world.kv.put(KEYS.job("open"), encode_job(job_record("open")))
    gone = await world.finished("gone")
    assert gone.result is not None
    world.artifacts.delete(gone.result.artifact_uri)
    await world.finished("done")
    cases = [
        ("nope", {}, grpc.StatusCode.NOT_FOUND, "no job 'nope'", "JOB_NOT_FOUND"),
        ("open", {}, grpc.StatusCode.FAILED_PRECONDITION, "job open is QUEUED, not finished", "NO_ARTIFACT"),
        (
            "gone",
            {},
            grpc.StatusCode.NOT_FOUND,
            "the video of job gone is no longer in the artifact store",
            "ARTIFACT_MISSING",
        ),
        ("done", {"offset": len(VIDEO) + 1}, grpc.StatusCode.INVALID_ARGUMENT, "offset: ", "INVALID_FIELD"),
        ("bad/id", {}, grpc.StatusCode.INVALID_ARGUMENT, "job_id: 'bad/id' is not allowed", "INVALID_FIELD"),
    ]
    for job_id, fields, code, words, reason in cases:
        with pytest.raises(Aborted) as aborted:
            await world.download(job_id, **fields)
        assert aborted.value.code == code and words in aborted.value.details, (job_id, aborted.value)
        assert sent_details(aborted.value).reason == reason, job_id  # error details, as every RPC's
    bad = sent_details(aborted.value).field_violations
    assert [v.field for v in bad] == ["job_id"]


async def test_a_video_changed_in_the_store_is_data_loss(world: World) -> None:
    record = await world.finished("j1")
    assert record.result is not None
    world.artifacts.put("jobs/j1/attempt-1.mp4", VIDEO[:-1])
    with pytest.raises(Aborted) as aborted:
        await world.download("j1")
    assert aborted.value.code == grpc.StatusCode.DATA_LOSS
    assert sent_details(aborted.value).reason == "ARTIFACT_CHANGED"
