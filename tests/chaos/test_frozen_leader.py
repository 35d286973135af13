"""A client following a job (Watch, or Generate) on a leader that freezes (SIGSTOP; real processes
and etcd) gets the job's end from the new leader within the idle bound, the failover and the job's
own time: not after the pause.

The frozen leader keeps its TCP connections open and says nothing; the client's idle bound on the
stream (RetryPolicy.idle_timeout_s, 4 missed heartbeats) is what moves it on.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from i2v_contract.coordinator_client import CoordinatorClient, RetryPolicy
from i2v_contract.v1 import coordinator_pb2
from tests.chaos.cluster import Cluster, NodeSpec, tiny_request

TTL_S = 5.0  # coordinator lease TTL (DESIGN.md default)

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.mark.parametrize("how", ["watch", "generate"])
def test_a_stream_on_a_sigstopped_leader_ends_on_the_new_leader(tmp_path: Path, how: str) -> None:
    with Cluster(tmp_path, coordinators=2, nodes=(NodeSpec("n1"),), coordinator_ttl=TTL_S) as cluster:
        leader, state, _ = cluster.wait_leader(10)
        standby = next(p for p in cluster.coordinators.procs if p is not leader)
        policy = RetryPolicy()  # the defaults the SDK and the CLI use
        client = CoordinatorClient([leader.address, standby.address], policy=policy)
        try:
            events: list[coordinator_pb2.JobEvent] = []
            pauses: list[str] = []
            outcome: list[coordinator_pb2.JobEvent | BaseException] = []
            ended = threading.Event()

            def follow() -> None:
                request = tiny_request(steps=30)
                try:
                    if how == "watch":
                        client.submit(request, request_id="frozen-job")
                        final = client.watch("frozen-job", events.append, on_pause=pauses.append)
                    else:
                        final = client.generate(
                            request, events.append, request_id="frozen-job", on_pause=pauses.append
                        )
                    outcome.append(final)
                except BaseException as exc:  # handed to the test thread
                    outcome.append(exc)
                ended.set()

            threading.Thread(target=follow, name=how, daemon=True).start()
            cluster.wait_for(
                lambda: any(e.HasField("progress") for e in events) or ended.is_set(), 30, f"progress ({how})"
            )
            assert not ended.is_set(), f"the {how} ended before the pause: {outcome}"
            paused_at = time.monotonic()
            leader.pause()
            try:
                finished = ended.wait(60)
                took = time.monotonic() - paused_at
                _, new_state, _ = cluster.wait_leader(1, exclude=leader)
            finally:
                leader.resume()
        finally:
            client.close()
        assert finished, f"the {how} did not end within 60 s of the pause\n{cluster.logs()}"
        final = outcome[0]
        assert isinstance(final, coordinator_pb2.JobEvent), final
        assert final.state == coordinator_pb2.JOB_SUCCEEDED and new_state.epoch > state.epoch
        assert bool(final.result.video) == (how == "generate")  # Generate inlines it, Watch names it
        assert pauses and pauses[0].startswith(f"{leader.address} sent nothing for 8 s")
        job_s = final.result.timings.total_s
        bound = max(policy.idle_timeout_s, TTL_S + 1.5) + job_s + 3.0
        print(f"chaos-figure SIGSTOP leader: {how} ended {took:.2f}s after the pause (job {job_s:.2f}s)")
        assert took < bound, f"the {how} ended {took:.1f} s after the pause; bound {bound:.1f} s: {pauses}"
