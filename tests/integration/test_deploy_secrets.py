"""deploy/'s secrets wiring: in the GPU overlays every server runs with TLS and a tokens file from
Secrets mounted read-only as directories (never subPath, which would freeze them), the gateway
gets its certificate Secret, no rendered manifest carries a key or a token, the example script's
certificates work with the servers' TLS settings and the exec probe the manifests run, and the
systemd units' certificate and token variables are ones the servers read; with an existing etcd
(overlays/external-etcd, components/etcd-tls) the servers reach it over TLS as a user, from Secrets
mounted the same way. docs/deploy.md, "Secrets", explains the choices."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from i2v_common import tls
from i2v_common.etcd_security import load_etcd_security
from i2v_contract.addresses import parse_endpoints
from tests.integration.test_deploy_manifests import (
    DEPLOY,
    GPU_OVERLAYS,
    SCRIPTS,
    SYSTEMD,
    TOOL_PATH,
    UNITS,
    flag_value,
    gateway_containers,
    help_flags,
    pod_templates,
    rendered,
    resolved_servers,
    tool_missing,
    unit_entries,
    unit_environment,
)

pytestmark = pytest.mark.integration
__all__ = ["help_flags", "rendered"]  # fixtures, used by name

Rendered = dict[str, list[dict[str, Any]]]

# flag -> the Secret its file comes from, per role
SECRET_FLAGS = {
    "coordinator": {
        "--tls-cert": "i2v-coordinator-tls",
        "--tls-key": "i2v-coordinator-tls",
        "--tls-ca": "i2v-coordinator-tls",
        "--tokens-file": "i2v-tokens",
        "--dispatch-token-file": "i2v-dispatch-token",
    },
    "node": {
        "--tls-cert": "i2v-node-tls",
        "--tls-key": "i2v-node-tls",
        "--tls-client-ca": "i2v-node-tls",
        "--tokens-file": "i2v-tokens",
    },
}
# components/etcd-tls, in the overlays that use an existing etcd: the same flags on both roles
ETCD_OVERLAYS = ("external-etcd",)
ETCD_SECRET_FLAGS = {
    "--etcd-ca": "i2v-etcd-client",
    "--etcd-cert": "i2v-etcd-client",
    "--etcd-key": "i2v-etcd-client",
    "--etcd-password-file": "i2v-etcd-password",
}
PROBE_SCRIPT = DEPLOY / "docker" / "grpc_probe.py"
MAKE_SECRETS = DEPLOY / "k8s" / "examples" / "make-secrets.sh"


def secret_mounts(spec: dict[str, Any], c: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """mountPath -> (Secret name, the mount) for every Secret volume the container mounts."""
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    return {
        m["mountPath"]: (secrets[m["name"]], m) for m in c.get("volumeMounts", []) if m["name"] in secrets
    }


def test_production_servers_serve_tls_with_tokens_from_secrets(rendered: Rendered) -> None:
    for overlay, role, spec, c, args in resolved_servers(rendered):
        if overlay not in GPU_OVERLAYS:
            continue
        mounts = secret_mounts(spec, c)
        for flag, secret in SECRET_FLAGS[role].items():
            path = Path(flag_value(args, flag))
            where = (overlay, role, flag)
            # the file lies directly in the directory a Secret volume is mounted at
            assert str(path.parent) in mounts, (where, sorted(mounts))
            assert mounts[str(path.parent)][0] == secret, where
        if role == "node":
            assert flag_value(args, "--coordinator-identity") == "i2v-coordinator", overlay


def test_an_existing_etcd_is_reached_over_tls_as_a_user_from_secrets(rendered: Rendered) -> None:
    seen = set()
    for overlay, role, spec, c, args in resolved_servers(rendered):
        endpoints = flag_value(args, "--etcd")
        if overlay not in ETCD_OVERLAYS:
            # the in-cluster etcd (components/etcd) is plaintext: no etcd TLS flag, http endpoints
            assert not [a for a in args if a.startswith("--etcd-")], (overlay, role)
            parse_endpoints(endpoints, tls=False)
            continue
        mounts = secret_mounts(spec, c)
        for flag, secret in ETCD_SECRET_FLAGS.items():
            path = Path(flag_value(args, flag))
            where = (overlay, role, flag)
            assert str(path.parent) in mounts, (where, sorted(mounts))
            assert mounts[str(path.parent)][0] == secret, where
        assert Path(flag_value(args, "--etcd-ca")).name == "ca.crt"
        assert flag_value(args, "--etcd-user") == "i2v", (overlay, role)
        # the servers refuse http:// endpoints once TLS to etcd is configured
        assert all(e.startswith("https://") for e in endpoints.split(",")), endpoints
        assert len(parse_endpoints(endpoints, tls=True)) == 3
        seen.add((overlay, role))
    assert seen == {(o, r) for o in ETCD_OVERLAYS for r in ("coordinator", "node")}


def test_the_gateway_mounts_its_client_certificate(rendered: Rendered) -> None:
    for overlay in GPU_OVERLAYS:
        ((spec, c),) = list(gateway_containers(rendered[overlay]))
        assert "i2v-gateway-tls" in [s for s, _ in secret_mounts(spec, c).values()], overlay


def test_secrets_are_mounted_read_only_and_never_by_subpath(rendered: Rendered) -> None:
    seen = 0
    for name, docs in rendered.items():
        for workload, spec in pod_templates(docs):
            for c in spec.get("initContainers", []) + spec["containers"]:
                for secret, mount in secret_mounts(spec, c).values():
                    where = (name, workload["metadata"]["name"], c["name"], secret)
                    # a subPath mount is a copy made at start: a rotated Secret would never reach it
                    assert "subPath" not in mount and "subPathExpr" not in mount, where
                    assert mount.get("readOnly") is True, where
                    seen += 1
    assert seen >= 2 * len(GPU_OVERLAYS) * 3, "the GPU overlays mount the certificate and token Secrets"


# What a leaked credential would look like: PEM blocks, tokens-file lines, `i2v token new` tokens
# (43 URL-safe base64 characters), and Secret objects (created apart, never by kustomize here).
LEAKS = (
    re.compile(r"-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----"),
    re.compile(r"sha256:[0-9a-f]{64}"),
    re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])"),
)


def test_no_credential_in_any_rendered_manifest(rendered: Rendered) -> None:
    for name, docs in rendered.items():
        kinds = [d["kind"] for d in docs]
        assert "Secret" not in kinds, (name, "Secrets are created apart (deploy/k8s/examples)")
        text = "\n".join(map(repr, docs))
        for leak in LEAKS:
            assert not leak.search(text), (name, leak.pattern, leak.search(text))
    for text in (p.read_text() for p in (DEPLOY / "k8s").rglob("*.yaml")):
        for leak in LEAKS:
            assert not leak.search(text), leak.pattern


# ---- the example script's Secrets, with the servers' TLS settings and the manifests' probe ----


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = tool_missing("openssl", "kubectl", "i2v")
    if missing:
        pytest.skip(f"make-secrets.sh: {missing}")
    base = tmp_path_factory.mktemp("secrets")
    etcd_ca = base / "etcd-ca"
    etcd_ca.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=etcd CA", "-days", "2",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"],
        cwd=etcd_ca, capture_output=True, check=True, timeout=60, env={"PATH": TOOL_PATH},
    )  # fmt: skip
    out = base / "out"
    env = {
        "PATH": TOOL_PATH,
        "PYTHON": sys.executable,
        "I2V_COORDINATOR_NAMES": "coord.example.internal",
        "I2V_ETCD_CA_DIR": str(etcd_ca),
    }
    result = subprocess.run(
        ["bash", str(MAKE_SECRETS), str(out), "i2v"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_the_made_secrets_are_what_the_manifests_mount(made: Path) -> None:
    docs = list(yaml.safe_load_all((made / "secrets.yaml").read_text()))
    secrets = {d["metadata"]["name"]: d for d in docs}
    wanted = {s for flags in SECRET_FLAGS.values() for s in flags.values()} | {"i2v-gateway-tls"}
    assert set(secrets) == wanted | set(ETCD_SECRET_FLAGS.values())
    for name in ("i2v-coordinator-tls", "i2v-node-tls", "i2v-gateway-tls", "i2v-etcd-client"):
        assert secrets[name]["type"] == "kubernetes.io/tls"
        assert set(secrets[name]["data"]) == {"tls.crt", "tls.key", "ca.crt"}, name
    assert set(secrets["i2v-tokens"]["data"]) == {"tokens"}
    assert set(secrets["i2v-dispatch-token"]["data"]) == {"token"}
    assert set(secrets["i2v-etcd-password"]["data"]) == {"password"}
    # the dispatch token's hash is an admin line of the tokens file
    lines = (made / "tokens").read_text().splitlines()
    assert any(line.endswith(" i2v-dispatch admin") for line in lines), lines
    assert all(p.stat().st_mode & 0o077 == 0 for p in made.iterdir()), (
        "keys and tokens readable by their owner only"
    )


def test_the_servers_take_the_made_certificates(made: Path) -> None:
    server, client = tls.coordinator_tls(
        made / "i2v-coordinator.crt", made / "i2v-coordinator.key", None, made / "ca.crt"
    )
    assert server is not None and client is not None and client.cert == server.cert
    assert tls.server_tls_from(made / "i2v-node.crt", made / "i2v-node.key", made / "ca.crt") is not None


def test_the_made_etcd_client_files_are_what_the_servers_take(made: Path) -> None:
    etcd = load_etcd_security({
        "etcd_ca": ("--etcd-ca", str(made / "etcd-ca.crt")),
        "etcd_cert": ("--etcd-cert", str(made / "etcd-client.crt")),
        "etcd_key": ("--etcd-key", str(made / "etcd-client.key")),
        "etcd_user": ("--etcd-user", "i2v"),
        "etcd_password_file": ("--etcd-password-file", str(made / "etcd-password")),
    })  # fmt: skip
    assert etcd.tls and etcd.user == "i2v" and len(etcd.password) >= 32
    assert etcd.credentials() is not None
    # signed by etcd's CA (not the cluster's), for client use, named after the user
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(made / "etcd-ca.crt"), "-purpose", "sslclient",
         str(made / "etcd-client.crt")],
        capture_output=True, text=True, timeout=60, env={"PATH": TOOL_PATH},
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    subject = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-in", str(made / "etcd-client.crt")],
        capture_output=True, text=True, timeout=60, check=True, env={"PATH": TOOL_PATH},
    ).stdout  # fmt: skip
    assert "CN=i2v" in subject.replace(" ", ""), subject


class HealthServer:
    """A gRPC server with only the health service, on a loopback port, over TLS (mTLS with `client_ca`)."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        self.health = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        creds = tls.server_credentials(tls.ServerTls(cert, key, client_ca))
        self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.server.start()

    def set(self, service: str, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.health.set(service, status)


@pytest.fixture
def node_port(made: Path) -> Iterator[HealthServer]:
    srv = HealthServer(made / "i2v-node.crt", made / "i2v-node.key", made / "ca.crt")  # mTLS, as the node
    yield srv
    srv.server.stop(None)


def made_name(role: str, key: str) -> str:
    """The file make-secrets.sh writes for `key` of the role's Secret."""
    return {"tls.crt": f"i2v-{role}.crt", "tls.key": f"i2v-{role}.key", "ca.crt": "ca.crt"}[key]


def probe_argv(rendered: Rendered, role: str, probe: str, made: Path, port: int) -> list[str]:
    """The probe command of the production overlay, pointed at the made files and `port`."""
    for overlay, r, _, c, _ in resolved_servers(rendered):
        if overlay == "production" and r == role:
            argv = c[probe]["exec"]["command"]
            argv = [
                re.sub(r"/etc/i2v/tls/([\w.]+)", lambda m: str(made / made_name(role, m.group(1))), a)
                for a in argv
            ]
            return [re.sub(r"^--addr=127\.0\.0\.1:\d+$", f"--addr=127.0.0.1:{port}", a) for a in argv]
    raise AssertionError(f"no {role} in the production overlay")


def run_probe(argv: list[str]) -> subprocess.CompletedProcess[str]:
    assert Path(argv[0]).name == "i2v-grpc-probe", argv
    return subprocess.run(
        [sys.executable, str(PROBE_SCRIPT), *argv[1:]], capture_output=True, text=True, timeout=60
    )


def test_the_node_probe_speaks_mtls_with_the_pods_own_certificate(
    rendered: Rendered, made: Path, node_port: HealthServer
) -> None:
    ready = probe_argv(rendered, "node", "readinessProbe", made, node_port.port)
    live = probe_argv(rendered, "node", "livenessProbe", made, node_port.port)
    node_port.set("i2v.v1.Node", False)  # loading the model
    result = run_probe(ready)
    assert result.returncode == 1 and "NOT_SERVING" in result.stdout, result.stdout + result.stderr
    assert run_probe(live).returncode == 0
    node_port.set("i2v.v1.Node", True)
    result = run_probe(ready)
    assert result.returncode == 0 and "SERVING" in result.stdout, result.stdout + result.stderr
    # without a client certificate the mTLS port refuses the probe, so the certificate is what passes it
    bare = [a for a in ready if not a.startswith(("--cert=", "--key="))]
    assert run_probe(bare).returncode == 1


def test_the_coordinator_probe_speaks_tls(rendered: Rendered, made: Path) -> None:
    srv = HealthServer(made / "i2v-coordinator.crt", made / "i2v-coordinator.key", None)
    try:
        srv.set("i2v.v1.Coordinator", True)
        result = run_probe(probe_argv(rendered, "coordinator", "readinessProbe", made, srv.port))
        assert result.returncode == 0, result.stdout + result.stderr
        plain = subprocess.run(
            [sys.executable, str(PROBE_SCRIPT), f"--addr=127.0.0.1:{srv.port}", "--timeout=1"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert plain.returncode == 1, "a plaintext probe (the kubelet's) cannot pass a TLS port"
    finally:
        srv.server.stop(None)


# ---- systemd: certificates and tokens as files the servers read and re-read ----

ETCD_VARS = ("I2V_ETCD_CA", "I2V_ETCD_CERT", "I2V_ETCD_KEY", "I2V_ETCD_USER", "I2V_ETCD_PASSWORD_FILE")
SECURITY_VARS = re.compile(r"^I2V_(TLS_[A-Z_]+|TOKENS_FILE|DISPATCH_TOKEN_FILE)$")


@pytest.mark.parametrize("unit", [u for u in UNITS if "gateway" not in u])
def test_unit_security_settings_are_read_by_the_server(unit: str) -> None:
    entries = unit_entries(SYSTEMD / unit)
    env = unit_environment(entries)
    exe = Path(next(v for _, k, v in entries if k == "ExecStart").split()[0]).name
    assert exe in SCRIPTS.values(), unit
    script = shutil.which(exe, path=TOOL_PATH)
    assert script is not None
    wide = {**os.environ, "COLUMNS": "400"}  # no variable name wrapped across lines
    text = subprocess.run(
        [script, "--help"], capture_output=True, text=True, timeout=120, check=True, env=wide
    ).stdout
    names = sorted(n for n in env if SECURITY_VARS.match(n))
    assert {"I2V_TLS_CERT", "I2V_TLS_KEY", "I2V_TOKENS_FILE"} <= set(names), (unit, names)
    for name in names:
        assert f"${name}" in text, f"{unit}: {exe} does not read ${name}"
        # the shipped examples turn TLS and tokens on, with files under /etc/i2v
        if name in ("I2V_TLS_CERT", "I2V_TLS_KEY", "I2V_TOKENS_FILE"):
            assert env[name].startswith("/etc/i2v/"), (unit, name, env[name])
    # the etcd security settings are shipped commented out (an etcd without TLS by default), each
    # one a variable the server reads
    examples = [v for _, k, v in entries if k == "EnvironmentFile"]
    etcd_vars = {
        line[1:].partition("=")[0]
        for example in examples
        for line in (SYSTEMD / Path(example).name.replace("%i", "0")).read_text().splitlines()
        if line.startswith("#I2V_ETCD_")
    }
    assert etcd_vars == set(ETCD_VARS), (unit, sorted(etcd_vars))
    for name in etcd_vars:  # the help names each one in brackets after its flag
        assert f"[{name}]" in text, f"{unit}: {exe} does not read ${name}"
