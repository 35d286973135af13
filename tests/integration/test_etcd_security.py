"""A secured etcd (TLS with client certificates required, authentication enabled, 1 s token TTL)
against the real adapter and real `i2v-coordinator` / `i2v-node` processes.

The certificates come from a throwaway CA made per module (tests/pki.py); the users and roles
are created through etcd's Auth API (tests/etcd_cluster.py).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from i2v_client import CoordinatorClient, build_request
from i2v_common import etcd_wire
from i2v_common.etcd_kv import EtcdKV
from i2v_common.etcd_security import EtcdSecurity
from i2v_contract.kv import KVDenied, KVUnavailable, LeaseLost, Put, WatchEvent
from tests.chaos.coordinator_procs import CoordinatorProcess
from tests.etcd_cluster import EtcdAuth, EtcdCluster, EtcdTLS, EtcdUser, etcd_binary
from tests.integration.node_process import NodeProcess
from tests.media import png
from tests.pki import Issued, TestCA

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PREFIX = "/i2v-sec/"  # the test user's read-write prefix
PASSWORD = "s3cret-Pw-7f1c"  # never appears in an error or a log
SERVER_PASSWORD = "srv-Pw-93ab"
WAIT_S = 5.0


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Issued
    client: Issued
    named: Issued  # its common name is an etcd user
    stranger: Issued  # a client certificate from another CA
    stranger_ca: Path


@dataclass(frozen=True)
class Secured:
    etcd: EtcdCluster
    pki: Pki
    password_file: Path

    def security(self, **changes: object) -> EtcdSecurity:
        full = EtcdSecurity(
            ca=self.pki.ca, cert=self.pki.client.cert, key=self.pki.client.key, user="i2v", password=PASSWORD
        )
        return replace(full, **changes)  # type: ignore[arg-type]

    def flags(self, user: str) -> list[str]:
        return [
            "--etcd-ca", str(self.pki.ca), "--etcd-cert", str(self.pki.client.cert),
            "--etcd-key", str(self.pki.client.key), "--etcd-user", user,
            "--etcd-password-file", str(self.password_file),
        ]  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    ca, other = TestCA(base / "ca"), TestCA(base / "other", name="stranger-ca")
    return Pki(
        ca=ca.cert,
        # etcd's HTTP gateway dials its own gRPC port with the server certificate: client use too
        server=ca.issue("etcd", file_stem="server"),
        client=ca.issue("i2v-client", file_stem="client", server=False),
        named=ca.issue("i2v-by-cert", file_stem="named", server=False),
        stranger=other.issue("i2v-client", file_stem="client", server=False),
        stranger_ca=other.cert,
    )


def _started(cluster: EtcdCluster) -> Iterator[EtcdCluster]:
    try:
        yield cluster.start()
    finally:
        cluster.stop_all()


@pytest.fixture(scope="module")
def secured(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    if etcd_binary() is None:
        pytest.skip("etcd binary not found (install etcd or set ETCD_BIN)")
    base = tmp_path_factory.mktemp("secured-etcd")
    users = (
        EtcdUser("i2v", PASSWORD, (PREFIX,)),
        EtcdUser("i2v-coordinator", SERVER_PASSWORD, (PREFIX,)),
        EtcdUser("i2v-node", SERVER_PASSWORD, (PREFIX,)),
        EtcdUser("i2v-by-cert", "never-used-Pw", (PREFIX,)),
    )
    tls = EtcdTLS(pki.ca, pki.server.cert, pki.server.key, client=(pki.client.cert, pki.client.key))
    cluster = EtcdCluster(1, base, tls=tls, auth=EtcdAuth(users=users, token_ttl_s=1))
    password_file = base / "server-password"
    password_file.write_text(SERVER_PASSWORD + "\n")
    for started in _started(cluster):
        yield Secured(started, pki, password_file)


@pytest.fixture
async def kv(secured: Secured) -> AsyncIterator[EtcdKV]:
    client = EtcdKV(secured.etcd.endpoints, security=secured.security())
    try:
        yield client
    finally:
        await client.close()


def key(name: str) -> str:
    return f"{PREFIX}{uuid.uuid4().hex[:8]}/{name}"


async def next_event(events: AsyncIterator[WatchEvent]) -> WatchEvent:
    async with asyncio.timeout(WAIT_S):
        return await anext(events)


async def test_kv_watch_and_lease_over_tls_with_a_client_certificate(kv: EtcdKV) -> None:
    k = key("a")
    rev = await kv.put(k, b"1")
    got = await kv.get(k)
    assert got is not None and got.value == b"1" and got.mod_revision == rev
    events = kv.watch_prefix(k.rsplit("/", 1)[0] + "/", rev + 1)
    await kv.put(k, b"2")
    assert (await next_event(events)).kv.value == b"2"
    lease = await kv.grant_lease(5)
    await kv.txn([], [Put(k + "-leased", b"x", lease=lease)])
    assert await kv.keepalive_once(lease) == 5
    await kv.revoke_lease(lease)
    assert await kv.get(k + "-leased") is None
    with pytest.raises(LeaseLost):
        await kv.keepalive_once(lease)
    await events.aclose()


async def test_an_expired_token_is_renewed_once_for_concurrent_calls_watches_and_keepalives(
    kv: EtcdKV, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="i2v_common.etcd_auth")
    k = key("b")
    rev = await kv.put(k, b"1")
    lease = await kv.grant_lease(10)
    await asyncio.sleep(2.5)  # the 1 s TTL has passed, unused: etcd has forgotten the token
    before = caplog.text.count("authenticated to etcd")
    results = await asyncio.gather(*(kv.get(k) for _ in range(20)))
    assert all(r is not None and r.value == b"1" for r in results)
    assert caplog.text.count("authenticated to etcd") == before + 1  # one Authenticate for all 20
    await asyncio.sleep(2.5)
    events = kv.watch_prefix(k, rev + 1)  # created with the expired token, then renewed
    await kv.put(k, b"2")
    assert (await next_event(events)).kv.value == b"2"
    await events.aclose()
    await asyncio.sleep(2.5)
    assert await kv.keepalive_once(lease) > 0
    await kv.revoke_lease(lease)  # etcd checks the token here
    assert PASSWORD not in caplog.text


async def test_failover_across_secured_members_keeps_the_token_and_the_watch(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="i2v_common.etcd_auth")
    tls = EtcdTLS(pki.ca, pki.server.cert, pki.server.key, client=(pki.client.cert, pki.client.key))
    auth = EtcdAuth(users=(EtcdUser("i2v", PASSWORD, (PREFIX,)),))
    for cluster in _started(EtcdCluster(3, tmp_path, tls=tls, auth=auth)):
        client = EtcdKV(cluster.endpoints, 1.5, security=Secured(cluster, pki, tmp_path).security())
        try:
            k = key("f")
            rev = await client.put(k, b"1")
            events = client.watch_prefix(k, rev + 1)
            await client.put(k, b"2")
            assert (await next_event(events)).kv.value == b"2"
            cluster.kill(cluster.endpoints.index(client.endpoint))
            start = time.monotonic()
            got = await client.get(k)
            assert got is not None and got.value == b"2" and time.monotonic() - start < 1.5
            await client.put(k, b"3")
            assert (await next_event(events)).kv.value == b"3"  # the watch resumed elsewhere
            assert caplog.text.count("authenticated to etcd") == 1  # the token is valid on every member
            await events.aclose()
        finally:
            await client.close()


async def test_the_right_password_works_a_wrong_one_is_refused_without_echoing_it(secured: Secured) -> None:
    wrong = "not-the-Pw-42"
    client = EtcdKV(secured.etcd.endpoints, security=secured.security(password=wrong))
    try:
        with pytest.raises(KVDenied, match="refused user 'i2v': wrong user name or password") as refused:
            await client.get(key("c"))
    finally:
        await client.close()
    assert wrong not in str(refused.value) and PASSWORD not in str(refused.value)
    security = secured.security()
    assert PASSWORD not in repr(security) and PASSWORD not in security.describe()


async def test_keys_outside_the_users_prefix_are_denied_naming_the_user_and_the_fix(kv: EtcdKV) -> None:
    with pytest.raises(KVDenied, match="denied user 'i2v' access: grant its role read-write"):
        await kv.put("/elsewhere/x", b"1")
    with pytest.raises(KVDenied, match="denied user 'i2v'"):
        await anext(kv.watch_prefix("/elsewhere/", 0))


async def test_without_a_user_the_certificates_common_name_is_the_etcd_user(secured: Secured) -> None:
    named = secured.pki.named
    by_cert = EtcdKV(
        secured.etcd.endpoints,
        security=secured.security(cert=named.cert, key=named.key, user="", password=""),
    )
    unknown = EtcdKV(secured.etcd.endpoints, security=secured.security(user="", password=""))
    try:
        k = key("d")
        await by_cert.put(k, b"1")
        assert (await by_cert.get(k)) is not None
        with pytest.raises(KVDenied, match="the client certificate's user"):
            await unknown.get(k)
    finally:
        await by_cert.close()
        await unknown.close()


async def test_renewed_certificate_files_are_used_without_a_restart(
    secured: Secured, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(etcd_wire, "RELOAD_CHECK_S", 0.1)
    caplog.set_level(logging.INFO, logger="i2v_common.etcd_wire")
    cert, cert_key = tmp_path / "cert.pem", tmp_path / "key.pem"

    def install(pair: Issued) -> None:
        shutil.copyfile(pair.cert, cert)
        shutil.copyfile(pair.key, cert_key)

    install(secured.pki.named)  # its common name is an etcd user: no password involved
    client = EtcdKV(
        secured.etcd.endpoints, 0.5, security=secured.security(cert=cert, key=cert_key, user="", password="")
    )
    try:
        k = key("r")
        await client.put(k, b"1")
        install(secured.pki.stranger)  # signed by a CA etcd does not trust
        await asyncio.sleep(0.2)
        with pytest.raises(KVUnavailable, match="a certificate its CA signed"):
            await client.get(k)
        install(secured.pki.named)
        await asyncio.sleep(0.2)
        assert (await client.get(k)) is not None
    finally:
        await client.close()
    assert caplog.text.count("etcd TLS files changed") == 2


@pytest.mark.parametrize(
    ("changes", "hint"),
    [
        pytest.param(
            {"ca": None, "cert": None, "key": None}, "if etcd serves TLS (https client URLs), give --etcd-ca",
            id="plaintext-client",
        ),
        pytest.param({"cert": None, "key": None}, "--etcd-cert/--etcd-key hold", id="no-client-certificate"),
        pytest.param({"ca": "stranger_ca"}, "that --etcd-ca signed its certificate", id="ca-does-not-match"),
        pytest.param(
            {"cert": "stranger", "key": "stranger"}, "a certificate its CA signed", id="cert-of-other-ca"
        ),
    ],
)  # fmt: skip
async def test_a_transport_mismatch_says_which_flag_to_fix(
    secured: Secured, changes: dict[str, object], hint: str
) -> None:
    pki = secured.pki
    named = {"stranger_ca": pki.stranger_ca}
    resolved = {
        field: (getattr(pki.stranger, field) if value == "stranger" else named.get(str(value), value))
        for field, value in changes.items()
    }
    client = EtcdKV(secured.etcd.endpoints, 0.5, security=secured.security(**resolved))
    try:
        with pytest.raises(KVUnavailable, match="no etcd endpoint answered") as failed:
            await client.get(key("e"))
    finally:
        await client.close()
    assert not isinstance(failed.value, KVDenied)
    assert hint in str(failed.value)


async def test_a_tls_client_against_plaintext_etcd_hears_about_the_handshake(
    etcd: EtcdCluster, secured: Secured
) -> None:
    client = EtcdKV(etcd.endpoints, 0.5, security=secured.security(user="", password=""))
    try:
        with pytest.raises(KVUnavailable, match="check that etcd serves TLS on this port"):
            await client.get("/x")
    finally:
        await client.close()


def test_servers_with_a_wrong_password_exit_2_naming_the_cause(secured: Secured, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("wrong-Pw-55\n")
    endpoints = secured.etcd.endpoints
    coordinator = CoordinatorProcess(
        endpoints, tmp_path, "bad-c0", *secured.flags("i2v-coordinator")[:-1], str(wrong), prefix=PREFIX
    )
    node = NodeProcess(
        tmp_path / "cache", tmp_path / "node.log",
        "--etcd", ",".join(endpoints), "--artifacts", str(tmp_path / "artifacts"), "--prefix", PREFIX,
        *secured.flags("i2v-node")[:-1], str(wrong),
    )  # fmt: skip
    try:
        for server, user in ((coordinator, "i2v-coordinator"), (node, "i2v-node")):
            assert server.proc.wait(60) == 2, server.log()
            assert f"refused user '{user}': wrong user name or password" in server.log()
            assert "wrong-Pw-55" not in server.log()
    finally:
        node.stop()
        coordinator.stop()


def test_a_coordinator_and_a_node_on_secured_etcd_make_a_video(
    secured: Secured, tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = tmp_path_factory.mktemp("secured-cluster")
    prefix = f"{PREFIX}e2e-{uuid.uuid4().hex[:6]}/"
    cache = tmp_path_factory.getbasetemp() / "i2v-cache"  # shared with the other node tests
    cache.mkdir(exist_ok=True)
    coordinator = CoordinatorProcess(
        secured.etcd.endpoints, workdir, "sec-c0", *secured.flags("i2v-coordinator"), prefix=prefix
    )
    node = NodeProcess(
        cache, workdir / "node.log",
        "--etcd", ",".join(secured.etcd.endpoints), "--artifacts", str(workdir / "artifacts"),
        "--prefix", prefix, *secured.flags("i2v-node"),
        node_id="sec-node",
    )  # fmt: skip
    try:
        coordinator.wait_started()
        node.wait_serving()
        with CoordinatorClient(coordinator.address) as client:
            deadline = time.monotonic() + 60
            while not any(n.node_id == "sec-node" for n in client.list_nodes().nodes):
                assert time.monotonic() < deadline, f"node not registered:\n{node.log()}"
                time.sleep(0.2)
            request = build_request(png(), prompt="a gradient", width=64, height=64, frames=4, steps=2, fps=4)
            final = client.generate(request, timeout=60)
        assert final.HasField("result"), f"{final}\n{coordinator.log()}"
        coordinator_log, node_log = coordinator.log_path.read_text(), node.log_path.read_text()
        assert "as user 'i2v-coordinator'" in coordinator_log and "as user 'i2v-node'" in node_log
        assert SERVER_PASSWORD not in coordinator_log + node_log
    finally:
        node.stop()
        coordinator.stop()
