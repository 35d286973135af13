"""Transport security (i2v_common.tls, channels): which flag combinations work, real grpc.aio servers
over TLS and mTLS with a throwaway CA, certificate files re-read on change (a half-written pair
kept out), the caller's certificate names, and channels rebuilt after the files change."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from i2v_common.channels import ChannelFactory
from i2v_common.serving import RpcServer
from i2v_common.tls import (
    ClientTls,
    ServerTls,
    TlsConfigError,
    _ServerFiles,
    channel_credentials,
    client_tls_from,
    client_tls_from_env,
    coordinator_tls,
    named,
    peer_names,
    server_tls_from,
    tls_failure_hint,
)
from i2v_contract.wire import node_pb2
from tests.pki import Issued, TestCA

SERVICE = node_pb2.DESCRIPTOR.services_by_name["Node"].full_name


@dataclass(frozen=True)
class Pki:
    ca: TestCA
    server: Issued
    coordinator: Issued
    other_ca: TestCA
    stranger: Issued  # signed by other_ca


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = TestCA(root / "ca")
    other = TestCA(root / "other", "other CA")
    (ca.directory / "garbage.pem").write_text("not a certificate\n")
    (ca.directory / "empty.pem").write_text("")
    return Pki(ca, ca.issue("node-1"), ca.issue("i2v-coordinator"), other, other.issue("i2v-coordinator"))


# --- which settings work together -------------------------------------------------------------


def _paths(pki: Pki, names: tuple[str, ...]) -> list[Path | None]:
    files = {
        "cert": pki.server.cert,
        "key": pki.server.key,
        "ca": pki.ca.cert,
        "other-key": pki.coordinator.key,
        "missing": pki.ca.directory / "missing.pem",
        "garbage": pki.ca.directory / "garbage.pem",
        "empty": pki.ca.directory / "empty.pem",
    }
    return [files[n] if n else None for n in names]


@pytest.mark.parametrize(
    ("cert", "key", "client_ca", "error"),
    [
        pytest.param("", "", "", None, id="none-is-plaintext"),
        pytest.param("cert", "key", "", None, id="tls"),
        pytest.param("cert", "key", "ca", None, id="mtls"),
        pytest.param("cert", "", "", "both --tls-cert and --tls-key", id="cert-without-key"),
        pytest.param("", "key", "", "both --tls-cert and --tls-key", id="key-without-cert"),
        pytest.param("", "", "ca", "--tls-client-ca needs --tls-cert", id="client-ca-without-tls"),
        pytest.param("cert", "other-key", "", "not a certificate and its key", id="mismatched-pair"),
        pytest.param("missing", "key", "", "missing.pem", id="missing-file"),
        pytest.param("cert", "key", "missing", "cannot read client CA", id="missing-client-ca"),
        pytest.param("cert", "key", "garbage", "holds no PEM certificate", id="garbage-client-ca"),
        pytest.param("cert", "key", "empty", "the file is empty", id="empty-client-ca"),
    ],
)
def test_server_settings(pki: Pki, cert: str, key: str, client_ca: str, error: str | None) -> None:
    args = _paths(pki, (cert, key, client_ca))
    if error is None:
        tls = server_tls_from(*args)
        assert (tls is None) == (not cert)
    else:
        with pytest.raises(TlsConfigError, match=error):
            server_tls_from(*args)


@pytest.mark.parametrize(
    ("cert", "key", "client_ca", "ca", "server", "client", "error"),
    [
        pytest.param("", "", "", "", False, False, None, id="plaintext"),
        pytest.param("", "", "", "ca", False, True, None, id="tls-to-nodes-only"),
        pytest.param("cert", "key", "", "ca", True, True, None, id="tls-both-ways"),
        pytest.param("cert", "key", "", "", False, False, "--tls-cert needs --tls-ca", id="tls-without-ca"),
    ],
)
def test_coordinator_settings(
    pki: Pki, cert: str, key: str, client_ca: str, ca: str, server: bool, client: bool, error: str | None
) -> None:
    args = _paths(pki, (cert, key, client_ca, ca))
    if error is not None:
        with pytest.raises(TlsConfigError, match=error):
            coordinator_tls(*args)
        return
    port, calls = coordinator_tls(*args)
    assert (port is not None, calls is not None) == (server, client)
    if port is not None and calls is not None:
        # Its own certificate is its client certificate towards mTLS nodes.
        assert (calls.cert, calls.key) == (port.cert, port.key)


@pytest.mark.parametrize(
    ("given", "env", "expected"),
    [
        pytest.param({}, {}, None, id="nothing-is-plaintext"),
        pytest.param({}, {"I2V_TLS_CA": "ca"}, ("ca", None, None), id="ca-from-env"),
        pytest.param({"ca": "ca"}, {"I2V_TLS_CA": "missing"}, ("ca", None, None), id="flag-over-env"),
        pytest.param(
            {"ca": "ca"},
            {"I2V_TLS_CERT": "cert", "I2V_TLS_KEY": "key"},
            ("ca", "cert", "key"),
            id="client-cert-from-env",
        ),
    ],
)
def test_client_settings_from_flags_then_environment(
    pki: Pki, given: dict[str, str], env: dict[str, str], expected: tuple[str | None, ...] | None
) -> None:
    def path(name: str | None) -> Path | None:
        return None if name is None else _paths(pki, (name,))[0]

    env_paths = {k: str(path(v)) for k, v in env.items()}
    tls = client_tls_from_env(path(given.get("ca")), None, None, env_paths)
    assert tls == (None if expected is None else ClientTls(*(path(n) for n in expected)))


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        pytest.param(None, {}, None, id="none-checks-the-address-dialed"),
        pytest.param("i2v-coordinator", {}, "i2v-coordinator", id="from-the-flag"),
        pytest.param(None, {"I2V_TLS_SERVER_NAME": "from-env"}, "from-env", id="from-the-environment"),
        pytest.param("flag", {"I2V_TLS_SERVER_NAME": "from-env"}, "flag", id="flag-over-environment"),
    ],
)
def test_the_name_servers_certificates_are_checked_against(
    pki: Pki, flag: str | None, env: dict[str, str], expected: str | None
) -> None:
    tls = client_tls_from_env(pki.ca.cert, None, None, env, flag)
    assert tls is not None and tls.server_name == expected


def test_a_server_name_without_tls_says_what_to_add() -> None:
    with pytest.raises(TlsConfigError, match=r"--tls-server-name .* add --tls-ca"):
        client_tls_from_env(None, None, None, {}, "i2v-coordinator")
    with pytest.raises(TlsConfigError, match=r"--tls-node-name .* add --tls-ca"):
        named(None, "i2v-node", "--tls-node-name")
    assert named(None, None, "--tls-node-name") is None


def test_channels_check_the_name_given_instead_of_the_address(pki: Pki) -> None:
    named_tls = ChannelFactory(ClientTls(pki.ca.cert, server_name="i2v-node"))
    assert ("grpc.ssl_target_name_override", "i2v-node") in named_tls._options([("a", 1)])
    assert ChannelFactory(ClientTls(pki.ca.cert))._options([("a", 1)]) == [("a", 1)]


def test_a_client_ca_must_hold_certificates(pki: Pki) -> None:
    with pytest.raises(TlsConfigError, match="holds no PEM certificate"):
        client_tls_from(pki.ca.directory / "garbage.pem", None, None)


def test_a_client_certificate_needs_its_key(pki: Pki) -> None:
    with pytest.raises(TlsConfigError, match="both --tls-cert and --tls-key"):
        client_tls_from(pki.ca.cert, pki.coordinator.cert, None)


# --- the files, re-read on change ---------------------------------------------------------------


def _rotating(tmp_path: Path) -> tuple[TestCA, Issued, _ServerFiles]:
    ca = TestCA(tmp_path)
    issued = ca.issue("node-1")
    return ca, issued, _ServerFiles(ServerTls(issued.cert, issued.key))


def test_unchanged_files_keep_the_configuration(tmp_path: Path) -> None:
    _, _, files = _rotating(tmp_path)
    assert files() is None
    assert files() is None


def test_replaced_files_give_a_new_configuration(tmp_path: Path) -> None:
    ca, _, files = _rotating(tmp_path)
    ca.issue("node-1")  # same file names, a new certificate and key
    assert files() is not None
    assert files() is None  # and only once


def test_rewritten_with_the_same_bytes_keeps_the_configuration(tmp_path: Path) -> None:
    _, issued, files = _rotating(tmp_path)
    data = issued.cert.read_bytes()
    issued.cert.unlink()
    issued.cert.write_bytes(data)
    assert files() is None


def test_a_half_written_rotation_keeps_the_old_pair_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca, issued, files = _rotating(tmp_path)
    other = ca.issue("elsewhere")
    issued.cert.write_bytes(other.cert.read_bytes())  # the certificate replaced, the key not yet
    with caplog.at_level(logging.WARNING, "i2v_common.tls"):
        assert files() is None
    assert "cannot be used (keeping the old ones)" in caplog.text
    issued.key.write_bytes(other.key.read_bytes())  # now the key too
    assert files() is not None


# --- real servers -----------------------------------------------------------------------------------


@dataclass
class Served:
    address: str
    port: int
    server: RpcServer


@pytest.fixture
async def tls_server(pki: Pki, request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    """An RpcServer over TLS (mTLS when the test is parametrized with indirect True)."""
    mtls = getattr(request, "param", False)
    server = RpcServer(SERVICE, ())
    tls = ServerTls(pki.server.cert, pki.server.key, pki.ca.cert if mtls else None)
    address = server.bind("127.0.0.1:0", tls)
    await server.start()
    try:
        yield Served(address, int(address.rsplit(":", 1)[1]), server)
    finally:
        await server.stop(0)


async def _check(address: str, tls: ClientTls | None) -> grpc.StatusCode:
    factory = ChannelFactory(tls)
    async with factory.aio(address) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.aio.AioRpcError as err:
            return err.code()
    return grpc.StatusCode.OK


async def test_tls_port_answers_tls_and_refuses_plaintext(pki: Pki, tls_server: Served) -> None:
    assert await _check(tls_server.address, ClientTls(pki.ca.cert)) is grpc.StatusCode.OK
    assert await _check(tls_server.address, None) is grpc.StatusCode.UNAVAILABLE
    assert await _check(tls_server.address, ClientTls(pki.other_ca.cert)) is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("tls_server", [True], indirect=True)
async def test_mtls_port_needs_a_certificate_its_client_ca_signed(pki: Pki, tls_server: Served) -> None:
    ca = pki.ca.cert
    assert await _check(tls_server.address, ClientTls(ca)) is grpc.StatusCode.UNAVAILABLE
    stranger = ClientTls(ca, pki.stranger.cert, pki.stranger.key)
    assert await _check(tls_server.address, stranger) is grpc.StatusCode.UNAVAILABLE
    coordinator = ClientTls(ca, pki.coordinator.cert, pki.coordinator.key)
    assert await _check(tls_server.address, coordinator) is grpc.StatusCode.OK


def _served_serial(port: int, ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=3) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped,
    ):
        der = wrapped.getpeercert(binary_form=True)
    assert der is not None
    return TestCA.serial_of(ssl.DER_cert_to_PEM_cert(der).encode())


async def test_new_connections_get_a_rotated_certificate_without_a_restart(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    issued = ca.issue("node-1")
    server = RpcServer(SERVICE, ())
    address = server.bind("127.0.0.1:0", ServerTls(issued.cert, issued.key))
    port = int(address.rsplit(":", 1)[1])
    await server.start()
    try:
        first = _served_serial(port, ca.cert)
        assert first == TestCA.serial_of(issued.cert.read_bytes())
        ca.issue("node-1")
        second = _served_serial(port, ca.cert)
        assert second != first
        assert second == TestCA.serial_of(issued.cert.read_bytes())
        assert await _check(address, ClientTls(ca.cert)) is grpc.StatusCode.OK
    finally:
        await server.stop(0)


# --- the caller's names ---------------------------------------------------------------------------


class _Context:
    def __init__(self, auth: dict[str, list[bytes]]) -> None:
        self._auth = auth

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth


@pytest.mark.parametrize(
    ("auth", "names"),
    [
        pytest.param({}, (), id="no-certificate"),
        pytest.param({"transport_security_type": [b"ssl"]}, (), id="tls-without-client-certificate"),
        pytest.param(
            {"x509_common_name": [b"i2v-coordinator"], "x509_subject_alternative_name": [b"c1.internal"]},
            ("i2v-coordinator", "c1.internal"),
            id="cn-then-sans",
        ),
        pytest.param(
            {"x509_common_name": [b"a"], "x509_subject_alternative_name": [b"a", b"b"]},
            ("a", "b"),
            id="each-name-once",
        ),
    ],
)
def test_peer_names(auth: dict[str, list[bytes]], names: tuple[str, ...]) -> None:
    assert peer_names(_Context(auth)) == names


def test_channel_credentials_read_the_files_now(pki: Pki) -> None:
    assert channel_credentials(ClientTls(pki.ca.cert)) is not None
    with pytest.raises(TlsConfigError, match="cannot read CA"):
        channel_credentials(ClientTls(pki.ca.directory / "gone.pem"))


@pytest.mark.parametrize(
    ("details", "secure", "words"),
    [
        pytest.param(
            "...: Socket closed",
            False,
            "may speak TLS (it hung up on plaintext): pass --tls-ca",
            id="plain-hung-up",
        ),
        pytest.param("...: WRONG_VERSION_NUMBER: ...", True, "speaks plaintext, not TLS", id="tls-to-plain"),
        pytest.param("...: CERTIFICATE_VERIFY_FAILED: ...", True, "did not sign", id="wrong-ca"),
        pytest.param("...: Socket closed", True, "pass --tls-cert and --tls-key", id="tls-hung-up"),
        pytest.param(
            "...: Hostname Verification Check failed.",
            True,
            "--tls-server-name",
            id="name-not-in-certificate",
        ),
        pytest.param(
            "...: Peer name x is not in peer certificate", True, "--tls-node-name", id="old-wording"
        ),
        pytest.param("...: Connection refused", True, None, id="not-about-tls"),
        pytest.param("...: Connection refused", False, None, id="plain-not-about-tls"),
    ],
)
def test_tls_failure_hints(details: str, secure: bool, words: str | None) -> None:
    hint = tls_failure_hint(details, secure)
    assert hint == words if words is None else (hint is not None and words in hint)
