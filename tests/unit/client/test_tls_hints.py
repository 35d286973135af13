"""A client and a server that disagree on TLS are told what to pass, against real in-process
servers with a throwaway CA; and where the CLI takes its TLS files from."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from i2v_client import ClientTls, NodeClient, Reach, open_channel, wait_connected
from i2v_client.channels import _failed, speaks_tls
from i2v_client.cli.args import build_parser, resolve_tls
from i2v_client.errors import CallError
from i2v_common.tls import ServerTls, TlsConfigError, server_credentials
from tests.pki import Issued, TestCA


@dataclass(frozen=True)
class Pki:
    ca: TestCA
    server: Issued
    client: Issued
    other: TestCA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("client-pki")
    ca = TestCA(root / "ca")
    return Pki(ca, ca.issue("node-1"), ca.issue("alice"), TestCA(root / "other", "other CA"))


def _serve(tls: ServerTls | None) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    if tls is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", server_credentials(tls))
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def servers(pki: Pki) -> Iterator[dict[str, str]]:
    started = {
        "plain": _serve(None),
        "tls": _serve(ServerTls(pki.server.cert, pki.server.key)),
        "mtls": _serve(ServerTls(pki.server.cert, pki.server.key, pki.ca.cert)),
    }
    yield {name: address for name, (_, address) in started.items()}
    for server, _ in started.values():
        server.stop(0)


def _client(pki: Pki, kind: str) -> ClientTls | None:
    return {
        "plain": None,
        "tls": ClientTls(pki.ca.cert),
        "wrong-ca": ClientTls(pki.other.cert),
        "cert": ClientTls(pki.ca.cert, pki.client.cert, pki.client.key),
    }[kind]


@pytest.mark.parametrize(
    ("server", "client", "words"),
    [
        pytest.param("tls", "plain", "speaks TLS: pass --tls-ca", id="plaintext-client-tls-server"),
        pytest.param("mtls", "plain", "speaks TLS: pass --tls-ca", id="plaintext-client-mtls-server"),
        pytest.param(
            "plain", "tls", "speaks plaintext, not TLS: drop --tls-ca", id="tls-client-plain-server"
        ),
        pytest.param("tls", "wrong-ca", "the CA in --tls-ca did not sign", id="wrong-ca"),
        pytest.param("mtls", "tls", "pass --tls-cert and --tls-key", id="mtls-without-client-cert"),
        pytest.param("tls", "tls", None, id="tls-matches"),
        pytest.param("mtls", "cert", None, id="mtls-matches"),
    ],
)
def test_a_mismatch_says_what_to_pass(
    pki: Pki, servers: dict[str, str], server: str, client: str, words: str | None
) -> None:
    tls = _client(pki, client)
    channel = open_channel(servers[server], tls=tls)
    try:
        connection = wait_connected(channel, 3.0, target=servers[server], secure=tls is not None)
    finally:
        channel.close()
    if words is None:
        assert connection.reach is Reach.CONNECTED
    else:
        assert connection.reach is Reach.FAILED
        assert words in connection.why


def test_the_node_client_raises_the_hint(pki: Pki, servers: dict[str, str]) -> None:
    with NodeClient(servers["tls"]) as client, pytest.raises(CallError) as err:
        client.status(timeout=3)
    assert err.value.code is grpc.StatusCode.UNAVAILABLE
    assert "speaks TLS: pass --tls-ca" in err.value.message
    with NodeClient(servers["tls"], tls=ClientTls(pki.ca.cert)) as client, pytest.raises(CallError) as err:
        client.status(timeout=3)
    assert err.value.code is grpc.StatusCode.UNIMPLEMENTED  # reached: a health server, not a node


def test_speaks_tls_tells_tls_from_plaintext(servers: dict[str, str]) -> None:
    assert speaks_tls(servers["tls"]) is True
    assert speaks_tls(servers["plain"]) is False


@pytest.mark.parametrize(
    ("details", "secure", "words"),
    [
        pytest.param(
            "ipv4:1.2.3.4:5: Connection refused", True, "refused the connection", id="refused-is-refused"
        ),
        pytest.param("Peer name x is not in peer certificate", True, "does not name this address", id="name"),
        pytest.param("something new", True, "could not connect (something new)", id="unknown"),
    ],
)
def test_failure_words(details: str, secure: bool, words: str) -> None:
    assert words in _failed(details, "", secure)


def test_the_cli_takes_tls_files_from_flags_then_the_environment(pki: Pki) -> None:
    parser = build_parser()
    args = parser.parse_args(["status", "--target", "h:1", "--tls-ca", str(pki.ca.cert)])
    assert resolve_tls(args, {}) == ClientTls(pki.ca.cert)
    args = parser.parse_args(["jobs", "--target", "h:1"])
    env = {
        "I2V_TLS_CA": str(pki.ca.cert),
        "I2V_TLS_CERT": str(pki.client.cert),
        "I2V_TLS_KEY": str(pki.client.key),
    }
    assert resolve_tls(args, env) == ClientTls(pki.ca.cert, pki.client.cert, pki.client.key)
    args = parser.parse_args(["generate", "x.png", "--prompt", "p", "-o", "o.mp4", "--node", "h:1"])
    assert resolve_tls(args, {}) is None
    args = parser.parse_args(["get", "j", "--tls-ca", str(pki.ca.directory / "gone.pem")])
    with pytest.raises(TlsConfigError, match="cannot read CA"):
        resolve_tls(args, {})
