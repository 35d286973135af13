"""Coordinator-side doubles: a leadership that hands out terms, counting dispatch metrics, a node
registry, a queued job record, and a node client that follows the dispatch protocol on the KV as a
real node does (fenced claim on its own lease, write-once result)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable

import grpc

from i2v_contract.fencing import claim_txn
from i2v_contract.keys import Keys, NodeRecord, ResultRecord
from i2v_contract.kv import Compare, Put
from i2v_contract.wire import common_pb2, node_pb2
from i2v_coordinator import jobs
from i2v_coordinator.nodecalls import NodeCallError
from i2v_coordinator.records import JobRecord, request_digest
from i2v_coordinator.routing import NodeView
from i2v_coordinator.statusview import Member, Roster
from i2v_coordinator.term import Succession, Term
from tests.fakes.memory_kv import MemoryKV

KEYS = Keys("/d/")


class FakeLeadership:
    """Terms started and ended by the test (`set`), through the real term succession."""

    member_id = "c1"
    addr = "127.0.0.1:1"

    def __init__(self) -> None:
        self._succession = Succession()

    @property
    def term(self) -> Term | None:
        return self._succession.current

    @property
    def epoch(self) -> int | None:
        term = self.term
        return None if term is None else term.epoch

    @property
    def is_leader(self) -> bool:
        return self.term is not None

    @property
    def leader(self) -> tuple[str, str] | None:
        return (self.member_id, self.addr) if self.term else None

    def on_started_leading(self, hook: Callable[[Term], object]) -> None:
        self._succession.on_started_leading(hook)

    def terms(self) -> AsyncIterator[Term]:
        return self._succession.terms()

    async def roster(self) -> Roster:
        """This coordinator alone, leading while it holds a term."""
        term = self.term
        leader = (self.member_id, self.addr, term.epoch) if term else ("", "", 0)
        return Roster(*leader, members=(Member(self.member_id, self.addr),))

    def set(self, epoch: int | None) -> Term | None:
        """End the current term; with an epoch, start a new one and return it."""
        self._succession.end()
        if epoch is None:
            return None
        term = Term(epoch)
        self._succession.start(term)
        return term


class CountingMetrics:
    """The dispatcher's metrics, counted by name (dispatcher.DispatchMetrics)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def _add(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def dispatch_retry(self) -> None:
        self._add("dispatch_retry")

    def node_failure(self, kind: str, set_aside: bool) -> None:
        self._add(f"node_failure:{kind}")
        if set_aside:
            self._add("set_aside")

    def nodes_held_back(self, cooling: int, set_aside: int) -> None:
        self.held_back = (cooling, set_aside)

    def requeued(self) -> None:
        self._add("requeued")

    def queue_depth(self, depth: int) -> None:
        pass

    def queue_wait(self, seconds: float) -> None:
        self._add("queue_wait")

    def end_to_end(self, seconds: float) -> None:
        self._add("end_to_end")

    def finished(self, state: int, code: int) -> None:
        self._add(f"finished:{state}:{code}")


class FakeRegistry:
    def __init__(self, nodes: list[NodeView]) -> None:
        self.nodes = tuple(nodes)
        self._callbacks: list[Callable[[], None]] = []

    def snapshot(self) -> tuple[NodeView, ...]:
        return self.nodes

    def records(self) -> dict[str, NodeRecord]:
        """What the nodes published: nothing beyond their views here."""
        return {}

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def set(self, nodes: list[NodeView]) -> None:
        self.nodes = tuple(nodes)
        for cb in self._callbacks:
            cb()


@dataclasses.dataclass
class Behaviour:
    node_id: str
    lease: int = 0
    refuse: grpc.StatusCode | None = None  # before the claim
    status: str = "OK"  # result written after the claim
    hang: bool = False  # claim, report progress, then heartbeats until cancelled
    stall: bool = False  # claim, report progress, then nothing (the connection stopped mid-call)
    silent: bool = False  # accept the call, then send nothing (a connection that stopped forwarding)
    claim_silently: bool = False  # with silent: claim first (the node runs; only the stream is dead)


class FakeCalls:
    """Node client double: claims and writes results on the KV like a node's ClusterHooks."""

    def __init__(self, kv: MemoryKV) -> None:
        self.kv = kv
        self.nodes: dict[str, Behaviour] = {}
        self.requests: list[tuple[str, node_pb2.NodeGenerateRequest]] = []
        self.cancels: list[tuple[str, str]] = []
        self.resets: list[str] = []
        self.streams_cancelled = 0

    async def generate(
        self, addr: str, request: node_pb2.NodeGenerateRequest
    ) -> AsyncIterator[common_pb2.GenerateEvent]:
        self.requests.append((addr, request))
        b = self.nodes[addr]
        if b.refuse is not None:
            raise NodeCallError(b.refuse, f"node {b.node_id} refuses")
        if b.silent and not b.claim_silently:
            await self._silence()
        txn = claim_txn(
            KEYS,
            request.job_id,
            request.attempt,
            epoch=request.epoch,
            assign_revision=request.assign_revision,
            node_id=b.node_id,
            lease=b.lease,
        )
        claimed = await self.kv.txn(txn.compares, txn.puts)
        if not claimed.succeeded:
            raise NodeCallError(grpc.StatusCode.FAILED_PRECONDITION, "stale dispatch")
        if b.silent:
            await self._silence()
        try:
            for i in (1, 2):
                yield common_pb2.GenerateEvent(
                    progress=common_pb2.Progress(stage=common_pb2.STAGE_DENOISE, step=i, total_steps=2)
                )
            while b.hang:  # a live node: a heartbeat every so often (the idle bound is 0.3 s)
                await asyncio.sleep(0.05)
                yield common_pb2.GenerateEvent(heartbeat=common_pb2.Heartbeat(elapsed_s=1.0))
            if b.stall:
                await asyncio.Event().wait()
        except (asyncio.CancelledError, GeneratorExit):
            self.streams_cancelled += 1
            raise
        await write_result(self.kv, request.job_id, request.attempt, b.status, request.output_uri)
        if b.status != "OK":
            raise NodeCallError(grpc.StatusCode[b.status], f"{b.status} on {b.node_id}")
        yield common_pb2.GenerateEvent(result=common_pb2.Result(artifact_uri=request.output_uri))

    async def _silence(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.streams_cancelled += 1
            raise

    async def cancel(self, addr: str, job_id: str) -> bool:
        self.cancels.append((addr, job_id))
        return True

    async def reset(self, addr: str) -> None:
        self.resets.append(addr)

    async def close(self) -> None:
        pass


async def write_result(kv: MemoryKV, job_id: str, attempt: int, status: str, uri: str = "") -> None:
    key = KEYS.result(job_id, attempt)
    produced = common_pb2.Result(
        artifact_uri=uri if status == "OK" else "",
        profile="fast",
        timings=common_pb2.Timings(total_s=1.0),
        peak_bytes=1,
    )
    record = ResultRecord(status, "" if status == "OK" else f"{status} at the leanest profile", produced)
    await kv.txn([Compare(key, "create", "==", 0)], [Put(key, record.to_json())])


def job_record(job_id: str = "job1", prompt: str = "a cat") -> JobRecord:
    """A queued job as Submit stores it (normalised request, no image bytes)."""
    request = common_pb2.GenerationRequest(prompt=prompt, width=64, height=64, frames=4, seed=7)
    view = jobs.new_job(job_id, 123, common_pb2.TIER_CPU, "tiny", 1000.0)
    return JobRecord(view, request, f"file:///store/jobs/{job_id}/input.png", request_digest(request))


async def until(predicate: Callable[[], bool], within_s: float = 3.0) -> None:
    for _ in range(int(within_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    assert predicate(), "condition not reached in time"
