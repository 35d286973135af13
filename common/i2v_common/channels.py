"""Where every gRPC channel of a process is made: plaintext without TLS settings, TLS (with a client
certificate where one is given) with them, and rebuilt after the certificate files change.

A ChannelPool keeps one grpc.aio channel per address (the coordinator's calls to nodes, the
standby's calls to the leader). When the files change, the next call to an address gets a new
channel with the new credentials; the old one closes once the calls still on it have ended, so a
rotation never cuts a running dispatch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from i2v_common.tls import ClientTls, channel_credentials, signature

Options = Sequence[tuple[str, Any]]


class ChannelFactory:
    """Channels with `tls` (None: plaintext); the files are looked at again at most every
    `check_interval_s`, and `generation` counts the changes seen."""

    def __init__(
        self,
        tls: ClientTls | None = None,
        *,
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tls = tls
        self._interval = check_interval_s
        self._clock = clock
        self._checked = clock()
        self._seen = signature(tls.files()) if tls else ()
        self._generation = 0
        self._credentials = channel_credentials(tls) if tls else None

    @property
    def secure(self) -> bool:
        return self.tls is not None

    @property
    def generation(self) -> int:
        """Changes when the certificate files changed since the last look (at most every interval)."""
        if self.tls is not None and self._clock() - self._checked >= self._interval:
            self._checked = self._clock()
            now = signature(self.tls.files())
            if now != self._seen:
                self._seen = now
                self._generation += 1
                self._credentials = None  # read again by the next channel
        return self._generation

    def _current(self) -> grpc.ChannelCredentials | None:
        if self.tls is not None and self._credentials is None:
            self._credentials = channel_credentials(self.tls)
        return self._credentials

    def _options(self, options: Options) -> list[tuple[str, Any]]:
        if self.tls is None or self.tls.server_name is None:
            return list(options)
        return [*options, ("grpc.ssl_target_name_override", self.tls.server_name)]

    def sync(self, target: str, options: Options = ()) -> grpc.Channel:
        creds = self._current()
        if creds is None:
            return grpc.insecure_channel(target, options=list(options))
        return grpc.secure_channel(target, creds, options=self._options(options))

    def aio(self, target: str, options: Options = ()) -> grpc.aio.Channel:
        creds = self._current()
        if creds is None:
            return grpc.aio.insecure_channel(target, options=list(options))
        return grpc.aio.secure_channel(target, creds, options=self._options(options))


@dataclass
class _Entry:
    channel: grpc.aio.Channel
    generation: int
    holds: int = 0
    retired: bool = False
    closed: bool = False


class ChannelPool:
    """One grpc.aio channel per address with `options`, at most `max_open` (the least recently used
    one is retired first), rebuilt after the factory's files change."""

    def __init__(self, factory: ChannelFactory, options: Options, *, max_open: int | None = None) -> None:
        self._factory = factory
        self._options = tuple(options)
        self._max_open = max_open
        self._open: dict[str, _Entry] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def _entry(self, addr: str) -> _Entry:
        generation = self._factory.generation
        entry = self._open.pop(addr, None)
        if entry is not None and entry.generation != generation:
            self._retire(entry)
            entry = None
        if entry is None:
            entry = _Entry(self._factory.aio(addr, self._options), generation)
        self._open[addr] = entry  # most recently used last
        while self._max_open is not None and len(self._open) > self._max_open:
            self._retire(self._open.pop(next(iter(self._open))))
        return entry

    def _retire(self, entry: _Entry) -> None:
        entry.retired = True
        if entry.holds == 0:
            self._close_later(entry)

    def _close_later(self, entry: _Entry) -> None:
        if entry.closed:
            return
        entry.closed = True
        task = asyncio.create_task(entry.channel.close(), name="channel-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @contextlib.asynccontextmanager
    async def hold(self, addr: str) -> AsyncIterator[grpc.aio.Channel]:
        """The channel to `addr`, kept open (even if retired meanwhile) until the block ends."""
        entry = self._entry(addr)
        entry.holds += 1
        try:
            yield entry.channel
        finally:
            entry.holds -= 1
            if entry.retired and entry.holds == 0:
                self._close_later(entry)

    async def reset(self, addr: str) -> None:
        """Close the channel to `addr` now, calls on it included (the next call opens a new one)."""
        entry = self._open.pop(addr, None)
        if entry is not None and not entry.closed:
            entry.retired = entry.closed = True
            await entry.channel.close()

    async def close(self) -> None:
        entries, self._open = list(self._open.values()), {}
        for entry in entries:
            if not entry.closed:
                entry.retired = entry.closed = True
                await entry.channel.close()
        await asyncio.gather(*self._closing, return_exceptions=True)
