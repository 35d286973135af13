"""A job's artifacts through Coordinator.Download: its video (or input image, or a stored frame)
written to a path or an open binary file, checked against the sha256 the server sends before any
data, and resumed from the bytes already written when a stream breaks.

To a path, the bytes go to `PATH.part` and are renamed onto PATH once their sha256 matches, so PATH
never holds a partial file (a path that is not a regular file, such as a device, is written in
place); `resume=True` also continues a `.part` an interrupted earlier call left (its bytes are
hashed first; if they turn out not to belong to the artifact, the download starts over once). To an
open file, bytes are written in order from its position.

A stream that breaks (UNAVAILABLE, DEADLINE_EXCEEDED, or silent for `idle_timeout_s`) moves to the
next coordinator as every call does (any coordinator serves Download, standbys included) and asks
for the rest from the byte reached; with `resume=False` it starts over from byte 0 instead (an open
file must then be seekable). Other codes raise CallError at once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import grpc

from i2v_client.errors import CallError
from i2v_client.failover import Failover
from i2v_client.request import checked
from i2v_client.retry import Reconnect, retryable
from i2v_client.streams import IdleWatchdog
from i2v_contract.wire import common_pb2, coordinator_pb2

ARTIFACTS = {
    "video": coordinator_pb2.ARTIFACT_VIDEO,
    "input": coordinator_pb2.ARTIFACT_INPUT_IMAGE,
    "frame": coordinator_pb2.ARTIFACT_FRAME,
}
HASH_READ_BYTES = 8 * 1024 * 1024

ProgressCallback = Callable[[int, int], None]  # (bytes written so far, total bytes)
Destination = str | os.PathLike[str] | BinaryIO


@dataclass(frozen=True)
class Downloaded:
    size: int
    sha256: str
    mime_type: str
    streams: int  # Download streams opened: 1 when none broke


class _Sink:
    """Where the bytes go: `write` in order from `have` bytes in; `restart` empties it."""

    def __init__(self, write: Callable[[bytes], object], restart: Callable[[], None]) -> None:
        self.write = write
        self.restart = restart
        self.have = 0
        self.hasher = hashlib.sha256()

    def take(self, data: bytes) -> None:
        self.write(data)
        self.hasher.update(data)
        self.have += len(data)

    def start_over(self) -> None:
        self.restart()
        self.have = 0
        self.hasher = hashlib.sha256()


class _Transfer:
    """One artifact's bytes from the coordinators into a sink, across broken streams."""

    def __init__(
        self,
        failover: Failover,
        request: coordinator_pb2.DownloadRequest,
        resume: bool,
        on_progress: ProgressCallback | None,
    ) -> None:
        self._failover = failover
        self._request = request
        self._resume = resume
        self._on_progress = on_progress
        self._what = f"download {request.job_id}"
        self.header: coordinator_pb2.DownloadResponse | None = None
        self.streams = 0

    def run(self, sink: _Sink) -> Downloaded:
        reconnect = self._failover.reconnect()
        while True:
            request = coordinator_pb2.DownloadRequest()
            request.CopyFrom(self._request)
            request.offset = sink.have
            call: Any = self._failover.connected(reconnect, self._what).Download(request)
            self.streams += 1
            watchdog = IdleWatchdog(call, self._failover.policy.idle_timeout_s)
            try:
                with watchdog:
                    self._read(call, watchdog, sink, reconnect)
            except grpc.RpcError as err:
                self._broken(err, watchdog.fired, reconnect)
            except BaseException:
                call.cancel()
                raise
            else:
                header = self.header
                if header is not None and sink.have == header.total_size:
                    return self._verified(sink, header)
                # Ended cleanly but short (the server went away): ask for the rest elsewhere.
                detail = f"the stream ended after {sink.have} bytes"
                self._failover.move_on(grpc.StatusCode.UNAVAILABLE, detail, "", reconnect, self._what)
            if not self._resume:
                sink.start_over()

    def _read(self, call: Any, watchdog: IdleWatchdog, sink: _Sink, reconnect: Reconnect) -> None:
        first = True
        for message in call:
            watchdog.touch()
            reconnect.reset()
            self._failover.answered()
            if first:
                self._check_header(message)
                first = False
                continue
            if message.offset != sink.have:
                call.cancel()
                raise CallError(
                    grpc.StatusCode.DATA_LOSS,
                    f"{self._what}: got bytes at offset {message.offset}, expected {sink.have}",
                )
            sink.take(message.data)
            if self._on_progress is not None and self.header is not None:
                self._on_progress(sink.have, self.header.total_size)
            watchdog.touch()  # time spent writing is not the coordinator's silence

    def _check_header(self, message: coordinator_pb2.DownloadResponse) -> None:
        """The first stream's header describes the artifact; later streams' must say the same."""
        if self.header is None:
            self.header = message
            return
        if (message.total_size, message.sha256) != (self.header.total_size, self.header.sha256):
            raise CallError(
                grpc.StatusCode.DATA_LOSS,
                f"{self._what}: the artifact changed between streams "
                f"({self.header.total_size} bytes {self.header.sha256[:12]}, now "
                f"{message.total_size} bytes {message.sha256[:12]}); download it again",
            )

    def _broken(self, err: grpc.RpcError, silent: bool, reconnect: Reconnect) -> None:
        failover = self._failover
        lost = failover.target
        if silent:
            silence = f"sent nothing for {failover.policy.idle_timeout_s:g} s"
            failover.suspect(lost, f"{silence} on {self._what}")
            failover.move_on(grpc.StatusCode.UNAVAILABLE, f"{lost} {silence}", "", reconnect, self._what)
        elif retryable(err.code()):
            failover.rpc_failed(err, reconnect, self._what)
        else:
            raise CallError.from_rpc(err, lost) from None

    def _verified(self, sink: _Sink, header: coordinator_pb2.DownloadResponse) -> Downloaded:
        digest = sink.hasher.hexdigest()
        if header.sha256 and digest != header.sha256:
            raise CallError(
                grpc.StatusCode.DATA_LOSS,
                f"{self._what}: the {sink.have} bytes received hash to {digest[:12]}..., "
                f"not {header.sha256[:12]}...; download it again",
            )
        return Downloaded(header.total_size, digest, header.mime_type, self.streams)


def download(
    failover: Failover,
    job_id: str,
    dest: Destination,
    *,
    what: str = "video",
    frame: int = 0,
    resume: bool = True,
    on_progress: ProgressCallback | None = None,
) -> Downloaded:
    """Download one artifact of `job_id` (`what`: video, input or frame) to `dest`, verified."""
    if what not in ARTIFACTS:
        raise ValueError(f"what: {what!r} is not one of {', '.join(ARTIFACTS)}")
    request = coordinator_pb2.DownloadRequest(job_id=job_id, what=ARTIFACTS[what], frame=frame)
    if isinstance(dest, str | os.PathLike):
        path = Path(dest)
        if path.exists() and not path.is_file():
            # A device or a pipe (/dev/stdout): nothing to rename onto, so the bytes go straight in.
            with path.open("wb") as f:
                return _Transfer(failover, request, resume, on_progress).run(_file_sink(f))
        return _to_path(failover, request, path, resume, on_progress)
    return _Transfer(failover, request, resume, on_progress).run(_file_sink(dest))


def _file_sink(file: BinaryIO) -> _Sink:
    start = file.tell() if file.seekable() else None

    def restart() -> None:
        if start is None:
            raise CallError(
                grpc.StatusCode.UNAVAILABLE, "the download broke off and the file cannot be rewound"
            )
        file.seek(start)
        file.truncate()

    return _Sink(file.write, restart)


def _to_path(
    failover: Failover,
    request: coordinator_pb2.DownloadRequest,
    path: Path,
    resume: bool,
    on_progress: ProgressCallback | None,
) -> Downloaded:
    part = path.with_name(path.name + ".part")
    if not resume:
        part.unlink(missing_ok=True)
    left_earlier = part.exists() and part.stat().st_size > 0
    try:
        return _into(part, path, _Transfer(failover, request, resume, on_progress))
    except CallError as err:
        stale = err.code in (grpc.StatusCode.DATA_LOSS, grpc.StatusCode.INVALID_ARGUMENT)
        if stale:
            part.unlink(missing_ok=True)  # bytes that are not the artifact's are no use to resume
        # Bytes an earlier call left that are not this artifact's (an offset past its end, or a
        # digest that does not match): start over from byte 0, once.
        if not (stale and left_earlier):
            raise
    return _into(part, path, _Transfer(failover, request, resume, on_progress))


def _into(part: Path, path: Path, transfer: _Transfer) -> Downloaded:
    """Continue `part` (hashing what it holds first), then rename it onto `path` once verified."""
    with part.open("ab") as f:
        sink = _Sink(f.write, lambda: _empty(f))
        with part.open("rb") as held:
            while data := held.read(HASH_READ_BYTES):
                sink.hasher.update(data)
                sink.have += len(data)
        done = transfer.run(sink)
    os.replace(part, path)
    return done


def _empty(file: BinaryIO) -> None:
    file.seek(0)
    file.truncate()


def frame_name(index: int) -> str:
    return f"frame_{index:04d}.png"


def save_inline(result: common_pb2.Result, output: Path, frames_dir: Path | None = None) -> None:
    """A result that carries its bytes (a node's standalone run): the video, checked against its
    sha256, to `output`, and each frame to `frames_dir` as frame_NNNN.png."""
    checked(result)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(result.video)
    if frames_dir is not None:
        frames_dir.mkdir(parents=True, exist_ok=True)
        for i, png in enumerate(result.frames_png):
            (frames_dir / frame_name(i)).write_bytes(png)


class Fetch(Protocol):
    """CoordinatorClient.download, as save_downloaded uses it."""

    def __call__(
        self, job_id: str, dest: Destination, *, what: str = ..., frame: int = ...
    ) -> Downloaded: ...


def save_downloaded(
    fetch: Fetch, job_id: str, result: common_pb2.Result, output: Path, frames_dir: Path | None = None
) -> Downloaded:
    """A finished job's video downloaded to `output`, and its stored frames (if any) to
    `frames_dir` as frame_NNNN.png."""
    output.parent.mkdir(parents=True, exist_ok=True)
    done = fetch(job_id, output)
    if frames_dir is not None:
        frames_dir.mkdir(parents=True, exist_ok=True)
        for i in range(len(result.frame_uris)):
            fetch(job_id, frames_dir / frame_name(i), what="frame", frame=i)
    return done
