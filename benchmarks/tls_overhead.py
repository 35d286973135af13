"""What transport security and authentication cost: Submit latency and a tiny job end to end,
plaintext vs TLS vs TLS+mTLS vs mTLS with bearer tokens, in the same run on the same machine.

Run from the repository root:
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/tls_overhead.py [--rounds 3 --submits 40 --jobs 4]

Set-up: one fresh etcd (tests/etcd_cluster.py) and, per mode, its own cluster under its own key
prefix: one real `i2v-coordinator` and one tiny `i2v-node` process, with a throwaway CA
(tests/pki.py). The client is the SDK (CoordinatorClient), as a user's program would be.

- plaintext: no TLS flags anywhere.
- tls: the coordinator's and the node's ports speak TLS; the coordinator verifies the node.
- mtls: every port also requires a client certificate (the client's, the coordinator's).
- mtls+auth: mtls, and the coordinator and the node take bearer tokens (--tokens-file): the client
  presents its token, the coordinator its dispatch token; the coordinator checks job ownership.

After an uncounted warm-up per mode, per round, modes in a rotating order (so drift of a shared
machine spreads over all):
1. warm Submit: `--submits` calls on one client (one connection), no node registered yet (jobs
   stay queued; they are cancelled after the phase);
2. cold Submit: `--cold` calls each from a new client (connection, TLS handshake, health check);
3. end to end: once every node serves, `--jobs` tiny jobs, Generate to the final event plus the
   video's download, one at a time.
Printed: median and p10..p90 per mode, and each mode's median over plaintext's.
"""

from __future__ import annotations

import argparse
import io
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from i2v_client import ClientTls, CoordinatorClient, build_request
from i2v_contract import auth
from i2v_contract.wire import common_pb2
from i2v_node.config import default_cache_dir
from tests.chaos.coordinator_procs import CoordinatorProcess
from tests.etcd_cluster import EtcdCluster
from tests.integration.node_process import NodeProcess
from tests.media import png
from tests.pki import TestCA

MODES = ("plaintext", "tls", "mtls", "mtls+auth")


def request() -> common_pb2.GenerationRequest:
    return build_request(png(), prompt="a slow pan", width=64, height=64, frames=2, steps=2, fps=4, seed=5)


@dataclass
class Mode:
    name: str
    coordinator: CoordinatorProcess
    client_tls: ClientTls | None
    node_args: tuple[str, ...]
    node_tls: ClientTls | None
    token: str | None = None
    admin_token: str | None = None  # for the fleet view (ListNodes), which a client token may not see
    node: NodeProcess | None = None
    samples: dict[str, list[float]] = field(default_factory=lambda: {"warm": [], "cold": [], "e2e": []})

    def client(self, token: str | None = None) -> CoordinatorClient:
        return CoordinatorClient(self.coordinator.address, tls=self.client_tls, token=token or self.token)


def slug(name: str) -> str:
    """The mode's name as ids and key prefixes may hold it."""
    return name.replace("+", "-")


def _flags(cert: Path, key: Path, client_ca: Path | None) -> tuple[str, ...]:
    flags = ("--tls-cert", str(cert), "--tls-key", str(key))
    return (*flags, "--tls-client-ca", str(client_ca)) if client_ca else flags


def _tokens(where: Path) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
    """A client token, an admin (dispatch) token, and the coordinator's and the node's flags."""
    client, dispatch = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    tokens = where / "tokens"
    lines = (auth.token_line(client, "bench"), auth.token_line(dispatch, "dispatch", "admin"))
    tokens.write_text("".join(f"{line}\n" for line in lines))
    (where / "dispatch-token").write_text(dispatch)
    flags = ("--tokens-file", str(tokens))
    return client, dispatch, (*flags, "--dispatch-token-file", str(where / "dispatch-token")), flags


def start_modes(etcd: EtcdCluster, work: Path, ca: TestCA, modes: list[Mode]) -> None:
    """Each mode's coordinator, appended to `modes` as it starts (so a failure later still stops it)."""
    coordinator, node, client = ca.issue("i2v-coordinator"), ca.issue("bench-node"), ca.issue("bench-client")
    for name in MODES:
        if name == "plaintext":
            c_flags: tuple[str, ...] = ()
            n_flags: tuple[str, ...] = ()
            client_tls, node_tls = None, None
        else:
            client_ca = ca.cert if name.startswith("mtls") else None
            c_flags = (*_flags(coordinator.cert, coordinator.key, client_ca), "--tls-ca", str(ca.cert))
            n_flags = _flags(node.cert, node.key, client_ca)
            with_cert = client_ca is not None
            client_tls = ClientTls(ca.cert, *((client.cert, client.key) if with_cert else (None, None)))
            node_tls = ClientTls(ca.cert, coordinator.cert, coordinator.key)
        prefix = f"/bench-{slug(name)}-{uuid.uuid4().hex[:6]}/"
        (work / name).mkdir()
        token = admin = None
        if name.endswith("+auth"):
            token, admin, c_auth, n_auth = _tokens(work / name)
            c_flags, n_flags = (*c_flags, *c_auth), (*n_flags, *n_auth)
        proc = CoordinatorProcess(etcd.endpoints, work / name, f"c-{slug(name)}", *c_flags, prefix=prefix)
        node_args = ("--etcd", ",".join(etcd.endpoints), "--artifacts", str(work / name / "artifacts"))
        modes.append(
            Mode(name, proc, client_tls, (*node_args, "--prefix", prefix, *n_flags), node_tls, token, admin)
        )
    for mode in modes:
        mode.coordinator.wait_started()


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def submits(mode: Mode, warm: int, cold: int, submitted: list[str]) -> None:
    req = request()
    with mode.client() as client:
        submitted.append(client.submit(req).job_id)  # the connection is made before timing
        for _ in range(warm):
            mode.samples["warm"].append(timed(lambda: submitted.append(client.submit(req).job_id)))

    def one_cold() -> None:
        with mode.client() as fresh:
            submitted.append(fresh.submit(req).job_id)

    for _ in range(cold):
        mode.samples["cold"].append(timed(one_cold))


def end_to_end(mode: Mode, jobs: int) -> None:
    req = request()
    with mode.client() as client:

        def one() -> None:
            final = client.generate(req)
            client.download(final.job_id, io.BytesIO())

        for _ in range(jobs):
            mode.samples["e2e"].append(timed(one))


def _wait_nodes(modes: list[Mode]) -> None:
    for mode in modes:
        assert mode.node is not None
        mode.node.wait_serving()
        with mode.client(mode.admin_token) as client:
            deadline = time.monotonic() + 60
            while not client.list_nodes().nodes:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{mode.name}: node never registered")
                time.sleep(0.1)


def spread(values: list[float]) -> str:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    median = statistics.median(values) * 1000
    return f"{median:7.2f} ms [p10 {at(0.1):.2f} .. p90 {at(0.9):.2f}] n={len(values)}"


def report(modes: list[Mode]) -> None:
    base = {k: statistics.median(v) for k, v in modes[0].samples.items()}
    titles = {
        "warm": "Submit, warm connection",
        "cold": "Submit, new connection",
        "e2e": "tiny job end to end",
    }
    for kind, title in titles.items():
        print(f"\n{title}:")
        for mode in modes:
            values = mode.samples[kind]
            ratio = statistics.median(values) / base[kind]
            print(f"  {mode.name:10s} {spread(values)}  x{ratio:.3f} vs plaintext")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--submits", type=int, default=40, help="warm Submits per mode per round")
    p.add_argument("--cold", type=int, default=10, help="Submits on a new connection per mode per round")
    p.add_argument("--jobs", type=int, default=4, help="tiny jobs end to end per mode per round")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="i2v-tls-bench-") as tmp:
        work = Path(tmp)
        (work / "etcd").mkdir()
        etcd = EtcdCluster(1, work / "etcd").start()
        modes: list[Mode] = []
        try:
            start_modes(etcd, work, TestCA(work / "pki"), modes)
            order = list(range(len(modes)))
            submitted: dict[str, list[str]] = {m.name: [] for m in modes}
            for mode in modes:  # warm-up, not counted: first connections, etcd's first writes
                submits(mode, 10, 2, submitted[mode.name])
                mode.samples = {k: [] for k in mode.samples}
            for r in range(a.rounds):
                for i in order[r % len(order) :] + order[: r % len(order)]:
                    submits(modes[i], a.submits, a.cold, submitted[modes[i].name])
            for mode in modes:  # nothing queued before the end-to-end phase
                with mode.client() as client:
                    for job_id in submitted[mode.name]:
                        client.cancel(job_id)
            for mode in modes:
                log = work / mode.name / "node.log"
                mode.node = NodeProcess(
                    default_cache_dir(),
                    log,
                    *mode.node_args,
                    node_id=f"n-{slug(mode.name)}",
                    tls=mode.node_tls,
                )
            _wait_nodes(modes)
            for mode in modes:  # warm-up: each node's first job
                end_to_end(mode, 1)
                mode.samples["e2e"] = []
            for r in range(a.rounds):
                for i in order[r % len(order) :] + order[: r % len(order)]:
                    end_to_end(modes[i], a.jobs)
            report(modes)
        finally:
            for mode in modes:
                if mode.node is not None:
                    mode.node.stop()
                mode.coordinator.stop()
            etcd.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
