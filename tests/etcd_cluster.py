"""A real etcd cluster (1 or 3 members) on free loopback ports, for integration and chaos tests.

Members run as child processes we own; every kill/stop targets our own pids. Raft timings are
shortened (heartbeat 50 ms, election 250 ms) so leader failover takes well under a second; with
those settings etcd's minimum lease TTL is 1 s. Optionally the members serve clients over TLS (with
client certificates required) and run with authentication enabled (EtcdTLS, EtcdAuth).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
from aetcd import rpc

from i2v_common.etcd_wire import prefix_range

HEARTBEAT_MS = 50
ELECTION_MS = 250
AUTO_COMPACTION_REVISIONS = 100_000  # keep this many revisions of history (etcd checks every 5 min)
START_TIMEOUT_S = 20.0


def etcd_binary() -> str | None:
    """The etcd binary: $ETCD_BIN, else `etcd` on PATH; None when absent."""
    return os.environ.get("ETCD_BIN") or shutil.which("etcd")


# Ports handed out come from below the kernel's ephemeral range (32768-60999 on Linux), so a server
# that binds port 0, or a client's outgoing connection, can never take one between our pick and
# its bind. Each test process walks its own slice, starting from its pid, and never repeats a port.
_PICK_LOW, _PICK_HIGH = 20_000, 32_000
_picked: set[int] = set()
_next = [_PICK_LOW + (os.getpid() * 97) % (_PICK_HIGH - _PICK_LOW)]


def free_port() -> int:
    """A loopback port nothing listens on now and that this process has not handed out before."""
    for _ in range(_PICK_HIGH - _PICK_LOW):
        port = _next[0]
        _next[0] = _PICK_LOW + (port + 1 - _PICK_LOW) % (_PICK_HIGH - _PICK_LOW)
        if port in _picked:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _picked.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {_PICK_LOW}-{_PICK_HIGH}")


@dataclass(frozen=True)
class EtcdTLS:
    """Serve clients over TLS with this server certificate; `client` is the certificate the harness
    itself presents (its health checks and the auth setup) when client certificates are required."""

    ca: Path
    cert: Path
    key: Path
    client: tuple[Path, Path] | None = None  # (cert, key)
    client_cert_auth: bool = True

    def args(self) -> list[str]:
        args = ["--cert-file", str(self.cert), "--key-file", str(self.key), "--trusted-ca-file", str(self.ca)]
        return args + (["--client-cert-auth"] if self.client_cert_auth else [])

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if self.client is not None:
            context.load_cert_chain(str(self.client[0]), str(self.client[1]))
        return context

    def channel_credentials(self) -> grpc.ChannelCredentials:
        cert, key = (p.read_bytes() for p in self.client) if self.client else (None, None)
        return grpc.ssl_channel_credentials(self.ca.read_bytes(), key, cert)


@dataclass(frozen=True)
class EtcdUser:
    name: str
    password: str
    prefixes: tuple[str, ...] = ("/",)  # read-write on every key under these


@dataclass(frozen=True)
class EtcdAuth:
    """Enable authentication once the cluster is up: user root (role root) and `users`, each with a
    role of the same name holding read-write on its prefixes. token_ttl_s: etcd's --auth-token-ttl."""

    root_password: str = "root-secret"
    users: tuple[EtcdUser, ...] = ()
    token_ttl_s: int | None = None


@dataclass
class _Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    scheme: str = "http"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.endpoint}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


class EtcdCluster:
    def __init__(
        self,
        size: int,
        tmp_dir: Path,
        *,
        auto_compaction: tuple[str, str] = ("revision", str(AUTO_COMPACTION_REVISIONS)),
        tls: EtcdTLS | None = None,
        auth: EtcdAuth | None = None,
    ) -> None:
        """auto_compaction: etcd's (--auto-compaction-mode, --auto-compaction-retention)."""
        if size < 1:
            raise ValueError(f"EtcdCluster size must be >= 1, got {size}")
        binary = etcd_binary()
        if binary is None:
            raise FileNotFoundError("etcd binary not found: install etcd or set ETCD_BIN")
        self._binary = binary
        self._token = f"i2v-test-{uuid.uuid4().hex[:12]}"
        self._compaction = auto_compaction
        self.tls = tls
        self.auth = auth
        self._ssl = tls.ssl_context() if tls else None
        self.members = [
            _Member(
                name=f"m{i}",
                client_port=free_port(),
                peer_port=free_port(),
                data_dir=tmp_dir / f"m{i}.etcd",
                log_path=tmp_dir / f"m{i}.log",
                scheme="https" if tls else "http",
            )
            for i in range(size)
        ]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def _spawn(self, member: _Member, state: str) -> None:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        args = [
            self._binary,
            "--name", member.name,
            "--data-dir", str(member.data_dir),
            "--listen-client-urls", member.client_url,
            "--advertise-client-urls", member.client_url,
            "--listen-peer-urls", member.peer_url,
            "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-state", state,
            "--initial-cluster-token", self._token,
            "--heartbeat-interval", str(HEARTBEAT_MS),
            "--election-timeout", str(ELECTION_MS),
            "--logger", "zap",
            "--log-outputs", "stderr",
            "--log-level", "warn",
            # Revisions must not grow without bound (as in production), but by revision count:
            # the chaos recorder replays every revision of a run, which a time-based retention
            # could compact away under a slow machine.
            "--auto-compaction-mode", self._compaction[0],
            "--auto-compaction-retention", self._compaction[1],
            *(self.tls.args() if self.tls else []),
            *self._auth_args(),
        ]  # fmt: skip
        with member.log_path.open("ab") as log_file:
            member.proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)

    def _auth_args(self) -> list[str]:
        ttl = self.auth.token_ttl_s if self.auth else None
        return ["--auth-token-ttl", str(ttl)] if ttl else []

    def start(self, attempts: int = 3) -> EtcdCluster:
        """Start all members; on a failed start (e.g. a port taken meanwhile) retry on new ports."""
        for attempt in range(attempts):
            for member in self.members:
                self._spawn(member, "new")
            try:
                self.wait_healthy(range(len(self.members)))
                if self.auth is not None:
                    self._enable_auth(self.auth)
                return self
            except (RuntimeError, TimeoutError):
                self.stop_all()
                if attempt == attempts - 1:
                    raise
                for member in self.members:
                    shutil.rmtree(member.data_dir, ignore_errors=True)
                    member.client_port, member.peer_port = free_port(), free_port()
        raise AssertionError("unreachable")

    def wait_healthy(self, indexes: range | list[int], timeout: float = START_TIMEOUT_S) -> None:
        """Wait until the given members report healthy (they have a leader); bounded."""
        deadline = time.monotonic() + timeout
        for i in indexes:
            member = self.members[i]
            while not self._healthy(member):
                if member.proc is None or member.proc.poll() is not None:
                    raise RuntimeError(f"etcd member {member.name} exited during start:\n{self.log_tail(i)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"etcd member {member.name} not healthy in {timeout}s:\n{self.log_tail(i)}"
                    )
                time.sleep(0.05)

    def _enable_auth(self, auth: EtcdAuth) -> None:
        """Users and roles through etcd's Auth API, then AuthEnable (etcdctl is not needed)."""
        with self._channel(self.members[0]) as channel:
            stub = rpc.AuthStub(channel)
            stub.UserAdd(rpc.AuthUserAddRequest(name="root", password=auth.root_password), timeout=5)
            stub.RoleAdd(rpc.AuthRoleAddRequest(name="root"), timeout=5)
            stub.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"), timeout=5)
            for user in auth.users:
                stub.UserAdd(rpc.AuthUserAddRequest(name=user.name, password=user.password), timeout=5)
                stub.RoleAdd(rpc.AuthRoleAddRequest(name=user.name), timeout=5)
                for prefix in user.prefixes:
                    start, end = prefix_range(prefix)
                    perm = rpc.Permission(permType=rpc.Permission.READWRITE, key=start, range_end=end)
                    stub.RoleGrantPermission(
                        rpc.AuthRoleGrantPermissionRequest(name=user.name, perm=perm), timeout=5
                    )
                stub.UserGrantRole(rpc.AuthUserGrantRoleRequest(user=user.name, role=user.name), timeout=5)
            stub.AuthEnable(rpc.AuthEnableRequest(), timeout=5)

    def _healthy(self, member: _Member) -> bool:
        try:
            with urllib.request.urlopen(
                f"{member.client_url}/health", timeout=0.5, context=self._ssl
            ) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def log_tail(self, i: int, lines: int = 20) -> str:
        path = self.members[i].log_path
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def pid(self, i: int) -> int:
        proc = self.members[i].proc
        if proc is None:
            raise RuntimeError(f"etcd member {i} is not running")
        return proc.pid

    def running(self, i: int) -> bool:
        proc = self.members[i].proc
        return proc is not None and proc.poll() is None

    def kill(self, i: int) -> None:
        """SIGKILL member i (a crash) and reap it."""
        proc = self.members[i].proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)  # a paused process must be able to die and be reaped
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.members[i].proc = None

    def stop(self, i: int, timeout: float = 5.0) -> None:
        """SIGTERM member i (a clean shutdown), SIGKILL if it does not exit in time."""
        proc = self.members[i].proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.members[i].proc = None

    def pause(self, i: int) -> None:
        os.kill(self.pid(i), signal.SIGSTOP)

    def resume(self, i: int) -> None:
        os.kill(self.pid(i), signal.SIGCONT)

    def restart(self, i: int, wait: bool = True) -> None:
        """Start member i again on its data dir and ports (after kill or stop)."""
        if self.running(i):
            raise RuntimeError(f"etcd member {i} is still running; kill or stop it first")
        self._spawn(self.members[i], "existing")
        if wait:
            self.wait_healthy([i])

    def leader_index(self, timeout: float = 5.0) -> int:
        """Index of the current leader, asked of the running members; bounded wait for an election."""
        deadline = time.monotonic() + timeout
        while True:
            ids: dict[int, int] = {}
            leaders: set[int] = set()
            for i, member in enumerate(self.members):
                if not self.running(i):
                    continue
                status = self._status(member)
                if status is not None:
                    ids[status[0]] = i
                    if status[1]:
                        leaders.add(status[1])
            if len(leaders) == 1 and (leader := leaders.pop()) in ids:
                return ids[leader]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no agreed etcd leader among running members within {timeout}s")
            time.sleep(0.05)

    def _status(self, member: _Member) -> tuple[int, int] | None:
        """(member id, leader id) from Maintenance.Status over gRPC: etcd's HTTP gateway refuses
        clients that present a certificate."""
        try:
            with self._channel(member) as channel:
                status = rpc.MaintenanceStub(channel).Status(rpc.StatusRequest(), timeout=0.5)
        except grpc.RpcError:
            return None
        return int(status.header.member_id), int(status.leader)

    def _channel(self, member: _Member) -> grpc.Channel:
        if self.tls is None:
            return grpc.insecure_channel(member.endpoint)
        return grpc.secure_channel(member.endpoint, self.tls.channel_credentials())

    def stop_all(self) -> None:
        for i in range(len(self.members)):
            self.kill(i)
