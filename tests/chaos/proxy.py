"""A loopback TCP proxy for failure tests: forward, freeze (silent partition), half-dead, refuse.

It runs on plain sockets in its own threads, never on an asyncio loop, so it can sit beside
blocking grpcio calls in a test process (an asyncio gRPC loop beside blocking calls once
segfaulted grpcio). It only ever connects to its target on 127.0.0.1.

Modes, switchable at any time:
- forward: bytes flow both ways (the start mode, and what resume() returns to);
- freeze(): every socket stays open and new connections are accepted (and opened to the target),
  but no byte moves in either direction: a silent partition, with no RST and no FIN, so only
  timeouts and keepalives notice;
- freeze_existing(): the connections open now stop moving bytes, new ones work normally (a
  half-dead connection, as after a NAT or conntrack entry vanished);
- refuse(): open connections are reset and the port refuses new ones (a crashed peer);
- resume(): forward again on the same port; stop(): close everything.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from types import TracebackType

POLL_S = 0.05  # how often a pump looks at the mode and at stop(); bounds a mode switch's latency
CHUNK = 65536
LOOPBACK = frozenset({"127.0.0.1", "localhost"})


def _reset(sock: socket.socket) -> None:
    """Close with RST (linger 0), as a crashed process's kernel would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _Connection:
    """One accepted client socket and its upstream socket, pumped by two threads."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.thawed = threading.Event()  # cleared by freeze_existing(); frozen pumps wait on it
        self.thawed.set()
        self._open_directions = 2
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True, name="proxy-up"),
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True, name="proxy-down"),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _moving(self) -> bool:
        return self.thawed.is_set() and self.proxy.resumed.is_set()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self._closed:
                if not self.proxy.resumed.wait(POLL_S) or not self.thawed.wait(POLL_S):
                    continue  # frozen: wait (bounded, so close() is noticed) without reading
                readable, _, _ = select.select([src], [], [], POLL_S)
                if not readable or not self._moving():
                    continue  # a freeze that began during select holds what arrived
                data = src.recv(CHUNK)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)  # pass the FIN on; the other way may go on
                    break
                dst.sendall(data)
        except (OSError, ValueError):  # a reset, or the sockets were closed under us (ValueError: fd -1)
            self.close(reset=True)
            return
        with self._lock:
            self._open_directions -= 1
            last = self._open_directions == 0
        if last:
            self.close(reset=False)

    def close(self, *, reset: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sock in (self.client, self.upstream):
            if reset:
                _reset(sock)
            else:
                sock.close()
        self.proxy._forget(self)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)


class TcpProxy:
    """Listens on 127.0.0.1:<free port> and forwards to 127.0.0.1:`target_port`."""

    def __init__(
        self, target_port: int, target_host: str = "127.0.0.1", connect_timeout_s: float = 2.0
    ) -> None:
        if target_host not in LOOPBACK:
            raise ValueError(f"TcpProxy only forwards to loopback, not {target_host!r}")
        if not 0 < target_port < 65536:
            raise ValueError(f"target port {target_port} out of range")
        self.target = ("127.0.0.1", target_port)
        self.connect_timeout_s = connect_timeout_s
        self.port = 0
        self.resumed = threading.Event()  # cleared by freeze(); frozen pumps wait on it
        self.resumed.set()
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._stopped = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- modes ----------------------------------------------------------------------------------

    def freeze(self) -> None:
        """Stop moving bytes on every connection, present and future; all sockets stay open."""
        self.resumed.clear()

    def freeze_existing(self) -> None:
        """Stop moving bytes on the connections open now; new connections forward normally."""
        with self._lock:
            for conn in self._connections:
                conn.thawed.clear()

    def refuse(self) -> None:
        """Reset every open connection and refuse new ones until resume()."""
        self._close_listener()
        for conn in self._snapshot():
            conn.close(reset=True)

    def resume(self) -> None:
        """Forward again: thaw every connection and listen again (same port) after refuse()."""
        with self._lock:
            for conn in self._connections:
                conn.thawed.set()
        self.resumed.set()
        if self._listener is None and not self._stopped:
            self._listen()

    def stop(self) -> None:
        """Close the listener and every connection; the threads end within POLL_S."""
        self._stopped = True
        self._close_listener()
        conns = self._snapshot()
        for conn in conns:
            conn.close(reset=False)
        self.resumed.set()
        for conn in conns:
            conn.join(1.0)

    # --- internals ------------------------------------------------------------------------------

    def _snapshot(self) -> list[_Connection]:
        with self._lock:
            return list(self._connections)

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))  # port 0 the first time; the same port after refuse()
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener,), daemon=True, name="proxy-accept"
        )
        self._acceptor.start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        acceptor, self._acceptor = self._acceptor, None
        if listener is not None:
            listener.close()
        if acceptor is not None:
            acceptor.join(1.0)

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                readable, _, _ = select.select([listener], [], [], POLL_S)
                if not readable:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):  # closed by refuse() or stop()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=self.connect_timeout_s)
            except OSError:
                _reset(client)  # the target is down: the client sees what it would see directly
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, client, upstream)
            with self._lock:
                stopped = self._stopped
                if not stopped:
                    self._connections.add(conn)
            if stopped:
                conn.close(reset=False)
                return
            conn.start()
