"""`i2v-node` cluster flags: parsing, the errors a wrong combination gets, the advertised address."""

from __future__ import annotations

import pytest

from i2v_node.config import parse_args

BASE = ["--model", "tiny"]
CLUSTER = ["--etcd", "127.0.0.1:2379", "--artifacts", "d"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--etcd", "127.0.0.1:2379"], "--etcd needs --artifacts"),
        (["--advertise", "10.0.0.1:50051"], "only apply in a cluster"),
        (["--lease-ttl", "5", "--prefix", "/x/"], "--prefix, --lease-ttl only apply in a cluster"),
        ([*CLUSTER, "--lease-ttl", "0.5"], "--lease-ttl must be 1..3600"),
        ([*CLUSTER, "--prefix", "i2v"], "must start and end with '/'"),
        (["--etcd", "ftp://h:1", "--artifacts", "d"], "expected host:port"),
        (["--etcd", ",", "--artifacts", "d"], "no etcd endpoints"),
        (["--node-id", "a/b"], "contain no '/'"),
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


def test_standalone_defaults() -> None:
    config = parse_args(BASE)
    assert (config.etcd, config.advertise, config.artifacts, config.prefix, config.lease_ttl) == (
        (),
        "",
        "",
        "/i2v/v1/",
        10.0,
    )
