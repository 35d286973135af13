"""systemd readiness: a server says READY=1 once it serves and STOPPING=1 once it stops serving."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from i2v_common import keepalive
from i2v_common.sdnotify import Notifier
from i2v_common.serving import RpcServer

SERVICE = "i2v.v1.Node"


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(0.5)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    lines: list[str] = []
    sock.setblocking(False)
    try:
        while True:
            lines.append(sock.recv(4096).decode())
    except BlockingIOError:
        return lines
    finally:
        sock.settimeout(0.5)


async def test_ready_once_serving_and_stopping_once_draining(systemd: socket.socket, tmp_path: Path) -> None:
    server = RpcServer(SERVICE, keepalive.SERVER_OPTIONS, notifier=Notifier(str(tmp_path / "notify")))
    server.bind("127.0.0.1:0")
    await server.start()  # NOT_SERVING while the model loads: systemd hears nothing yet
    try:
        assert received(systemd) == []
        await server.set_serving(True)
        await server.set_serving(True)  # no second READY
        assert received(systemd) == ["READY=1\nSTATUS=serving"]
        await server.set_serving(False)
        assert received(systemd) == ["STOPPING=1\nSTATUS=draining"]
    finally:
        await server.stop(0)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, False, id="not-under-systemd"),
        pytest.param({"NOTIFY_SOCKET": ""}, False, id="empty-socket"),
        pytest.param({"NOTIFY_SOCKET": "/run/systemd/notify"}, True, id="path-socket"),
    ],
)
def test_a_notifier_exists_only_under_systemd(env: dict[str, str], expected: bool) -> None:
    assert (Notifier.from_env(env) is not None) == expected


def test_an_abstract_socket_address_is_reached(tmp_path: Path) -> None:
    name = f"i2v-test-{tmp_path.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert Notifier(f"@{name}").send("READY=1")
        assert sock.recv(64) == b"READY=1"


def test_a_missing_socket_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert not Notifier(str(tmp_path / "gone")).send("READY=1")
    assert "could not notify systemd (READY=1)" in caplog.text
