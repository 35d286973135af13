"""i2v-coordinator's TLS flags: its port, its calls to nodes and peers, the messages of a wrong mix."""

from __future__ import annotations

import pytest

from i2v_common.tls import ClientTls, ServerTls
from i2v_coordinator.main import parse_args
from tests.pki import Issued, TestCA

REQUIRED = ["--etcd", "127.0.0.1:2379", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]
REQUIRED += ["--artifacts", "artifacts"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestCA, Issued]:
    ca = TestCA(tmp_path_factory.mktemp("coordinator-pki"))
    return ca, ca.issue("i2v-coordinator")


def test_plaintext_by_default() -> None:
    config = parse_args(REQUIRED)
    assert (config.tls, config.peer_tls) == (None, None)


def test_mtls_both_ways(pki: tuple[TestCA, Issued]) -> None:
    ca, me = pki
    files = ["--tls-cert", str(me.cert), "--tls-key", str(me.key)]
    config = parse_args([*REQUIRED, *files, "--tls-client-ca", str(ca.cert), "--tls-ca", str(ca.cert)])
    assert config.tls == ServerTls(me.cert, me.key, ca.cert)
    assert config.peer_tls == ClientTls(ca.cert, me.cert, me.key)


def test_the_flags_come_from_the_environment(
    pki: tuple[TestCA, Issued], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, me = pki
    for name, path in (("CERT", me.cert), ("KEY", me.key), ("CA", ca.cert)):
        monkeypatch.setenv(f"I2V_TLS_{name}", str(path))
    config = parse_args(REQUIRED)
    assert config.tls == ServerTls(me.cert, me.key)
    assert config.peer_tls == ClientTls(ca.cert, me.cert, me.key)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(
            ["--tls-cert", "CERT", "--tls-key", "KEY"], "--tls-cert needs --tls-ca", id="no-peer-ca"
        ),
        pytest.param(["--tls-key", "KEY"], "both --tls-cert and --tls-key", id="key-alone"),
        pytest.param(["--tls-ca", "missing.pem"], "cannot read CA missing.pem", id="unreadable-ca"),
    ],
)
def test_bad_tls_flags_exit_2(
    pki: tuple[TestCA, Issued], extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, me = pki
    argv = [{"CERT": str(me.cert), "KEY": str(me.key)}.get(a, a) for a in extra]
    with pytest.raises(SystemExit) as exc:
        parse_args([*REQUIRED, *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
