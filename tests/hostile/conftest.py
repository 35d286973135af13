"""The hostile suite's servers (one cluster for the whole session), its outcome tally and the
hypothesis settings every property test here uses.

I2V_HOSTILE_EXAMPLES sets the examples per property test (default 200: over 1,000 requests in all
within about a minute on two busy cores); I2V_HOSTILE_REPORT names a JSON file for the outcome counts,
which are printed in the terminal summary either way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.etcd_cluster import EtcdCluster, etcd_binary
from tests.hostile.servers import HostileCluster
from tests.hostile.tally import Tally

EXAMPLES = int(os.environ.get("I2V_HOSTILE_EXAMPLES", "200"))
HOSTILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

_TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Tally:
    return _TALLY


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileCluster]:
    if etcd_binary() is None:
        pytest.skip("etcd binary not found (install etcd or set ETCD_BIN)")
    etcd = EtcdCluster(1, tmp_path_factory.mktemp("hostile-etcd"))
    etcd.start()
    cache = tmp_path_factory.getbasetemp() / "i2v-cache"  # shared with the other node tests
    cache.mkdir(exist_ok=True)
    made = HostileCluster(etcd, tmp_path_factory.mktemp("hostile"), cache)
    try:
        made.start()
        made.submit_sentinels()
        made.sizes_before = made.log_sizes()  # type: ignore[attr-defined]
        yield made
    finally:
        made.stop()
        etcd.stop_all()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _TALLY.total:
        return
    for line in _TALLY.lines():
        terminalreporter.write_line(line)
    report = os.environ.get("I2V_HOSTILE_REPORT")
    if report:
        _TALLY.write(Path(report))
