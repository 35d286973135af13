"""Two clients following jobs (one by Watch, one by Generate) on a leader that freezes (SIGSTOP for
I2V_CHAOS_PAUSE_S seconds, 45 in scripts/chaos.sh; real processes and etcd) each get their job's
end from the new leader within the idle bound, the failover and the job's own time: not after the
pause.

The frozen leader keeps its TCP connections open and says nothing; the client's idle bound on the
stream (RetryPolicy.idle_timeout_s, 4 missed heartbeats) is what moves it on.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from i2v_client import CoordinatorClient, RetryPolicy
from i2v_contract.wire import coordinator_pb2
from tests.chaos.cluster import Cluster, NodeSpec, tiny_request

TTL_S = 5.0  # coordinator lease TTL (default; docs/architecture.md, timings)
PAUSE_S = float(os.environ.get("I2V_CHAOS_PAUSE_S", "15"))
HOWS = ("watch", "generate")

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(60 + 2 * PAUSE_S)]


class Follower:
    """One client thread following one job; `took` is from the pause to the job's end."""

    def __init__(self, client: CoordinatorClient, how: str) -> None:
        self.how = how
        self.client = client
        self.events: list[coordinator_pb2.JobEvent] = []
        self.pauses: list[str] = []
        self.outcome: list[coordinator_pb2.JobEvent | BaseException] = []
        self.ended = threading.Event()
        self.ended_at = 0.0
        threading.Thread(target=self._follow, name=how, daemon=True).start()

    def _follow(self) -> None:
        request = tiny_request(steps=30, seed=len(self.how))
        job_id = f"frozen-{self.how}"
        try:
            if self.how == "watch":
                self.client.submit(request, request_id=job_id)
                final = self.client.watch(job_id, self.events.append, on_pause=self.pauses.append)
            else:
                final = self.client.generate(
                    request, self.events.append, request_id=job_id, on_pause=self.pauses.append
                )
            self.outcome.append(final)
        except BaseException as exc:  # handed to the test thread
            self.outcome.append(exc)
        self.ended_at = time.monotonic()
        self.ended.set()

    def streaming(self) -> bool:
        return any(e.HasField("progress") for e in self.events) or self.ended.is_set()


def test_two_streams_on_a_sigstopped_leader_end_on_the_new_leader(tmp_path: Path) -> None:
    nodes = (NodeSpec("n1"), NodeSpec("n2"))
    with Cluster(tmp_path, coordinators=2, nodes=nodes, coordinator_ttl=TTL_S) as cluster:
        leader, state, _ = cluster.wait_leader(10)
        standby = next(p for p in cluster.coordinators.procs if p is not leader)
        policy = RetryPolicy()  # the defaults the SDK and the CLI use
        clients = [CoordinatorClient([leader.address, standby.address], policy=policy) for _ in HOWS]
        try:
            followers = [Follower(client, how) for client, how in zip(clients, HOWS, strict=True)]
            cluster.wait_for(lambda: all(f.streaming() for f in followers), 30, "progress on both jobs")
            assert not any(f.ended.is_set() for f in followers), [f.outcome for f in followers]
            paused_at = time.monotonic()
            leader.pause()
            try:
                finished = all(
                    f.ended.wait(max(1.0, paused_at + PAUSE_S + 30 - time.monotonic())) for f in followers
                )
                _, new_state, _ = cluster.wait_leader(1, exclude=leader)
                # The leader stays frozen for the whole pause: the clients must not have needed it back.
                time.sleep(max(0.0, paused_at + PAUSE_S - time.monotonic()))
            finally:
                leader.resume()
        finally:
            for client in clients:
                client.close()
        assert finished, f"a stream did not end during the pause\n{cluster.logs()}"
        for f in followers:
            final = f.outcome[0]
            assert isinstance(final, coordinator_pb2.JobEvent), (f.how, final)
            assert final.state == coordinator_pb2.JOB_STATE_SUCCEEDED and new_state.epoch > state.epoch
            assert final.result.artifact_uri and not final.result.video  # by reference (Download fetches it)
            assert f.pauses and f.pauses[0].startswith(f"{leader.address} sent nothing for 8 s")
            took = f.ended_at - paused_at
            job_s = final.result.timings.total_s
            bound = max(policy.idle_timeout_s, TTL_S + 1.5) + job_s + 3.0
            print(
                f"chaos-figure SIGSTOP leader {PAUSE_S:g}s, 2 clients: {f.how} ended {took:.2f}s after "
                f"the pause (job {job_s:.2f}s, bound {bound:.1f}s)"
            )
            assert took < bound, (
                f"{f.how} ended {took:.1f} s after the pause; bound {bound:.1f} s: {f.pauses}"
            )
