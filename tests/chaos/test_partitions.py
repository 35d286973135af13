"""Partitions and pauses of real processes (tests/chaos/cluster.py), judged from etcd's history.

A silent partition is a TcpProxy (tests/chaos/proxy.py) between a process and its peer that stops
moving bytes while every socket stays open: no RST, no FIN, only timeouts, keepalives and leases
notice. Scenarios: the leader cut from etcd, a node cut from etcd mid-job, the leader's established
connection to a node gone half-dead, a node SIGSTOPped past its lease, failover with 10,000 finished
jobs stored, and a 20,000-submit burst. Each checks `History.check` (every acknowledged job ends
exactly once with exactly one OK result, every write fenced by the epoch that held the leader key)
and prints its timings as `chaos-figure` lines.

CI runs each scenario once with a 5,000-submit burst and 10,000 finished jobs; scripts/chaos.sh
sets I2V_CHAOS_RUNS, I2V_CHAOS_BURST and I2V_CHAOS_FILLED for the full counts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from benchmarks.fill_etcd import fill
from i2v_client import CallError, CoordinatorClient, RetryPolicy
from i2v_common.etcd_kv import EtcdKV
from i2v_contract.states import ASSIGNED, QUEUED
from i2v_node.claims import CLAIM_GONE
from tests.chaos.cluster import Cluster, History, NodeSpec, chaos_runs, tiny_request
from tests.chaos.coordinator_procs import CoordinatorProcess, LeaderState
from tests.chaos.test_cluster_failures import figure, wait_stepped_down

RUNS = chaos_runs()
BURST = int(os.environ.get("I2V_CHAOS_BURST", "5000"))  # CI; scripts/chaos.sh: 20000 (~100 s here)
FILLED = int(os.environ.get("I2V_CHAOS_FILLED", "10000"))
TTL_S = 5.0  # coordinator lease TTL (default; docs/architecture.md, timings)
NODE_TTL_S = 3.0
LONG_STEPS = 200  # the request limit; about 5.5 s at 64x64x4 on one idle CPU thread
CLAIM_TIMEOUT_S = 10.0  # README: a node that misses its claim for 10 s cools down
FIRST_EVENT_S = 5.0  # README: a node stream with no event 5 s after it starts is cancelled

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(180 + 60 * RUNS)]


def late_writes(history: History, after_rev: int, epoch: int) -> list[str]:
    """Job writes and claims committed after `after_rev` for (or under) the old epoch."""
    jobs = [
        f"{w.view.job_id}@{w.revision}"
        for ws in history.jobs.values()
        for w in ws
        if w.revision > after_rev
        and (w.leader_epoch == epoch or (w.view.state == ASSIGNED and w.view.epoch == epoch))
    ]
    claims = [
        f"claim {c.job_id}/{c.attempt}@{c.revision}"
        for c in history.claims
        if c.revision > after_rev and c.record.epoch == epoch
    ]
    return jobs + claims


def long_job_on(
    cluster: Cluster, client: CoordinatorClient, node_id: str, tag: str
) -> tuple[list[str], str, int]:
    """Submit 200-step jobs until one is claimed by `node_id`; (all submitted, that job, its attempt)."""
    submitted: list[str] = []
    for i in range(len(cluster.nodes)):
        job_id = f"{tag}-long{i}"
        client.submit(tiny_request(steps=LONG_STEPS), request_id=job_id)
        submitted.append(job_id)
        claim = cluster.wait_claimed([job_id])
        if claim.record.node_id == node_id:
            return submitted, job_id, claim.attempt
    raise AssertionError(f"no long job reached {node_id}: {submitted}\n{cluster.logs()}")


def node_log_says(cluster: Cluster, node_id: str, text: str) -> bool:
    return text in cluster.nodes[node_id].log()


def submit_in_background(
    cluster: Cluster, count: int, tag: str, client: CoordinatorClient
) -> tuple[threading.Thread, list[str]]:
    """cluster.submit in a thread; the list fills with the acknowledged ids."""
    acked: list[str] = []
    thread = threading.Thread(
        target=lambda: acked.extend(cluster.submit(count, tag, client=client)), name=tag, daemon=True
    )
    thread.start()
    return thread, acked


# ---- 1. leader <-> etcd silent partition --------------------------------------------------------


def test_leader_silently_cut_from_etcd_is_replaced_and_fenced(tmp_path: Path) -> None:
    takeovers, stepdowns = [], []
    with Cluster(tmp_path, coordinators=2, coordinator_etcd_proxy=True) as cluster:
        acked: list[str] = []
        for run in range(RUNS):
            client = cluster.client()
            leader, state, _ = cluster.wait_leader(10)
            acked += cluster.submit_running(10, f"cut{run}", client)
            proxy = cluster.etcd_proxy(leader)
            standby = next(p for p in cluster.coordinators.procs if p is not leader)
            frozen_at = time.monotonic()
            proxy.freeze()
            # Submits that reach the cut-off leader first: its writes for them sit in the proxy (and
            # land after resume(), where the fence must refuse them); the client moves on by itself.
            during = cluster.client_for([leader.address, standby.address])
            submitter, during_acked = submit_in_background(cluster, 3, f"cut{run}-during", during)
            try:
                time.sleep(0.3)  # anything it sent before the freeze has landed by now
                frozen_rev = cluster.mark(f"frozen-{run}")
                # Cut off, it must stop believing it leads on its own clock, not wait for etcd.
                wait_stepped_down(leader, state.epoch, TTL_S + 3)
                stepdowns.append(time.monotonic() - frozen_at)
                _, new_state, seen_at = cluster.wait_leader(TTL_S + 3, exclude=leader)
                takeovers.append(seen_at - frozen_at)
                assert new_state.epoch > state.epoch
                acked += cluster.submit(10, f"cut{run}-after", client=client)
                submitter.join(3 * TTL_S + 10)
                assert len(during_acked) == 3, f"submits during the partition: {during_acked}"
                acked += during_acked
                history = cluster.wait_ended(acked, 60)
            finally:
                proxy.resume()
            time.sleep(2.0)  # what the proxy held (the old leader's writes in flight) lands now
            history = cluster.history()
            history.check(acked)
            late = late_writes(history, frozen_rev, state.epoch)
            assert not late, f"committed for the cut-off leader's epoch {state.epoch}: {late}"
            current, current_state, _ = cluster.wait_leader(3)
            assert current_state.epoch == new_state.epoch and current is not leader
            cluster.replace_coordinator(leader)
    figure("leader<->etcd frozen: new leader seen", takeovers)
    figure("leader<->etcd frozen: old leader stepped down", stepdowns)


# ---- 2. node <-> etcd silent partition mid-job --------------------------------------------------


def test_node_silently_cut_from_etcd_mid_job_cancels_and_the_job_runs_elsewhere(tmp_path: Path) -> None:
    requeues, cancels = [], []
    nodes = (NodeSpec("cut", etcd_proxy=True), NodeSpec("ok"))
    with Cluster(tmp_path, coordinators=2, nodes=nodes, node_ttl=NODE_TTL_S) as cluster:
        client = cluster.client()
        acked: list[str] = []
        proxy = cluster.proxies["etcd:cut"]
        for run in range(RUNS):
            submitted, job_id, attempt = long_job_on(cluster, client, "cut", f"ncut{run}")
            acked += submitted
            time.sleep(0.5)
            frozen_at = time.monotonic()
            proxy.freeze()
            gone = f"job {job_id} attempt {attempt}: {CLAIM_GONE}"
            try:
                # Its lease lapses on its own clock: it stops the job without hearing from etcd.
                cluster.wait_for(
                    lambda gone=gone: node_log_says(cluster, "cut", gone), NODE_TTL_S + 3, "local cancel"
                )
                cancels.append(time.monotonic() - frozen_at)
                history = cluster.wait_ended(acked, 60)
            finally:
                proxy.resume()
            retry = next(c for c in history.claims if c.job_id == job_id and c.attempt > attempt)
            assert retry.record.node_id == "ok"
            # The requeue is the leader's decision; the new claim also waits for "ok" to be free.
            requeue = next(w for w in history.jobs[job_id] if w.view.attempt > attempt)
            requeues.append(requeue.at - frozen_at)
            cluster.wait_node_ready("cut", 30)  # re-registered once etcd is back
            history = cluster.history()
            history.check(acked)
            stale = [r for r in history.results if r.job_id == job_id and r.attempt == attempt]
            assert not stale, f"the cut-off node wrote a result for its lost attempt: {stale}"
    figure("node<->etcd frozen: node cancelled its job", cancels)
    figure("node<->etcd frozen: job requeued by the leader", requeues)


# ---- 3. coordinator -> node half-dead connection ------------------------------------------------


def test_dispatch_into_a_half_dead_node_connection_moves_the_job(tmp_path: Path) -> None:
    moves = []
    nodes = (NodeSpec("half", advertise_proxy=True), NodeSpec("ok"))
    with Cluster(tmp_path, coordinators=2, nodes=nodes) as cluster:
        client = cluster.client()
        acked: list[str] = []
        proxy = cluster.proxies["node:half"]
        for run in range(RUNS):
            # Warm up: both nodes run a job, so the leader holds an open channel to each.
            # (After a run's failure "half" cools down a few seconds: until then "ok" takes both.)
            ran_on: set[str] = set()
            for attempt in range(10):
                warm = cluster.submit(2, f"warm{run}-{attempt}", client=client, steps=30)
                acked += warm
                history = cluster.wait_ended(warm, 60)
                ran_on |= {v.node_id for j in warm if (v := history.final(j)) is not None}
                if ran_on == {"half", "ok"}:
                    break
            assert ran_on == {"half", "ok"}, f"warm-up jobs ran only on {ran_on}"
            cluster.wait_node_ready("half")
            cluster.wait_node_ready("ok")
            assert proxy.connections > 0, "the leader holds no connection to the proxied node"
            proxy.freeze_existing()  # the established connection goes silent; new ones work
            submitted_at = time.monotonic()
            batch = cluster.submit(2, f"half{run}", client=client)
            acked += batch
            history = cluster.wait_ended(batch, CLAIM_TIMEOUT_S + 30)
            took = time.monotonic() - submitted_at
            sent = [
                w.view.job_id
                for j in batch
                for w in history.jobs[j]
                if w.view.state == ASSIGNED and w.view.node_id == "half" and w.view.attempt == 1
            ]
            assert sent, f"no job was dispatched into the frozen connection: {batch}"
            final = history.final(sent[0])
            assert final is not None and final.result_attempt > 1 and final.node_id == "ok"
            job_s = 1.0  # a 3-step job, with margin for two busy cores
            assert took < CLAIM_TIMEOUT_S + job_s + 3.0, (
                f"job moved off the half-dead connection after {took:.1f}s"
            )
            moves.append(took)
            proxy.resume()
            cluster.wait_node_ready("half")
            history = cluster.history()
            history.check(acked)
    figure("leader->node connection half-dead: submit -> job done on another node", moves)


# ---- 4. node paused past its lease --------------------------------------------------------------


def test_node_paused_past_its_lease_does_not_record_its_stale_attempt(tmp_path: Path) -> None:
    reclaims, drops = [], []
    with Cluster(tmp_path, coordinators=2, node_ttl=NODE_TTL_S) as cluster:
        client = cluster.client()
        acked: list[str] = []
        for run in range(RUNS):
            job_id = f"stop{run}-long"
            client.submit(tiny_request(steps=LONG_STEPS), request_id=job_id)
            acked.append(job_id)
            claim = cluster.wait_claimed([job_id])
            victim, attempt = claim.record.node_id, claim.attempt
            other = next(n for n in cluster.nodes if n != victim)
            time.sleep(0.5)
            node = cluster.nodes[victim]
            paused_at = time.monotonic()
            os.kill(node.proc.pid, signal.SIGSTOP)
            try:
                deadline = paused_at + NODE_TTL_S + 10
                while not (
                    retry := [
                        c for c in cluster.live_history().claims if c.job_id == job_id and c.attempt > attempt
                    ]
                ):
                    assert time.monotonic() < deadline, f"{job_id} not claimed again\n{cluster.logs()}"
                    time.sleep(0.05)
                reclaims.append(retry[0].at - paused_at)
                assert retry[0].record.node_id == other
                time.sleep(max(0.0, paused_at + NODE_TTL_S + 2 - time.monotonic()))
            finally:
                os.kill(node.proc.pid, signal.SIGCONT)
            resumed_at = time.monotonic()
            gone = f"job {job_id} attempt {attempt}: {CLAIM_GONE}"
            cluster.wait_for(
                lambda v=victim, gone=gone: node_log_says(cluster, v, gone),
                10,
                "the resumed node to drop its job",
            )
            drops.append(time.monotonic() - resumed_at)
            history = cluster.wait_ended(acked, 60)
            cluster.wait_node_ready(victim, 30)
            history = cluster.history()
            history.check(acked)
            stale = [r for r in history.results if r.job_id == job_id and r.attempt == attempt]
            assert not stale, f"the resumed node wrote a result for its stale attempt: {stale}"
    figure("node SIGSTOP past its lease: job claimed again elsewhere", reclaims)
    figure("node SIGSTOP past its lease: SIGCONT -> stale job dropped", drops)


# ---- 5. failover with many finished jobs stored -------------------------------------------------


def fill_finished(cluster: Cluster) -> None:
    async def go() -> None:
        kv = EtcdKV(cluster.etcd.endpoints)
        try:
            stats = await fill(kv, cluster.keys, FILLED, 0, span_s=3600.0)
        finally:
            await kv.close()
        print(f"chaos-figure fill: {FILLED} finished jobs stored in {stats.seconds:.2f}s")

    asyncio.run(go())


def watch_epoch(proc: CoordinatorProcess, seconds: float) -> list[LeaderState | None]:
    states = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        states.append(proc.state(timeout=2.0))
        time.sleep(0.25)
    return states


def test_failover_with_many_finished_jobs_stored(tmp_path: Path) -> None:
    done_after_kill = []
    nodes = (NodeSpec("n1"),)
    with Cluster(tmp_path, coordinators=2, nodes=nodes, prefill=fill_finished) as cluster:
        acked: list[str] = []
        for run in range(RUNS):
            client = cluster.client()
            leader, state, _ = cluster.wait_leader(10)
            acked += cluster.submit_running(3, f"full{run}", client)
            killed_at = time.monotonic()
            leader.kill()
            successor, new_state, _ = cluster.wait_leader(TTL_S + 1.5, exclude=leader)
            assert new_state.epoch > state.epoch
            after = cluster.submit(1, f"full{run}-after", client=client)
            acked += after
            cluster.wait_ended(after, 30)
            done_after_kill.append(time.monotonic() - killed_at)
            states = [s for s in watch_epoch(successor, 10.0) if s is not None]  # None: a slow answer
            assert states and all(s == new_state for s in states), (
                f"the new leader's state moved: {set(states)}"
            )
            assert "stepped down" not in successor.log(), successor.log()
            history = cluster.wait_ended(acked, 60)
            history.check(acked)
            cluster.replace_coordinator(leader)
    figure(f"kill -9 leader with {FILLED} finished jobs stored: kill -> submitted job done", done_after_kill)


# ---- 6. submit burst ----------------------------------------------------------------------------


def submit_burst(addresses: Sequence[str], count: int, threads: int) -> tuple[list[str], list[str]]:
    """`count` submits from `threads` clients; (acknowledged ids, errors)."""
    acked: list[list[str]] = [[] for _ in range(threads)]
    errors: list[str] = []
    request = tiny_request()

    def worker(k: int) -> None:
        client = CoordinatorClient(list(addresses), policy=RetryPolicy(call_timeout_s=10.0))
        try:
            for i in range(k, count, threads):
                job_id = f"burst-{i:06d}"
                try:
                    client.submit(request, request_id=job_id)
                except CallError as err:
                    errors.append(f"{job_id}: {err}")
                    continue
                acked[k].append(job_id)
        finally:
            client.close()

    workers = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return [j for ids in acked for j in ids], errors


def test_submit_burst_is_stored_exactly_once_and_the_leader_keeps_its_lease(tmp_path: Path) -> None:
    args = ("--max-queue", str(BURST + 1000))
    with Cluster(tmp_path, coordinators=2, nodes=(), coordinator_args=args) as cluster:
        leader, state, _ = cluster.wait_leader(10)
        seen: list[LeaderState | None] = []
        stop = threading.Event()

        def monitor() -> None:
            while not stop.is_set():
                seen.append(leader.state(timeout=2.0))
                stop.wait(0.25)

        watcher = threading.Thread(target=monitor, daemon=True)
        watcher.start()
        started = time.monotonic()
        acked, errors = submit_burst([leader.address], BURST, threads=8)
        took = time.monotonic() - started
        stop.set()
        watcher.join()
        assert not errors, f"{len(errors)} submits failed, e.g. {errors[:5]}"
        answered = [s for s in seen if s is not None]  # /metrics may be slow to answer under the burst
        assert answered and all(s == state for s in answered), f"the leader's state moved: {set(seen)}"
        assert "stepped down" not in leader.log()
        cluster.wait_leader(1)
        history = cluster.history()
        stored = sorted(w.at for ws in history.jobs.values() for w in ws)
        quarter = len(stored) // 4
        first = quarter / max(1e-6, stored[quarter] - stored[0])
        last = quarter / max(1e-6, stored[-1] - stored[-1 - quarter])
        print(
            f"chaos-figure submit burst: {len(acked)} acknowledged in {took:.1f}s "
            f"= {len(acked) / took:.0f} submits/s (first quarter {first:.0f}/s, last quarter {last:.0f}/s; "
            f"{len(seen) - len(answered)}/{len(seen)} metrics polls unanswered in 2 s)"
        )
        history.check(acked, want=QUEUED)
        twice = [j for j in acked if len(history.jobs[j]) != 1]
        assert not twice, f"stored more than once: {twice[:10]}"
        assert len(history.jobs) == len(acked), f"{len(history.jobs)} jobs stored for {len(acked)} acks"
