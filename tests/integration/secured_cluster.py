"""A whole secured cluster as real processes, for the secrets-hygiene test: one etcd member serving
TLS with client certificates required and authentication on; two `i2v-coordinator` and one tiny
`i2v-node` with TLS, mTLS, a tokens file and etcd users of their own; an `i2v-gateway` in front.
Every process logs at DEBUG. Every secret is a fresh random string, so a search for it in a log
cannot miss by accident nor match by chance.

A gateway without TLS flags towards the coordinators gets its own plaintext coordinator and node
(tokens still on, on the same secured etcd, under another prefix)."""

from __future__ import annotations

import contextlib
import io
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from i2v_client import ClientTls, CoordinatorClient
from i2v_contract import auth
from tests.chaos.coordinator_procs import CoordinatorGroup, CoordinatorProcess
from tests.etcd_cluster import EtcdAuth, EtcdCluster, EtcdTLS, EtcdUser
from tests.integration.gateway_process import GatewayProcess
from tests.integration.node_process import NodeProcess, node_env
from tests.pki import Issued, TestCA

DEBUG = ("--log-level", "DEBUG")


def fresh(kind: str) -> str:
    """A secret no log could hold by chance: the kind (for a readable failure) and 32 random hex."""
    return f"{kind}-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Secrets:
    # bearer tokens by role in the run; "wrong" is never in a tokens file, "alice2" and "carol"
    # arrive with the rotation (alice's token is replaced, carol is a new client)
    tokens: dict[str, str] = field(
        default_factory=lambda: {
            n: fresh(f"tok{n}") for n in ("alice", "bob", "root", "dispatch", "wrong", "alice2", "carol")
        }
    )
    # client names carry a random part too: they may be logged, never put in a metric label
    names: dict[str, str] = field(
        default_factory=lambda: {n: f"{n}-{uuid.uuid4().hex[:10]}" for n in ("alice", "bob", "carol")}
    )
    passwords: dict[str, str] = field(
        default_factory=lambda: {n: fresh(f"pw{n}") for n in ("coordinator", "node", "root")}
    )

    def token_lines(self, rotated: bool = False) -> list[str]:
        t, n = self.tokens, self.names
        lines = [
            auth.token_line(t["alice2"] if rotated else t["alice"], n["alice"]),
            auth.token_line(t["bob"], n["bob"]),
            auth.token_line(t["root"], "root", auth.ADMIN),
            auth.token_line(t["dispatch"], "coordinators", auth.ADMIN),
        ]
        if not rotated:
            return lines
        # an operator's slip: a token pasted in place of its hash (the servers skip the line)
        return [*lines, auth.token_line(t["carol"], n["carol"]), f"{t['wrong']} {n['carol']} client"]


@dataclass
class Pki:
    ca: TestCA
    coordinator: Issued
    node: Issued
    client: Issued  # the CLI's and the test's client certificate
    gateway: Issued
    etcd_server: Issued
    etcd_client: Issued

    @classmethod
    def make(cls, directory: Path) -> Pki:
        ca = TestCA(directory)
        client_only = {"server": False, "dns": (), "ips": ()}
        return cls(
            ca,
            ca.issue("i2v-coordinator"),
            ca.issue("hygiene-node"),
            ca.issue("hygiene-client", **client_only),  # type: ignore[arg-type]
            ca.issue("i2v-gateway", **client_only),  # type: ignore[arg-type]
            ca.issue("etcd"),
            ca.issue("etcd-client", **client_only),  # type: ignore[arg-type]
        )

    @property
    def client_tls(self) -> ClientTls:
        return ClientTls(self.ca.cert, self.client.cert, self.client.key)

    def key_files(self) -> list[Path]:
        return sorted(self.ca.directory.glob("*.key"))


@dataclass
class SecuredCluster:
    workdir: Path
    secrets: Secrets
    pki: Pki
    etcd: EtcdCluster
    group: CoordinatorGroup
    node: NodeProcess
    gateway: GatewayProcess
    tokens_path: Path
    gateway_tls: bool
    plain: tuple[CoordinatorProcess, NodeProcess] | None = None  # the gateway's, without gateway TLS

    @property
    def targets(self) -> str:
        return ",".join(p.address for p in self.group.procs)

    def wait_ready(self) -> None:
        self.group.wait_started()
        self.group.wait_leader(20.0)
        _wait_alive(self.gateway)
        root = self.secrets.tokens["root"]
        _wait_node(self.targets, "hygiene-node", root, self.node, self.pki.client_tls)
        if self.plain is not None:
            self.plain[0].wait_started()
            _wait_node(self.plain[0].address, "plain-node", root, self.plain[1], None)

    def log_paths(self) -> dict[str, Path]:
        """Every log of every server process started, by a short name."""
        paths = {f"etcd-{m.name}": m.log_path for m in self.etcd.members}
        paths |= {p.member_id: p.log_path for p in self.group.procs}
        paths |= {"hygiene-node": self.node.log_path, "gateway": self.gateway.log_path}
        if self.plain is not None:
            paths |= {self.plain[0].member_id: self.plain[0].log_path, "plain-node": self.plain[1].log_path}
        return paths

    def metrics_ports(self) -> dict[str, int]:
        ports = {p.member_id: p.metrics_port for p in self.group.procs} | {
            "hygiene-node": self.node.metrics_port
        }
        if self.plain is not None:
            ports |= {
                self.plain[0].member_id: self.plain[0].metrics_port,
                "plain-node": self.plain[1].metrics_port,
            }
        return ports


def _wait_node(targets: str, node_id: str, token: str, node: NodeProcess, tls: ClientTls | None) -> None:
    """Until the coordinators list the node (bounded: the tiny model loads within a minute)."""
    deadline = time.monotonic() + 90
    with CoordinatorClient(targets, tls=tls, token=token) as client:
        while not any(n.node_id == node_id for n in client.list_nodes().nodes):
            if node.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"node {node_id} not registered:\n{node.log()}")
            time.sleep(0.1)


def _wait_alive(gateway: GatewayProcess, timeout: float = 60.0) -> None:
    """Until the gateway answers /healthz (its /readyz asks for the fleet view, an admin's call)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{gateway.url}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if gateway.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"gateway not serving:\n{gateway.log()}")
        time.sleep(0.1)


def gateway_speaks_tls() -> bool:
    """Whether this gateway takes --tls-ca (to reach coordinators that serve TLS)."""
    from i2v_gateway.main import parse_args

    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), contextlib.suppress(SystemExit):
        parse_args(["--help"], {})
    return "--tls-ca" in shown.getvalue()


def write_secret(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def write_tokens(path: Path, lines: list[str]) -> None:
    write_secret(path, "\n".join(lines))
    st = path.stat()  # a distinct mtime even within one clock tick
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def _etcd(workdir: Path, pki: Pki, secrets: Secrets, prefix: str) -> EtcdCluster:
    pw = secrets.passwords
    users = (
        EtcdUser("i2v-coordinator", pw["coordinator"], (prefix,)),
        EtcdUser("i2v-node", pw["node"], (prefix,)),
    )
    (workdir / "etcd").mkdir()
    e = pki.etcd_server
    tls = EtcdTLS(pki.ca.cert, e.cert, e.key, client=(pki.etcd_client.cert, pki.etcd_client.key))
    return EtcdCluster(
        1, workdir / "etcd", tls=tls, auth=EtcdAuth(root_password=pw["root"], users=users)
    ).start()


def _etcd_flags(workdir: Path, pki: Pki, secrets: Secrets, user: str) -> list[str]:
    password = write_secret(workdir / f"{user}.password", secrets.passwords[user.removeprefix("i2v-")])
    return [
        "--etcd-ca", str(pki.ca.cert), "--etcd-cert", str(pki.etcd_client.cert),
        "--etcd-key", str(pki.etcd_client.key), "--etcd-user", user, "--etcd-password-file", str(password),
    ]  # fmt: skip


@dataclass
class _Launch:
    """The flags every server shares, and the processes started so far (to stop them all)."""

    workdir: Path
    cache: Path
    secrets: Secrets
    pki: Pki
    etcd: EtcdCluster
    started: list[NodeProcess | CoordinatorProcess | GatewayProcess] = field(default_factory=list)

    def coordinator_flags(self, tokens: Path, dispatch: Path) -> list[str]:
        etcd = _etcd_flags(self.workdir, self.pki, self.secrets, "i2v-coordinator")
        return ["--tokens-file", str(tokens), "--dispatch-token-file", str(dispatch), *etcd, *DEBUG]

    def node(self, node_id: str, prefix: str, tokens: Path, *tls: str) -> NodeProcess:
        c = self.pki.coordinator
        node = NodeProcess(
            self.cache, self.workdir / f"{node_id}.log",
            "--etcd", ",".join(self.etcd.endpoints), "--artifacts", str(self.workdir / "artifacts"),
            "--prefix", prefix, "--tokens-file", str(tokens), *tls,
            *_etcd_flags(self.workdir, self.pki, self.secrets, "i2v-node"), *DEBUG,
            node_id=node_id, tls=ClientTls(self.pki.ca.cert, c.cert, c.key) if tls else None,
        )  # fmt: skip
        self.started.append(node)
        return node

    def stop(self) -> None:
        for proc in reversed(self.started):
            proc.stop()
        self.etcd.stop_all()


@contextlib.contextmanager
def secured_cluster(workdir: Path, cache: Path) -> Iterator[SecuredCluster]:
    secrets, pki = Secrets(), Pki.make(workdir / "pki")
    tokens = workdir / "tokens"
    write_tokens(tokens, secrets.token_lines())
    dispatch = write_secret(workdir / "dispatch.token", secrets.tokens["dispatch"])
    launch = _Launch(workdir, cache, secrets, pki, _etcd(workdir, pki, secrets, "/hyg-"))
    try:
        prefix, ca = f"/hyg-{uuid.uuid4().hex[:8]}/", str(pki.ca.cert)
        c, n, g = pki.coordinator, pki.node, pki.gateway
        group = CoordinatorGroup(
            launch.etcd.endpoints, workdir, 2,
            "--tls-cert", str(c.cert), "--tls-key", str(c.key), "--tls-client-ca", ca, "--tls-ca", ca,
            *launch.coordinator_flags(tokens, dispatch), prefix=prefix,
        )  # fmt: skip
        launch.started += group.procs
        node_tls = ("--tls-cert", str(n.cert), "--tls-key", str(n.key), "--tls-client-ca", ca)
        node = launch.node("hygiene-node", prefix, tokens, *node_tls)
        plain: tuple[CoordinatorProcess, NodeProcess] | None = None
        if gateway_tls := gateway_speaks_tls():
            gateway_flags = ["--tls-ca", ca, "--tls-cert", str(g.cert), "--tls-key", str(g.key)]
            gateway_targets = ",".join(p.address for p in group.procs)
        else:
            plain_prefix = f"/hyg-plain-{uuid.uuid4().hex[:8]}/"
            plain_flags = launch.coordinator_flags(tokens, dispatch)
            coordinator = CoordinatorProcess(
                launch.etcd.endpoints, workdir, "plain-c", *plain_flags, prefix=plain_prefix
            )
            launch.started.append(coordinator)
            plain = (coordinator, launch.node("plain-node", plain_prefix, tokens))
            gateway_flags, gateway_targets = [], coordinator.address
        gateway = GatewayProcess(
            gateway_targets, workdir / "gateway.log", *gateway_flags, *DEBUG, env=node_env(cache)
        )
        launch.started.append(gateway)
        made = SecuredCluster(
            workdir, secrets, pki, launch.etcd, group, node, gateway, tokens, gateway_tls, plain
        )
        made.wait_ready()
        yield made
    finally:
        launch.stop()
