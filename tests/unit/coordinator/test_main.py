"""i2v-coordinator command line: defaults, validation messages, timings derived from the TTL."""

from __future__ import annotations

import pytest

from i2v_coordinator.election import DEFAULT_TIMINGS
from i2v_coordinator.main import parse_args, timings_for_ttl
from i2v_coordinator.retention import RetentionPolicy

REQUIRED = ["--etcd", "127.0.0.1:2379", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]
REQUIRED += ["--artifacts", "artifacts"]


def test_defaults() -> None:
    config = parse_args(REQUIRED)
    assert config.etcd == ("127.0.0.1:2379",)
    assert config.prefix == "/i2v/v1/" and config.lease_ttl == 5.0 and config.member_id == ""
    assert timings_for_ttl(config.lease_ttl) == DEFAULT_TIMINGS
    assert config.retention == RetentionPolicy(7 * 86400, 100_000)


@pytest.mark.parametrize(
    ("extra", "age_s", "jobs"),
    [
        (["--retention-max-age", "12h"], 43200.0, 100_000),
        (["--retention-max-age", "90"], 90.0, 100_000),
        (["--retention-max-age", "0", "--retention-max-jobs", "500"], 0.0, 500),
        (["--retention-max-jobs", "0"], 7 * 86400, 0),
    ],
)
def test_retention_flags(extra: list[str], age_s: float, jobs: int) -> None:
    assert parse_args([*REQUIRED, *extra]).retention == RetentionPolicy(age_s, jobs)


def test_retention_interval_flag() -> None:
    assert parse_args(REQUIRED).retention_interval_s == 60.0
    assert parse_args([*REQUIRED, "--retention-interval", "5s"]).retention_interval_s == 5.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lease-ttl", "0.5"], "--lease-ttl must be >= 1"),
        (["--lease-ttl", "-2"], "--lease-ttl must be > 0"),
        (["--max-queue", "0"], "--max-queue must be > 0"),
        (["--prefix", "i2v"], "must start and end with '/'"),
        (["--id", "a/b"], "must not contain '/'"),
        (["--advertise", "nohostport"], "expected host:port"),
        (["--etcd", "https://x:1"], "not supported"),
        (["--retention-max-age", "7w"], "use a number with an optional unit s, m, h or d"),
        (["--retention-max-age=-1d"], "is not a duration"),
        (["--retention-max-jobs", "1.5"], "whole number >= 0"),
        (["--retention-max-jobs=-3"], "whole number >= 0"),
        (["--retention-interval", "0"], "--retention-interval must be > 0"),
        (["--etcd-user", "c"], "--etcd-user needs --etcd-password-file"),
        (["--etcd-key", "/nonexistent/key.pem"], "--etcd-key /nonexistent/key.pem: cannot read it"),
    ],
)
def test_bad_flags_exit_2(extra: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args([*REQUIRED, *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("ttl", [1.0, 2.0, 5.0, 30.0])
def test_timings_scale_with_ttl(ttl: float) -> None:
    t = timings_for_ttl(ttl)
    assert t.keepalive_s < t.validity_s and t.margin_s == pytest.approx(0.3 * ttl)
