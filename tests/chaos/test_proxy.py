"""TcpProxy on plain loopback sockets: every mode, switched at run time (fast, no etcd)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.chaos.proxy import TcpProxy
from tests.etcd_cluster import free_port

QUIET_S = 0.3  # long enough for a forwarding proxy (polls every 50 ms) to have moved the bytes


class EchoServer:
    """Echoes every byte back; counts the connections it accepted."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            self._socks.append(sock)
            threading.Thread(target=self._echo, args=(sock,), daemon=True).start()

    @staticmethod
    def _echo(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := sock.recv(4096):
                sock.sendall(data)
        sock.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    with TcpProxy(echo.port) as p:
        yield p


def dial(proxy: TcpProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    sock.settimeout(2)
    return sock


def roundtrip(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got


def silent(sock: socket.socket, data: bytes = b"ping") -> bool:
    """True when nothing comes back within QUIET_S and the socket was not closed."""
    sock.sendall(data)
    sock.settimeout(QUIET_S)
    try:
        chunk = sock.recv(4096)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(2)
    raise AssertionError(f"expected silence, got {chunk!r} (b'' = closed)")


def test_forwards_both_ways(proxy: TcpProxy) -> None:
    with dial(proxy) as sock:
        assert roundtrip(sock, b"hello" * 1000) == b"hello" * 1000
    with dial(proxy) as sock:
        assert roundtrip(sock) == b"ping"


def test_freeze_is_a_silent_partition_and_resume_delivers_what_was_held(
    proxy: TcpProxy, echo: EchoServer
) -> None:
    with dial(proxy) as old:
        assert roundtrip(old) == b"ping"
        proxy.freeze()
        assert silent(old, b"held")
        with dial(proxy) as new:  # accepted (no refusal) but just as silent
            assert silent(new, b"also")
            proxy.resume()
            assert new.recv(4096) == b"also"
        assert old.recv(4096) == b"held"
        assert roundtrip(old) == b"ping"


def test_freeze_existing_leaves_new_connections_working(proxy: TcpProxy) -> None:
    with dial(proxy) as old:
        assert roundtrip(old) == b"ping"
        proxy.freeze_existing()
        assert silent(old)
        with dial(proxy) as new:
            assert roundtrip(new, b"fresh") == b"fresh"
        assert silent(old, b"")  # still open, still stuck
        proxy.resume()
        assert old.recv(4096) == b"ping"


def test_refuse_resets_open_connections_and_refuses_new_ones_until_resume(proxy: TcpProxy) -> None:
    port = proxy.port
    with dial(proxy) as old:
        assert roundtrip(old) == b"ping"
        proxy.refuse()
        with pytest.raises((ConnectionResetError, BrokenPipeError, AssertionError)):
            assert roundtrip(old) == b"ping"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    proxy.resume()
    assert proxy.port == port
    with dial(proxy) as sock:
        assert roundtrip(sock) == b"ping"


def test_stop_closes_everything(echo: EchoServer) -> None:
    proxy = TcpProxy(echo.port).start()
    sock = dial(proxy)
    assert roundtrip(sock) == b"ping"
    proxy.freeze()
    proxy.stop()
    assert proxy.connections == 0
    with contextlib.suppress(ConnectionResetError):  # closed: EOF, or a reset if bytes were held
        assert sock.recv(4096) == b""
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2)


def test_a_down_target_is_seen_as_a_reset() -> None:
    port = free_port()  # nothing listens there
    with (
        TcpProxy(port) as proxy,
        pytest.raises((ConnectionResetError, BrokenPipeError, AssertionError)),
        dial(proxy) as sock,  # the reset may already come during connect
    ):
        assert roundtrip(sock) == b"ping"


@pytest.mark.parametrize("host", ["10.0.0.1", "example.com", "0.0.0.0"])
def test_only_loopback_targets(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        TcpProxy(80, target_host=host)


@pytest.mark.parametrize("freeze", ["freeze", "freeze_existing"])
def test_a_frozen_connection_waits_without_spinning(proxy: TcpProxy, freeze: str) -> None:
    with dial(proxy) as sock:
        assert roundtrip(sock) == b"ping"
        getattr(proxy, freeze)()
        cpu = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - cpu < 0.1  # a polling loop without a wait burns ~0.5 s here
