"""Coordinator failover time: kill -9 of the leader, and planned handover (SIGTERM).

Run from the repository root:  .venv/bin/python benchmarks/failover.py [--runs 20] [--coordinators 3]

A real single-member etcd and real `i2v-coordinator` processes (default lease TTL 5 s). Per run the
leader is found, signalled, and the time until another coordinator reports leading (its /metrics
polled every 10 ms) is recorded; the signalled process is replaced so the group size stays
constant. The crash path is the refused-connection probe (3 refusals over >= 300 ms, probes every
100 ms); without it the bound is lease expiry, TTL + one keepalive interval.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chaos.coordinator_procs import CoordinatorGroup, CoordinatorProcess
from tests.etcd_cluster import EtcdCluster

# Published defaults of the systems users compare us with (not measured here).
ANCHORS = (
    ("Kubernetes client-go leader election", "lease duration 15 s (renew deadline 10 s, retry 2 s)"),
    ("Patroni", "ttl 30 s (loop_wait 10 s)"),
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def measure(
    group: CoordinatorGroup, signal_leader: Callable[[CoordinatorProcess], None]
) -> tuple[float, int]:
    leader, state, _ = group.wait_leader(15)
    started = time.monotonic()
    signal_leader(leader)
    _, new_state, seen = group.wait_leader(15, exclude=leader)
    if new_state.epoch <= state.epoch:
        raise AssertionError(f"epoch did not increase: {state.epoch} -> {new_state.epoch}")
    leader.stop()
    group.procs.remove(leader)
    group.add().wait_started()
    return seen - started, new_state.epoch


def summarise(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (
        f"{name:<28} n={len(ms):<3} median {statistics.median(ms):7.1f} ms   "
        f"p95 {percentile(ms, 0.95):7.1f} ms   max {max(ms):7.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="kills (and as many SIGTERMs)")
    parser.add_argument("--coordinators", type=int, default=3)
    parser.add_argument("--lease-ttl", type=float, default=5.0)
    args = parser.parse_args()
    if args.runs < 1 or args.coordinators < 2:
        parser.error("need --runs >= 1 and --coordinators >= 2")

    with tempfile.TemporaryDirectory(prefix="i2v-failover-") as tmp:
        workdir = Path(tmp)
        etcd = EtcdCluster(1, workdir).start()
        group = CoordinatorGroup(
            etcd.endpoints, workdir, args.coordinators, "--lease-ttl", str(args.lease_ttl)
        )
        try:
            group.wait_started()
            kills, terms, epochs = [], [], []
            for i in range(args.runs):
                took, epoch = measure(group, CoordinatorProcess.kill)
                kills.append(took)
                epochs.append(epoch)
                print(f"kill -9 run {i + 1:>3}: {took * 1000:7.1f} ms (epoch {epoch})", flush=True)
            for i in range(args.runs):
                took, epoch = measure(group, CoordinatorProcess.terminate)
                terms.append(took)
                epochs.append(epoch)
                print(f"SIGTERM run {i + 1:>3}: {took * 1000:7.1f} ms (epoch {epoch})", flush=True)
        finally:
            group.stop_all()
            etcd.stop_all()

    assert epochs == sorted(set(epochs)), "epochs must strictly increase"
    ttl = args.lease_ttl
    print()
    print(f"{args.coordinators} coordinators, lease TTL {ttl:g} s, single-member etcd on loopback")
    print(summarise("failover after kill -9", kills))
    print(summarise("planned handover (SIGTERM)", terms))
    print(f"{'bound without the probe':<28} lease expiry: up to {ttl:g} s + one keepalive interval")
    for name, default in ANCHORS:
        print(f"{'anchor':<28} {name}: {default}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
