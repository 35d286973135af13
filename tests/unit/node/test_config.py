"""`i2v-node` flags: parsing, the errors a wrong combination gets, the cluster defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from i2v_common.etcd_security import EtcdSecurity
from i2v_node.config import parse_args

GIB = 1024**3
BASE = ["--model", "tiny"]
CLUSTER = ["--etcd", "127.0.0.1:2379", "--artifacts", "d"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            [*BASE, "--simulate-free-vram", "6GiB", "--device", "cuda"],
            "CPU nodes only",
            id="simulate-on-cuda",
        ),
        pytest.param(
            [*BASE, "--simulate-free-vram", "6GiB", "--simulate-free-vram-file", "x"],
            "not both",
            id="two-simulations",
        ),
        pytest.param([*BASE, "--max-vram", "lots"], "not a size", id="max-vram-not-a-size"),
        pytest.param([*BASE, "--listen", "nohost"], "HOST:PORT", id="listen-without-port"),
        pytest.param([*BASE, "--device", "tpu"], "not a device", id="unknown-device"),
    ],
)
def test_node_args_rejected(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_node_args_parsed(tmp_path: Path) -> None:
    argv = [*BASE, "--listen", "127.0.0.1:0", "--max-vram", "10GiB", "--cache-dir", str(tmp_path)]
    argv += ["--simulate-free-vram", "12GiB", "--node-id", "n1", "--drain-grace-seconds", "5"]
    config = parse_args(argv)
    assert config.max_vram_bytes == 10 * GIB
    assert config.simulate_free_vram_bytes == 12 * GIB
    assert config.node_id == "n1"
    assert config.drain_grace_seconds == 5.0
    assert config.cache_dir == tmp_path
    assert config.offline


def test_the_node_takes_the_coordinator_s_names_for_the_same_flags() -> None:
    config = parse_args([*BASE, "--id", "n2", "--drain-grace", "7"])
    assert (config.node_id, config.drain_grace_seconds) == ("n2", 7.0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["--etcd", "127.0.0.1:2379"], "--etcd needs --artifacts", id="etcd-without-artifacts"),
        pytest.param(["--advertise", "10.0.0.1:50051"], "only apply in a cluster", id="advertise-standalone"),
        pytest.param(
            ["--lease-ttl", "5", "--prefix", "/x/"],
            "--prefix, --lease-ttl only apply in a cluster",
            id="cluster-flags-standalone",
        ),
        pytest.param(
            [*CLUSTER, "--lease-ttl", "0.5"], "--lease-ttl must be 1..3600", id="lease-ttl-too-short"
        ),
        pytest.param(
            [*CLUSTER, "--prefix", "i2v"], "must start and end with '/'", id="prefix-without-slashes"
        ),
        pytest.param(["--etcd", "ftp://h:1", "--artifacts", "d"], "expected host:port", id="etcd-bad-scheme"),
        pytest.param(["--etcd", ",", "--artifacts", "d"], "no etcd endpoints", id="etcd-empty-list"),
        pytest.param(["--node-id", "a/b"], "contain no '/'", id="node-id-with-slash"),
        pytest.param(
            ["--etcd-user", "i2v"], "--etcd-user only apply in a cluster", id="etcd-user-standalone"
        ),
        pytest.param(
            [*CLUSTER, "--etcd-ca", "/nonexistent/ca.pem"],
            "--etcd-ca /nonexistent/ca.pem: cannot read",
            id="etcd-ca-missing",
        ),
        pytest.param(
            [*CLUSTER, "--etcd-user", "i2v"], "needs --etcd-password-file", id="etcd-user-no-password"
        ),
    ],
)
def test_cluster_args_rejected(extra: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args([*BASE, *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cluster_args_parsed() -> None:
    argv = [*BASE, "--etcd", "127.0.0.1:2379,http://10.0.0.2:2379", "--artifacts", "/srv/a"]
    argv += ["--advertise", "node-a:50051", "--prefix", "/c1/", "--lease-ttl", "4"]
    config = parse_args(argv)
    assert config.etcd == ("127.0.0.1:2379", "10.0.0.2:2379")
    assert (config.artifacts, config.advertise, config.prefix, config.lease_ttl) == (
        "/srv/a",
        "node-a:50051",
        "/c1/",
        4.0,
    )


def test_etcd_security_flags_parsed(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "password").write_text("pw\n")
    argv = [
        *BASE,
        "--etcd",
        "https://etcd-0:2379",
        "--artifacts",
        "/srv/a",
        "--etcd-ca",
        str(tmp_path / "ca.pem"),
    ]
    config = parse_args([*argv, "--etcd-user", "node", "--etcd-password-file", str(tmp_path / "password")])
    assert config.etcd == ("etcd-0:2379",)
    assert config.etcd_security == EtcdSecurity(ca=tmp_path / "ca.pem", user="node", password="pw")


def test_standalone_defaults() -> None:
    config = parse_args(BASE)
    assert (config.etcd, config.advertise, config.artifacts, config.prefix, config.lease_ttl) == (
        (),
        "",
        "",
        "/i2v/v1/",
        10.0,
    )
