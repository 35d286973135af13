"""`i2v-gateway`'s flags for secured clusters: the coordinators' TLS settings resolved as the CLI
resolves them (a flag, else $I2V_TLS_*), HTTPS from --https-cert/--https-key, and one-line
refusals (exit 2) for settings that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from i2v_client import ClientTls
from i2v_common.tls import ServerTls
from i2v_gateway.main import parse_args, settings_from
from tests.pki import TestCA

TARGETS = ["--coordinators", "127.0.0.1:50100"]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("pki"))


def test_without_tls_flags_the_gateway_speaks_plaintext_and_serves_http() -> None:
    args = parse_args(TARGETS, {})
    assert args.tls is None and args.https is None and settings_from(args).tls is None


def test_the_coordinators_ca_and_client_certificate_come_from_flags_or_the_environment(ca: TestCA) -> None:
    client = ca.issue("i2v-gateway", client=True, server=False)
    flags = ["--tls-ca", str(ca.cert), "--tls-cert", str(client.cert), "--tls-key", str(client.key)]
    env = {"I2V_TLS_CA": str(ca.cert), "I2V_TLS_CERT": str(client.cert), "I2V_TLS_KEY": str(client.key)}
    want = ClientTls(ca.cert, client.cert, client.key)
    assert parse_args([*TARGETS, *flags], {}).tls == want
    assert parse_args(TARGETS, env).tls == want
    assert settings_from(parse_args(TARGETS, env)).tls == want
    # a flag wins over the environment, file by file
    other = ca.issue("other-gateway", client=True, server=False)
    mixed = parse_args([*TARGETS, "--tls-cert", str(other.cert), "--tls-key", str(other.key)], env)
    assert mixed.tls == ClientTls(ca.cert, other.cert, other.key)


def test_the_coordinators_certificates_may_be_checked_against_a_role_name(ca: TestCA) -> None:
    flags = ["--tls-ca", str(ca.cert), "--tls-server-name", "i2v-coordinator"]
    assert parse_args([*TARGETS, *flags], {}).tls == ClientTls(ca.cert, server_name="i2v-coordinator")
    from_env = parse_args([*TARGETS, "--tls-ca", str(ca.cert)], {"I2V_TLS_SERVER_NAME": "named"})
    assert from_env.tls == ClientTls(ca.cert, server_name="named")


def test_https_is_served_with_a_certificate_and_its_key(ca: TestCA) -> None:
    https = ca.issue("gateway", client=False, file_stem="https")
    args = parse_args([*TARGETS, "--https-cert", str(https.cert), "--https-key", str(https.key)], {})
    assert args.https == ServerTls(https.cert, https.key)
    env = {"I2V_HTTPS_CERT": str(https.cert), "I2V_HTTPS_KEY": str(https.key)}
    assert parse_args(TARGETS, env).https == ServerTls(https.cert, https.key)


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        pytest.param(["--tls-cert", "{cert}"], "needs both --tls-cert and --tls-key", id="client-cert-alone"),
        pytest.param(["--tls-ca", "{missing}"], "cannot read", id="unreadable-ca"),
        pytest.param(["--tls-ca", "{key}"], "holds no PEM certificate", id="a-key-for-a-ca"),
        pytest.param(
            ["--https-cert", "{cert}"], "HTTPS needs both --https-cert and --https-key", id="https-alone"
        ),
        pytest.param(
            ["--https-cert", "{cert}", "--https-key", "{other_key}"],
            "not a certificate and its key",
            id="https-mismatch",
        ),
    ],
)
def test_settings_that_cannot_work_are_refused_at_start_naming_what_to_fix(
    ca: TestCA, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], said: str
) -> None:
    one, two = ca.issue("one", file_stem="one"), ca.issue("two", file_stem="two")
    files = {"cert": one.cert, "key": one.key, "other_key": two.key, "missing": tmp_path / "absent.pem"}
    with pytest.raises(SystemExit) as exit_:
        parse_args([*TARGETS, *(f.format(**files) for f in flags)], {})
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and last.startswith("i2v-gateway: error: ") and said in last
