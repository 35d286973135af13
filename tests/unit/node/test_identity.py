"""Who may dispatch under mTLS (identity.py, pure) and the node's TLS flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from i2v_contract.wire import node_pb2
from i2v_node.config import parse_args
from i2v_node.identity import dispatcher_refusal, is_dispatch
from i2v_node.server import dispatchers
from tests.pki import TestCA

COORDINATORS = frozenset({"i2v-coordinator"})


@pytest.mark.parametrize(
    ("request_", "dispatch"),
    [
        pytest.param(node_pb2.NodeGenerateRequest(), False, id="standalone"),
        pytest.param(node_pb2.NodeGenerateRequest(job_id="j1", attempt=1), True, id="job-and-attempt"),
        pytest.param(node_pb2.NodeGenerateRequest(attempt=1), True, id="attempt-only"),
        pytest.param(node_pb2.NodeGenerateRequest(epoch=3), True, id="epoch-only"),
        pytest.param(node_pb2.NodeGenerateRequest(assign_revision=9), True, id="revision-only"),
    ],
)
def test_what_counts_as_a_dispatch(request_: node_pb2.NodeGenerateRequest, dispatch: bool) -> None:
    assert is_dispatch(request_) is dispatch


@pytest.mark.parametrize(
    ("peer", "allowed", "words"),
    [
        pytest.param(("i2v-coordinator",), COORDINATORS, None, id="the-coordinator"),
        pytest.param(("c1", "i2v-coordinator"), COORDINATORS, None, id="a-san-names-it"),
        pytest.param(("c1", "c2"), frozenset({"c2", "c3"}), None, id="one-of-several"),
        pytest.param(("client-7",), COORDINATORS, "certificate names 'client-7'", id="a-client"),
        pytest.param((), COORDINATORS, "certificate names no name", id="no-certificate"),
        pytest.param(("I2V-COORDINATOR",), COORDINATORS, "'I2V-COORDINATOR'", id="names-are-exact"),
    ],
)
def test_who_may_dispatch(peer: tuple[str, ...], allowed: frozenset[str], words: str | None) -> None:
    refusal = dispatcher_refusal(peer, allowed, "dispatch")
    if words is None:
        assert refusal is None
    else:
        assert refusal is not None
        assert words in refusal
        assert "--coordinator-identity" in refusal  # says what to change


@pytest.fixture(scope="module")
def node_pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestCA, Path, Path]:
    ca = TestCA(tmp_path_factory.mktemp("node-pki"))
    issued = ca.issue("node-1")
    return ca, issued.cert, issued.key


def test_mtls_flags_turn_the_identity_check_on(node_pki: tuple[TestCA, Path, Path]) -> None:
    ca, cert, key = node_pki
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    assert dispatchers(parse_args(["--model", "tiny"])) is None
    assert dispatchers(parse_args(["--model", "tiny", *tls])) is None  # TLS without client certificates
    config = parse_args(["--model", "tiny", *tls, "--tls-client-ca", str(ca.cert)])
    assert dispatchers(config) == COORDINATORS
    named = ["--coordinator-identity", "c1", "--coordinator-identity", "c2"]
    config = parse_args(["--model", "tiny", *tls, "--tls-client-ca", str(ca.cert), *named])
    assert dispatchers(config) == {"c1", "c2"}


def test_tls_flags_from_the_environment(
    node_pki: tuple[TestCA, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = node_pki
    monkeypatch.setenv("I2V_TLS_CERT", str(cert))
    monkeypatch.setenv("I2V_TLS_KEY", str(key))
    monkeypatch.setenv("I2V_TLS_CLIENT_CA", str(ca.cert))
    config = parse_args(["--model", "tiny"])
    assert config.tls is not None
    assert (config.tls.cert, config.tls.key, config.tls.client_ca) == (cert, key, ca.cert)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["--tls-cert", "CERT"], "both --tls-cert and --tls-key", id="cert-alone"),
        pytest.param(["--tls-client-ca", "CA"], "--tls-client-ca needs --tls-cert", id="client-ca-alone"),
        pytest.param(["--coordinator-identity", "c1"], "add --tls-client-ca", id="identity-without-mtls"),
        pytest.param(
            ["--tls-cert", "CERT", "--tls-key", "CA"], "not a certificate and its key", id="bad-pair"
        ),
    ],
)
def test_tls_flags_rejected(
    node_pki: tuple[TestCA, Path, Path], extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ca, cert, _ = node_pki
    argv = [{"CERT": str(cert), "CA": str(ca.cert)}.get(a, a) for a in extra]
    with pytest.raises(SystemExit) as exc:
        parse_args(["--model", "tiny", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
