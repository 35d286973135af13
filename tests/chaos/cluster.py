"""A whole cluster of real processes for chaos tests: etcd (1 or 3 members), coordinators, tiny nodes.

Every process is one this harness started, and every signal goes to its pid; `stop()` ends them all.
Nodes share the coordinators' artifact directory and run with OMP_NUM_THREADS=1 (CI has 2 cores).

The judge is etcd itself: a `Recorder` thread watches the cluster's key prefix from revision 1 and
keeps every change with the time it was seen, so `History` can replay exactly what was committed
(who held the leader key at each revision, every job write, claim and result) and `History.check`
can state the invariants: every acknowledged job ends exactly once, results are write-once and the
accepted one is the job's, every write was fenced by the epoch that held the leader key, no claim
was made for an epoch that was not current.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from unittest import mock

from i2v_client import CallError, CoordinatorClient, RetryPolicy, build_request
from i2v_common.etcd_kv import EtcdKV
from i2v_contract.keys import ClaimRecord, Keys, LeaderRecord, NodeRecord, ResultRecord
from i2v_contract.kv import WatchEvent
from i2v_contract.states import ASSIGNED, FINAL_STATES, SUCCEEDED, state_name
from i2v_contract.tiers import tier_name, tier_rank
from i2v_contract.wire import common_pb2
from i2v_coordinator.jobs import JobView
from i2v_coordinator.records import decode_job
from i2v_coordinator.routing import floor_tier
from i2v_node.config import default_cache_dir
from tests.chaos.coordinator_procs import CoordinatorGroup, CoordinatorProcess, LeaderState
from tests.chaos.proxy import TcpProxy
from tests.chaos.recorder import decode
from tests.etcd_cluster import EtcdCluster, free_port
from tests.integration.node_process import ROOT, NodeProcess
from tests.media import png

T = TypeVar("T")


def chaos_runs() -> int:
    """Repetitions per chaos test: 1 in CI, scripts/chaos.sh sets I2V_CHAOS_RUNS for the full count."""
    return max(1, int(os.environ.get("I2V_CHAOS_RUNS", "1")))


def tiny_request(steps: int = 3, frames: int = 4, seed: int = 7) -> common_pb2.GenerationRequest:
    """A job the tiny model runs in well under a second on one CPU thread."""
    return build_request(
        png(), prompt="a lighthouse", width=64, height=64, frames=frames, steps=steps, fps=4, seed=seed
    )


# ---- what etcd saw ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when the recorder received it
    event: WatchEvent


class Recorder:
    """Every change under the prefix, as seen by a recorder process (tests/chaos/recorder.py)."""

    def __init__(self, endpoints: Sequence[str], prefix: str, log_path: Path, from_revision: int = 1) -> None:
        self._args = [
            sys.executable, "-m", "tests.chaos.recorder", ",".join(endpoints), prefix, str(from_revision)
        ]  # fmt: skip
        self._log_path = log_path
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._next_rev = 1
        self._proc: subprocess.Popen[str] | None = None
        self._reader = threading.Thread(target=self._read, name="etcd-recorder", daemon=True)

    def start(self) -> Recorder:
        with open(self._log_path, "wb") as log:
            self._proc = subprocess.Popen(self._args, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            at, event = decode(line)
            with self._lock:
                self._seen.append(Seen(at, event))
                self._next_rev = event.kv.mod_revision + 1

    def events(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def seen_revision(self) -> int:
        with self._lock:
            return self._next_rev - 1

    def wait_revision(self, revision: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.seen_revision() < revision:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"recorder did not reach revision {revision} in {timeout}s; "
                    f"its log: {self._log_path.read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        self._reader.join(10)


@dataclass(frozen=True)
class JobWrite:
    revision: int
    at: float
    view: JobView
    leader_epoch: int  # create revision of the leader key when it committed; 0 = no leader key
    finished: bool = False  # the put was under history/ (the finalising txn), not jobs/


@dataclass(frozen=True)
class ClaimWrite:
    revision: int
    at: float
    job_id: str
    attempt: int
    record: ClaimRecord
    version: int
    leader_epoch: int


@dataclass(frozen=True)
class ResultWrite:
    revision: int
    job_id: str
    attempt: int
    record: ResultRecord
    version: int


@dataclass(frozen=True)
class LeaderTerm:
    epoch: int  # the leader key's create revision
    holder: str
    at: float  # when the recorder saw it created


@dataclass(frozen=True)
class NodeWrite:
    revision: int
    node_id: str
    record: NodeRecord | None  # None: the key was deleted (lease revoked or expired)


@dataclass
class History:
    """Everything committed under the cluster's prefix, replayed in revision order."""

    jobs: dict[str, list[JobWrite]] = field(default_factory=dict)
    claims: list[ClaimWrite] = field(default_factory=list)
    results: list[ResultWrite] = field(default_factory=list)
    result_deletes: list[tuple[int, str]] = field(default_factory=list)  # (revision, key)
    done: dict[str, list[int]] = field(default_factory=dict)  # job id -> revisions of its done/ puts
    terms: list[LeaderTerm] = field(default_factory=list)
    leader_overwrites: list[str] = field(default_factory=list)
    nodes: list[NodeWrite] = field(default_factory=list)
    markers: dict[str, int] = field(default_factory=dict)
    keys: Keys = field(default_factory=Keys)

    @classmethod
    def replay(cls, seen: Iterable[Seen], keys: Keys) -> History:
        """Finished jobs' last write is the history/ put of the finalising txn (the same job codec)."""
        h = cls(keys=keys)
        epoch = 0
        for item in seen:
            ev, kv = item.event, item.event.kv
            if kv.key == keys.leader:
                if ev.kind == "delete":
                    epoch = 0
                elif kv.version == 1:
                    if epoch:
                        h.leader_overwrites.append(
                            f"leader key created at {kv.mod_revision} over epoch {epoch}"
                        )
                    epoch = kv.create_revision
                    h.terms.append(LeaderTerm(epoch, LeaderRecord.from_json(kv.value).id, item.at))
            elif kv.key.startswith((keys.jobs, keys.history)) and ev.kind == "put":
                finished = kv.key.startswith(keys.history)
                write = JobWrite(kv.mod_revision, item.at, decode_job(kv).view, epoch, finished)
                h.jobs.setdefault(write.view.job_id, []).append(write)
            elif kv.key.startswith(keys.done) and ev.kind == "put":
                h.done.setdefault(keys.id_of(kv.key, keys.done), []).append(kv.mod_revision)
            elif kv.key.startswith(keys.claims) and ev.kind == "put":
                job_id, attempt = keys.job_attempt_of(kv.key, keys.claims)
                claim = ClaimRecord.from_json(kv.value)
                h.claims.append(
                    ClaimWrite(kv.mod_revision, item.at, job_id, attempt, claim, kv.version, epoch)
                )
            elif kv.key.startswith(keys.results):
                if ev.kind == "delete":
                    h.result_deletes.append((kv.mod_revision, kv.key))
                    continue
                job_id, attempt = keys.job_attempt_of(kv.key, keys.results)
                record = ResultRecord.from_json(kv.value)
                h.results.append(ResultWrite(kv.mod_revision, job_id, attempt, record, kv.version))
            elif kv.key.startswith(keys.nodes):
                node = NodeRecord.from_json(kv.value) if ev.kind == "put" else None
                h.nodes.append(NodeWrite(kv.mod_revision, keys.id_of(kv.key, keys.nodes), node))
            elif kv.key.startswith(keys.prefix + "chaos/") and ev.kind == "put":
                h.markers[kv.key.removeprefix(keys.prefix + "chaos/")] = kv.mod_revision
        return h

    def final(self, job_id: str) -> JobView | None:
        writes = self.jobs.get(job_id)
        return writes[-1].view if writes else None

    @property
    def epochs(self) -> list[int]:
        return [t.epoch for t in self.terms]

    def violations(self, acked: Iterable[str], want: int = SUCCEEDED) -> list[str]:
        """Broken invariants (empty when all hold) for jobs the clients were told were stored."""
        bad: list[str] = list(self.leader_overwrites)
        if self.epochs != sorted(set(self.epochs)):
            bad.append(f"epochs not strictly increasing: {self.epochs}")
        for job_id in acked:
            if job_id not in self.jobs:
                bad.append(f"{job_id}: acknowledged but never stored (lost)")
        for job_id, writes in self.jobs.items():
            bad += _job_violations(job_id, writes, want)
        for claim in self.claims:
            where = f"claim {claim.job_id}/{claim.attempt} at revision {claim.revision}"
            if claim.version != 1:
                bad.append(f"{where}: overwritten (version {claim.version})")
            if claim.record.epoch != claim.leader_epoch:
                bad.append(f"{where}: made for epoch {claim.record.epoch} while {claim.leader_epoch} led")
        # Results go only with the finalising txn of their job (same revision as its history/ put).
        finalised = {(w.view.job_id, w.revision) for ws in self.jobs.values() for w in ws if w.finished}
        for revision, key in self.result_deletes:
            job_id, _ = self.keys.job_attempt_of(key, self.keys.results)
            if (job_id, revision) not in finalised:
                bad.append(f"result {key} deleted at revision {revision} outside its job's finalisation")
        for job_id, revision in sorted(finalised):
            if revision not in self.done.get(job_id, []):
                bad.append(f"{job_id}: finished at revision {revision} without its done/ pointer")
        by_job: dict[str, list[ResultWrite]] = {}
        for result in self.results:
            if result.version != 1:
                bad.append(f"result {result.job_id}/{result.attempt} written twice")
            by_job.setdefault(result.job_id, []).append(result)
        for job_id, writes in self.jobs.items():
            bad += _result_violations(job_id, writes[-1].view, by_job.get(job_id, []))
        return bad + self.routing_violations()

    def routing_violations(self) -> list[str]:
        """Assignments to a node whose last published record (before the assignment) did not fit."""
        bad = []
        published: dict[str, NodeRecord | None] = {}
        writes = sorted(
            [(w.revision, 1, w) for ws in self.jobs.values() for w in ws]
            + [(n.revision, 0, n) for n in self.nodes],
            key=lambda item: (item[0], item[1]),
        )
        previous: dict[str, JobView] = {}
        for revision, _, write in writes:
            if isinstance(write, NodeWrite):
                published[write.node_id] = write.record
                continue
            view, before = write.view, previous.get(write.view.job_id)
            previous[view.job_id] = view
            if view.state != ASSIGNED or (before is not None and before.state == ASSIGNED):
                continue
            node = published.get(view.node_id)
            floor = floor_tier(view.need)
            if node is None:
                bad.append(
                    f"{view.job_id}: assigned at {revision} to {view.node_id}, which was not registered"
                )
            elif node.free_bytes < view.required_bytes or _rank(node.tier) < _rank(floor):
                bad.append(
                    f"{view.job_id}: assigned at {revision} to {view.node_id} (tier {tier_name(node.tier)}, "
                    f"{node.free_bytes} B free) but needs tier {tier_name(floor)}, {view.required_bytes} B"
                )
        return bad

    def check(self, acked: Iterable[str], want: int = SUCCEEDED) -> None:
        bad = self.violations(list(acked), want)
        assert not bad, "invariants broken:\n" + "\n".join(bad[:40])


def _rank(tier: int) -> int:
    return -1 if tier == common_pb2.TIER_UNSPECIFIED else tier_rank(tier)


def _job_violations(job_id: str, writes: list[JobWrite], want: int) -> list[str]:
    bad = []
    last = writes[-1].view
    if last.state != want:
        bad.append(f"{job_id}: ended {state_name(last.state)} (attempt {last.attempt}, error {last.error!r})")
    finals = [w for w in writes if w.view.state in FINAL_STATES]
    if len(finals) > 1 or (finals and finals[0] is not writes[-1]):
        bad.append(f"{job_id}: {len(finals)} final writes, the first at revision {finals[0].revision}")
    for w in writes:
        if w.finished != (w.view.state in FINAL_STATES):
            where = "history/" if w.finished else "jobs/"
            bad.append(f"{job_id}: {state_name(w.view.state)} written under {where} at revision {w.revision}")
    for w in writes:
        if not w.leader_epoch:
            bad.append(f"{job_id}: written at revision {w.revision} while no leader key existed")
        if w.view.state == ASSIGNED and w.view.epoch != w.leader_epoch:
            bad.append(
                f"{job_id}: assigned at revision {w.revision} with epoch {w.view.epoch} "
                f"while epoch {w.leader_epoch} held the leader key"
            )
    return bad


def _result_violations(job_id: str, job: JobView, results: list[ResultWrite]) -> list[str]:
    ok = [r for r in results if r.record.status == "OK"]
    if job.state != SUCCEEDED:
        return [f"{job_id}: {len(ok)} OK results for a job that did not succeed"] if ok else []
    if len(ok) != 1:
        return [f"{job_id}: {len(ok)} OK results (attempts {[r.attempt for r in ok]}), want exactly one"]
    if job.result_attempt != ok[0].attempt:
        return [
            f"{job_id}: finished with attempt {job.result_attempt}'s result, the OK one is {ok[0].attempt}"
        ]
    return []


# ---- the processes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSpec:
    node_id: str
    free_vram: str = ""  # simulated free accelerator memory ("24GiB"), re-read from a file; "" = CPU node
    etcd_proxy: bool = False  # its --etcd is a TcpProxy to etcd's first member: Cluster.proxies["etcd:<id>"]
    advertise_proxy: bool = False  # it advertises a TcpProxy to its port: Cluster.proxies["node:<id>"]


class Cluster:
    def __init__(
        self,
        tmp: Path,
        *,
        etcd_members: int = 1,
        coordinators: int = 2,
        nodes: Sequence[NodeSpec] = (NodeSpec("n1"), NodeSpec("n2")),
        coordinator_ttl: float = 5.0,
        node_ttl: float = 3.0,
        coordinator_args: Sequence[str] = (),
        coordinator_etcd_proxy: bool = False,
        prefill: Callable[[Cluster], object] | None = None,
    ) -> None:
        """`coordinator_etcd_proxy`: every coordinator dials etcd through its own TcpProxy
        (Cluster.proxies["etcd:<member id>"]). `prefill` runs once etcd is up, before any other
        process starts; the recorder (and so History) sees only what is written after it."""
        self.tmp = tmp
        self.keys = Keys(f"/chaos-{uuid.uuid4().hex[:8]}/")
        self.coordinator_ttl = coordinator_ttl
        self.node_ttl = node_ttl
        self.etcd = EtcdCluster(etcd_members, tmp)
        self._coordinator_count = coordinators
        self._node_specs = list(nodes)
        self.nodes: dict[str, NodeProcess] = {}
        self.group: CoordinatorGroup | None = None
        self.recorder: Recorder | None = None
        self._clients: list[CoordinatorClient] = []
        self._vram_files: dict[str, Path] = {}
        self._coordinator_args = list(coordinator_args)
        self._coordinator_etcd_proxy = coordinator_etcd_proxy
        self._prefill = prefill
        self.proxies: dict[str, TcpProxy] = {}

    # -- life cycle --

    def start(self) -> Cluster:
        self.etcd.start()
        from_revision = 1
        if self._prefill is not None:
            self._prefill(self)
            from_revision = self.mark("prefilled")
        self.recorder = Recorder(
            self.etcd.endpoints, self.keys.prefix, self.tmp / "recorder.log", from_revision
        ).start()
        for spec in self._node_specs:
            self.spawn_node(spec)
        self.group = CoordinatorGroup(
            self.etcd.endpoints,
            self.tmp,
            self._coordinator_count,
            "--lease-ttl",
            f"{self.coordinator_ttl:g}",
            *self._coordinator_args,
            prefix=self.keys.prefix,
            etcd_for=self._coordinator_etcd if self._coordinator_etcd_proxy else None,
        )
        self.group.wait_started()
        for node_id in self.nodes:
            self.wait_node_ready(node_id)
        self.wait_leader(15)
        return self

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        for proxy in self.proxies.values():
            proxy.resume()  # a frozen proxy would hold up the processes' clean exits
        if self.group is not None:
            for proc in self.group.procs:
                with contextlib.suppress(Exception):
                    proc.stop()
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.stop(timeout=10)
        if self.recorder is not None:
            self.recorder.stop()
        for proxy in self.proxies.values():
            proxy.stop()
        self.etcd.stop_all()

    def __enter__(self) -> Cluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- nodes --

    def proxy(self, name: str, target_port: int) -> TcpProxy:
        """A TcpProxy kept in `proxies[name]` (the same one again for the same name)."""
        if name not in self.proxies:
            self.proxies[name] = TcpProxy(target_port).start()
        return self.proxies[name]

    def _etcd_port(self) -> int:
        return int(self.etcd.endpoints[0].rpartition(":")[2])

    def _coordinator_etcd(self, member_id: str) -> list[str]:
        return [self.proxy(f"etcd:{member_id}", self._etcd_port()).address]

    def etcd_proxy(self, proc: CoordinatorProcess) -> TcpProxy:
        return self.proxies[f"etcd:{proc.member_id}"]

    def spawn_node(self, spec: NodeSpec) -> NodeProcess:
        etcd = self.etcd.endpoints
        if spec.etcd_proxy:
            etcd = [self.proxy(f"etcd:{spec.node_id}", self._etcd_port()).address]
        port = free_port()
        advertise = []
        if spec.advertise_proxy:
            if (old := self.proxies.pop(f"node:{spec.node_id}", None)) is not None:
                old.stop()  # a respawned node listens on a new port
            advertise = ["--advertise", self.proxy(f"node:{spec.node_id}", port).address]
        extra = [
            *advertise,
            "--etcd", ",".join(etcd),
            "--artifacts", str(self.tmp / "artifacts"),
            "--prefix", self.keys.prefix,
            "--lease-ttl", f"{self.node_ttl:g}",
        ]  # fmt: skip
        if spec.free_vram:
            path = self._vram_files[spec.node_id] = self.tmp / f"{spec.node_id}.free-vram"
            path.write_text(spec.free_vram)
            extra += ["--simulate-free-vram-file", str(path)]
        log_path = self.tmp / f"{spec.node_id}.{uuid.uuid4().hex[:4]}.log"
        with mock.patch.dict(os.environ, {"OMP_NUM_THREADS": "1"}):
            node = NodeProcess(default_cache_dir(), log_path, *extra, node_id=spec.node_id, port=port)
        self.nodes[spec.node_id] = node
        return node

    def wait_node_ready(self, node_id: str, timeout: float = 90.0) -> None:
        """Serving on gRPC and registered in etcd as serving and idle."""
        self.nodes[node_id].wait_serving(timeout)
        self.wait_for(lambda: self._node_idle(node_id), timeout, f"node {node_id} registered idle")

    def _node_idle(self, node_id: str) -> bool:
        kv = self.read(lambda kv: kv.get(self.keys.node(node_id)))
        if kv is None:
            return False
        record = NodeRecord.from_json(kv.value)
        return record.serving and not record.busy

    def kill_node(self, node_id: str) -> None:
        node = self.nodes.pop(node_id)
        node.proc.kill()  # SIGKILL, by pid
        node.proc.wait(10)
        node.stop()

    def set_free_vram(self, node_id: str, size: str) -> None:
        path = self._vram_files[node_id]
        staging = path.with_suffix(".tmp")
        staging.write_text(size)
        staging.replace(path)  # the node never reads a half-written figure

    # -- coordinators --

    @property
    def coordinators(self) -> CoordinatorGroup:
        assert self.group is not None, "start the cluster first"
        return self.group

    def wait_leader(
        self, timeout: float, *, exclude: CoordinatorProcess | None = None
    ) -> tuple[CoordinatorProcess, LeaderState, float]:
        return self.coordinators.wait_leader(timeout, exclude=exclude)

    def replace_coordinator(self, dead: CoordinatorProcess) -> CoordinatorProcess:
        """Keep the standby count: drop a stopped coordinator, start a fresh one."""
        dead.stop()
        self.coordinators.procs.remove(dead)
        fresh = self.coordinators.add()
        fresh.wait_started()
        return fresh

    def client(self) -> CoordinatorClient:
        return self.client_for([p.address for p in self.coordinators.procs])

    def client_for(self, addresses: Sequence[str]) -> CoordinatorClient:
        """A client trying `addresses` in this order (closed with the cluster)."""
        client = CoordinatorClient(
            list(addresses),
            policy=RetryPolicy(reconnect_s=3 * self.coordinator_ttl + 5, call_timeout_s=5.0),
        )
        self._clients.append(client)
        return client

    def submit(
        self, count: int, tag: str, *, steps: int = 3, client: CoordinatorClient | None = None
    ) -> list[str]:
        """Submit `count` tiny jobs with client-chosen ids; returns the ids the cluster acknowledged."""
        client = client or self.client()
        acked = []
        for i in range(count):
            job_id = f"{tag}-{i:03d}"
            response = client.submit(tiny_request(steps=steps, seed=i), request_id=job_id)
            assert response.job_id == job_id
            acked.append(job_id)
        return acked

    def submit_running(self, count: int, tag: str, client: CoordinatorClient) -> list[str]:
        """Submit `count` jobs; return their ids once one of them runs (its claim is in etcd)."""
        batch = self.submit(count, tag, client=client)
        self.wait_claimed(batch)
        return batch

    def try_submit(self, client: CoordinatorClient, job_id: str) -> bool:
        """One submit; False when the cluster did not acknowledge it (an error is not an ack)."""
        try:
            client.submit(tiny_request(seed=1), request_id=job_id)
        except CallError:
            return False
        return True

    # -- etcd, read directly --

    def read(self, fn: Callable[[EtcdKV], Awaitable[T]]) -> T:
        """Run one call on a fresh etcd client."""

        async def go() -> T:
            kv = EtcdKV(self.etcd.endpoints)
            try:
                return await fn(kv)
            finally:
                await kv.close()

        return asyncio.run(go())

    def mark(self, name: str) -> int:
        """A marker key: its revision orders the test's own actions among the cluster's writes."""
        return self.read(lambda kv: kv.put(f"{self.keys.prefix}chaos/{name}", b"x"))

    def history(self) -> History:
        """Everything committed so far (the recorder caught up to a fresh marker first)."""
        assert self.recorder is not None
        revision = self.mark(f"sync-{uuid.uuid4().hex[:6]}")
        self.recorder.wait_revision(revision)
        return History.replay(self.recorder.events(), self.keys)

    def seen(self) -> list[Seen]:
        assert self.recorder is not None
        return self.recorder.events()

    def live_history(self) -> History:
        """What the recorder has seen so far, without a write (works while etcd has no quorum)."""
        assert self.recorder is not None
        return History.replay(self.recorder.events(), self.keys)

    def wait_ended(self, job_ids: Sequence[str], timeout: float) -> History:
        """Wait until every job's last write is final; bounded, with the stragglers and logs on failure."""
        deadline = time.monotonic() + timeout
        while True:
            history = self.live_history()
            open_jobs = [j for j in job_ids if (v := history.final(j)) is None or v.state not in FINAL_STATES]
            if not open_jobs:
                return self.history()
            if time.monotonic() > deadline:
                states = {
                    j: (v.state, v.attempt, v.node_id) if (v := history.final(j)) else None for j in open_jobs
                }
                raise AssertionError(f"jobs not ended within {timeout}s: {states}\n{self.logs()}")
            time.sleep(0.05)

    def wait_claimed(self, job_ids: Sequence[str], timeout: float = 30.0) -> ClaimWrite:
        """The first claim any node makes on one of `job_ids` (the job is running)."""
        wanted = set(job_ids)
        deadline = time.monotonic() + timeout
        while True:
            claims = [c for c in self.live_history().claims if c.job_id in wanted]
            if claims:
                return claims[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"none of {len(wanted)} jobs claimed in {timeout}s\n{self.logs()}")
            time.sleep(0.02)

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.logs()}")
            time.sleep(0.05)

    def logs(self, lines: int = 25) -> str:
        parts = []
        for proc in self.coordinators.procs if self.group else []:
            parts.append(f"--- coordinator {proc.member_id}\n" + _tail(proc.log(), lines))
        for node_id, node in self.nodes.items():
            parts.append(f"--- node {node_id}\n" + _tail(node.log(), lines))
        return "\n".join(parts)


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def running_cluster(tmp: Path, **kwargs: object) -> Iterator[Cluster]:
    with Cluster(tmp, **kwargs) as cluster:  # type: ignore[arg-type]
        yield cluster
