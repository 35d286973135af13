"""etcd security settings from flags and environment, the TLS-mismatch hints, and how etcd's
refusals are read (the adapter against a secured etcd: tests/integration/test_etcd_security.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc
import pytest

from i2v_common.etcd_auth import Authenticator, StaleToken
from i2v_common.etcd_security import (
    EtcdSecurity,
    EtcdSecurityError,
    add_etcd_security_args,
    etcd_security_from_args,
    transport_hint,
)
from i2v_contract.kv import KVDenied, KVUnavailable

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PASSWORD = "pw with spaces "


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_bytes(PEM)
    (tmp_path / "password").write_text(PASSWORD + "\n")
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "junk").write_text("not a certificate")
    return tmp_path


def parse(argv: list[str], files: Path) -> EtcdSecurity:
    parser = argparse.ArgumentParser()
    add_etcd_security_args(parser)
    return etcd_security_from_args(parser.parse_args([a.replace("DIR", str(files)) for a in argv]))


@pytest.mark.parametrize(
    ("argv", "env", "error"),
    [
        pytest.param(
            ["--etcd-ca", "DIR/missing"], {}, "--etcd-ca DIR/missing: cannot read it", id="missing-ca"
        ),
        pytest.param(["--etcd-ca", "DIR/junk"], {}, "not a PEM file", id="ca-not-pem"),
        pytest.param(
            [], {"I2V_ETCD_CERT": "DIR/missing"}, "I2V_ETCD_CERT DIR/missing: cannot read", id="env-cert"
        ),
        pytest.param(
            ["--etcd-cert", "DIR/cert.pem"], {}, "--etcd-cert and --etcd-key go together", id="no-key"
        ),
        pytest.param(["--etcd-user", "i2v"], {}, "--etcd-user needs --etcd-password-file", id="no-password"),
        pytest.param([], {"I2V_ETCD_USER": "i2v"}, "I2V_ETCD_USER needs --etcd-password-file", id="env-user"),
        pytest.param(["--etcd-password-file", "DIR/password"], {}, "needs --etcd-user", id="no-user"),
        pytest.param(
            ["--etcd-user", "i2v", "--etcd-password-file", "DIR/empty"],
            {},
            "the file is empty",
            id="empty-password",
        ),
        pytest.param(
            ["--etcd-user", " ", "--etcd-password-file", "DIR/password"],
            {},
            "--etcd-user is empty",
            id="blank-user",
        ),
    ],
)
def test_unusable_settings_name_the_flag(
    files: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], error: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value.replace("DIR", str(files)))
    with pytest.raises(EtcdSecurityError) as failed:
        parse(argv, files)
    assert error.replace("DIR", str(files)) in str(failed.value)


def test_flags_win_over_the_environment_and_the_password_stays_hidden(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("I2V_ETCD_CA", str(files / "missing"))
    monkeypatch.setenv("I2V_ETCD_USER", "from-env")
    monkeypatch.setenv("I2V_ETCD_PASSWORD_FILE", str(files / "password"))
    security = parse(
        ["--etcd-ca", "DIR/ca.pem", "--etcd-cert", "DIR/cert.pem", "--etcd-key", "DIR/key.pem"], files
    )
    assert security == EtcdSecurity(
        ca=files / "ca.pem",
        cert=files / "cert.pem",
        key=files / "key.pem",
        user="from-env",
        password=PASSWORD,
    )
    assert security.tls
    assert security.describe() == "TLS with a client certificate, as user 'from-env'"
    assert PASSWORD not in repr(security) and PASSWORD not in repr(Authenticator("u", PASSWORD))


def test_nothing_given_is_plaintext_without_authentication(files: Path) -> None:
    security = parse([], files)
    assert security == EtcdSecurity() and not security.tls
    assert security.describe() == "plaintext, no authentication"


@pytest.mark.parametrize(
    ("failure", "tls", "hint"),
    [
        pytest.param(
            "UNAVAILABLE ipv4:127.0.0.1:1: Socket closed", False, "give --etcd-ca", id="plaintext-to-tls"
        ),
        pytest.param(
            "UNAVAILABLE Handshake read failed (Socket closed)", True, "the TLS handshake", id="tls-to-plain"
        ),
        pytest.param(
            "UNAVAILABLE Unwrap failed (TSI_DATA_CORRUPTED)", True, "--etcd-cert/--etcd-key", id="no-cert"
        ),
        pytest.param("UNAVAILABLE Connection refused", False, "", id="etcd-down"),
        pytest.param("UNAVAILABLE Connection refused", True, "", id="etcd-down-tls"),
        pytest.param("DEADLINE_EXCEEDED Deadline Exceeded", False, "", id="etcd-paused"),
    ],
)
def test_transport_hints_only_for_a_tls_mismatch(failure: str, tls: bool, hint: str) -> None:
    got = transport_hint([failure], tls=tls)
    assert (hint in got) if hint else got == ""


U, INV, P = (
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
)


@pytest.mark.parametrize(
    ("user", "code", "details", "kind", "text"),
    [
        pytest.param("i2v", U, "etcdserver: invalid auth token", StaleToken, "", id="expired-token"),
        pytest.param(
            "i2v", INV, "etcdserver: revision of auth store is old", StaleToken, "", id="roles-changed"
        ),
        pytest.param("i2v", INV, "etcdserver: user name is empty", StaleToken, "", id="auth-enabled-later"),
        pytest.param(
            "", INV, "etcdserver: user name is empty", KVDenied, "give --etcd-user", id="no-credentials"
        ),
        pytest.param("i2v", P, "etcdserver: permission denied", KVDenied, "user 'i2v' access", id="no-role"),
        pytest.param(
            "", P, "etcdserver: permission denied", KVDenied, "client certificate's user", id="cert-user"
        ),
        pytest.param("i2v", INV, "etcdserver: key is not provided", None, "", id="bad-request"),
        pytest.param("i2v", grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader", None, "", id="no-leader"),
    ],
)
def test_refusals_are_read_from_etcds_answer(
    user: str, code: grpc.StatusCode, details: str, kind: type[Exception] | None, text: str
) -> None:
    refusal = Authenticator(user, "pw" if user else "").refusal("get /k", code, details)
    if kind is None:
        assert refusal is None
        return
    assert isinstance(refusal, kind) and text in str(refusal)


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        pytest.param(
            "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token",
            StaleToken,
            id="expired-token",
        ),
        pytest.param(
            "rpc error: code = PermissionDenied desc = etcdserver: permission denied", KVDenied, id="no-role"
        ),
        pytest.param("mvcc: required revision is a future revision", KVUnavailable, id="other"),
    ],
)
def test_a_watch_cancelled_at_creation_says_why(reason: str, kind: type[Exception]) -> None:
    refusal = Authenticator("i2v", "pw").watch_refusal("watch /p/", "127.0.0.1:2379", reason)
    assert type(refusal) is kind
