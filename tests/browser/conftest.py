"""The stack the page runs against: real etcd, two `i2v-coordinator`s, a tiny `i2v-node` and an
`i2v-gateway` process serving the page, all on loopback ports (the gateway tests' cluster)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.etcd_cluster import EtcdCluster
from tests.integration.gateway_process import GatewayCluster, gateway_cluster


@pytest.fixture(scope="module")
def cluster(etcd: EtcdCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayCluster]:
    cache = tmp_path_factory.getbasetemp() / "i2v-cache"  # shared with the other node tests
    with gateway_cluster(etcd.endpoints, tmp_path_factory.mktemp("webui-cluster"), cache) as made:
        yield made


@pytest.fixture(scope="module")
def site(cluster: GatewayCluster) -> str:
    return cluster.url + "/"
