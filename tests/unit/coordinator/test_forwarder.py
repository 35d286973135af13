"""The front door on loopback gRPC: a standby (entry.install with a FrontDoor) in front of a stand-in
leader. Answers, errors and trailers come back as the leader gave them; deadlines, metadata and
cancellation cross the hop; a leader change ends a forwarded stream UNAVAILABLE naming the new one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from i2v_common.rpc import coordinator_pb2_grpc
from i2v_contract.wire import LEADER_ADDR_METADATA, coordinator_pb2
from i2v_coordinator.entry import FrontDoor, install
from i2v_coordinator.etcdhealth import EtcdHealth
from i2v_coordinator.frontdoor import FORWARDED_BY_METADATA, RETRY_AFTER_METADATA
from i2v_coordinator.term import Term

pytestmark = pytest.mark.timeout(30)


class StandInLeader(coordinator_pb2_grpc.CoordinatorServicer):
    """Records what reached it; its answers exercise every way a call can end."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any], float | None]] = []
        self.release = asyncio.Event()
        self.cancelled: list[str] = []

    def _note(self, method: str, context: Any) -> None:
        self.seen.append((method, dict(context.invocation_metadata()), context.time_remaining()))

    async def Submit(self, request: Any, context: Any) -> coordinator_pb2.SubmitResponse:
        self._note("Submit", context)
        await context.send_initial_metadata((("x-initial", "i"),))
        context.set_trailing_metadata((("x-trailer", "t"),))
        return coordinator_pb2.SubmitResponse(job_id=request.request_id, created=True)

    async def Get(self, request: Any, context: Any) -> coordinator_pb2.Job:
        self._note("Get", context)
        details = (("grpc-status-details-bin", b"\x08\x05"), ("x-why", "gone"))
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id!r}", details)
        raise AssertionError

    async def Cancel(self, request: Any, context: Any) -> coordinator_pb2.Job:
        self._note("Cancel", context)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.append("Cancel")
            raise
        raise AssertionError

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[coordinator_pb2.JobEvent]:
        self._note("Watch", context)
        for attempt in range(1, 4):
            yield coordinator_pb2.JobEvent(job_id=request.job_id, attempt=attempt)
            if request.job_id == "slow":
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    self.cancelled.append("Watch")
                    raise


class NeverLocal(coordinator_pb2_grpc.CoordinatorServicer):
    """The standby's own servicer: job calls must not reach it; Download is its own to serve."""

    async def Download(self, request: Any, context: Any) -> AsyncIterator[coordinator_pb2.DownloadResponse]:
        yield coordinator_pb2.DownloadResponse(total_size=3, sha256="s", mime_type="video/mp4")
        yield coordinator_pb2.DownloadResponse(offset=0, data=b"mp4")


class Following:
    """A standby's view of the leader key, changed by the test."""

    member_id = "c2"
    addr = "127.0.0.1:2"
    term: Term | None = None

    def __init__(self, leader: tuple[str, str] | None) -> None:
        self._leader = leader
        self._changed = asyncio.Event()

    @property
    def leader(self) -> tuple[str, str] | None:
        return self._leader

    def leader_changed(self) -> asyncio.Event:
        return self._changed

    def see(self, leader: tuple[str, str] | None) -> None:
        self._leader = leader
        self._changed.set()
        self._changed = asyncio.Event()


class Idle:
    term: Term | None = None


class Pair:
    def __init__(self) -> None:
        self.leader = StandInLeader()

    async def start(self) -> Pair:
        self.leader_server = grpc.aio.server()
        coordinator_pb2_grpc.add_CoordinatorServicer_to_server(self.leader, self.leader_server)
        self.leader_addr = f"127.0.0.1:{self.leader_server.add_insecure_port('127.0.0.1:0')}"
        await self.leader_server.start()
        self.view = Following(("c1", self.leader_addr))
        self.door = FrontDoor(self.view, Idle(), EtcdHealth(()))
        self.standby_server = grpc.aio.server()
        install(self.standby_server, NeverLocal(), self.door)
        self.standby_addr = f"127.0.0.1:{self.standby_server.add_insecure_port('127.0.0.1:0')}"
        await self.standby_server.start()
        self.channel = grpc.aio.insecure_channel(self.standby_addr)
        self.stub = coordinator_pb2_grpc.CoordinatorStub(self.channel)
        return self

    async def stop(self) -> None:
        await self.channel.close()
        await self.standby_server.stop(0)
        await self.door.forwarder.close()
        await self.leader_server.stop(0)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    made = await Pair().start()
    try:
        yield made
    finally:
        await made.stop()


async def test_a_submit_to_the_standby_is_the_leaders_answer(pair: Pair) -> None:
    call = pair.stub.Submit(
        coordinator_pb2.SubmitRequest(request_id="j1"), timeout=7, metadata=(("x-request-id", "r1"),)
    )
    response = await call
    assert response.job_id == "j1" and response.created
    assert ("x-initial", "i") in tuple(await call.initial_metadata())
    trailers = tuple(await call.trailing_metadata())
    assert ("x-trailer", "t") in trailers and (LEADER_ADDR_METADATA, pair.leader_addr) in trailers
    method, metadata, remaining = pair.leader.seen[0]
    assert method == "Submit" and metadata["x-request-id"] == "r1" and metadata[FORWARDED_BY_METADATA] == "c2"
    assert remaining is not None and 5 < remaining <= 7  # the caller's deadline, less the hop


async def test_the_leaders_error_comes_back_with_its_details_and_trailers(pair: Pair) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pair.stub.Get(coordinator_pb2.GetRequest(job_id="gone-1"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and err.value.details() == "no job 'gone-1'"
    trailers = tuple(err.value.trailing_metadata() or ())
    assert ("grpc-status-details-bin", b"\x08\x05") in trailers and ("x-why", "gone") in trailers
    assert (LEADER_ADDR_METADATA, pair.leader_addr) in trailers


async def test_a_watch_streams_every_event_then_ends_ok(pair: Pair) -> None:
    call = pair.stub.Watch(coordinator_pb2.WatchRequest(job_id="w1"), timeout=5)
    events = [e.attempt async for e in call]
    assert events == [1, 2, 3] and await call.code() == grpc.StatusCode.OK
    assert (LEADER_ADDR_METADATA, pair.leader_addr) in tuple(await call.trailing_metadata())


async def test_a_leader_change_ends_the_forwarded_stream_naming_the_new_leader(pair: Pair) -> None:
    call = pair.stub.Watch(coordinator_pb2.WatchRequest(job_id="slow"), timeout=10)
    first = await call.read()
    assert first.attempt == 1
    started = time.monotonic()
    pair.view.see(("c3", "127.0.0.1:3"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call.read()
    assert time.monotonic() - started < 1.0
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (err.value.details() or "").startswith(f"the leader changed from c1 at {pair.leader_addr} to c3")
    assert (LEADER_ADDR_METADATA, "127.0.0.1:3") in tuple(err.value.trailing_metadata() or ())
    for _ in range(100):  # the forwarded call was cancelled at the leader too
        if "Watch" in pair.leader.cancelled:
            break
        await asyncio.sleep(0.02)
    assert pair.leader.cancelled == ["Watch"]


async def test_a_caller_that_cancels_cancels_the_forwarded_call(pair: Pair) -> None:
    call = pair.stub.Cancel(coordinator_pb2.CancelRequest(job_id="c1"), timeout=10)
    for _ in range(100):
        if pair.leader.seen:
            break
        await asyncio.sleep(0.02)
    call.cancel()
    for _ in range(100):
        if pair.leader.cancelled:
            break
        await asyncio.sleep(0.02)
    assert pair.leader.cancelled == ["Cancel"]


async def test_no_leader_known_is_unavailable_with_a_retry_hint(pair: Pair) -> None:
    pair.view.see(None)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pair.stub.Submit(coordinator_pb2.SubmitRequest(request_id="j"), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (err.value.details() or "").startswith("no leader elected yet; retry")
    assert (RETRY_AFTER_METADATA, "1000") in tuple(err.value.trailing_metadata() or ())
    assert pair.leader.seen == []


async def test_a_second_hop_is_refused(pair: Pair) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pair.stub.Get(
            coordinator_pb2.GetRequest(job_id="j"), timeout=5, metadata=((FORWARDED_BY_METADATA, "c9"),)
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "forwarded by c9" in (
        err.value.details() or ""
    )
    assert (LEADER_ADDR_METADATA, pair.leader_addr) in tuple(err.value.trailing_metadata() or ())
    assert pair.leader.seen == []


@pytest.mark.parametrize(
    "job_id", [pytest.param("bad/id", id="slash"), pytest.param("x" * 2_000_000, id="2-MB")]
)
async def test_a_malformed_id_is_refused_before_the_hop(pair: Pair, job_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pair.stub.Get(coordinator_pb2.GetRequest(job_id=job_id), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("job_id: ") and len(err.value.details() or "") < 400
    assert pair.leader.seen == []


async def test_a_download_is_served_by_the_standby_itself_never_forwarded(pair: Pair) -> None:
    # A plain stub, no leader hint followed: the standby's own servicer streams the bytes.
    call = pair.stub.Download(coordinator_pb2.DownloadRequest(job_id="d1"), timeout=5)
    header, piece = [m async for m in call]
    assert (header.total_size, piece.data) == (3, b"mp4") and await call.code() == grpc.StatusCode.OK
    assert LEADER_ADDR_METADATA not in dict(await call.trailing_metadata())
    pair.view.see(None)  # no leader at all: still served
    assert len([m async for m in pair.stub.Download(coordinator_pb2.DownloadRequest(job_id="d1"))]) == 2
    assert pair.leader.seen == []


async def test_the_leader_unreachable_is_unavailable(pair: Pair) -> None:
    pair.view.see(("c1", "127.0.0.1:1"))  # nothing listens there
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pair.stub.Submit(coordinator_pb2.SubmitRequest(request_id="j"), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (LEADER_ADDR_METADATA, "127.0.0.1:1") in tuple(err.value.trailing_metadata() or ())
