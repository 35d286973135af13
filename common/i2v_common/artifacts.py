"""The artifact store: where input images and output videos live (etcd holds only their URIs).

A plain directory (or file:// URL) by default; any other URL scheme goes through fsspec, so
`s3://bucket/prefix` works through s3fs (its endpoint and credentials: `s3.py`), and `memory://`
serves tests of that seam.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

import fsspec

from i2v_common import s3

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,3}$")


class ArtifactError(Exception):
    """An artifact could not be stored or read; the message says which and why."""


class ArtifactMissing(ArtifactError):
    """The artifact does not exist in the store (as opposed to a store that cannot be read)."""


def check_name(name: str) -> str:
    """Artifact names are short relative paths of safe segments (no '..', no absolute paths)."""
    if not _NAME.match(name):
        raise ArtifactError(
            f"artifact name {name!r} is not allowed: use 1-4 segments of letters, digits, '.', '_', '-'"
        )
    return name


class ArtifactStore(Protocol):
    root_url: str

    def put(self, name: str, data: bytes) -> str:
        """Stores `data` under `name` (atomically replacing it) and returns its URI."""
        ...

    def get(self, uri: str) -> bytes: ...

    def size(self, uri: str) -> int:
        """The artifact's length in bytes (ArtifactMissing when it does not exist)."""
        ...

    def read_range(self, uri: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer at the end, none past it), reading only those."""
        ...

    def delete(self, uri: str) -> None:
        """Removes the artifact; one that is already gone is not an error (ArtifactError when the
        URI is outside this store)."""
        ...

    def create(self, name: str, data: bytes) -> bool:
        """Stores `data` under `name` only if nothing is there yet; True if this call wrote it."""
        ...

    def uri_for(self, name: str) -> str: ...


class FileStore:
    """A directory on a local or shared file system; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root_url = self.root.as_uri()

    def uri_for(self, name: str) -> str:
        return (self.root / check_name(name)).as_uri()

    def _path(self, uri: str) -> Path:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ArtifactError(f"{uri!r} is not in this store ({self.root_url})")
        try:
            # as_uri() percent-encodes ('+' -> %2B): decode before resolving, then judge the result
            path = Path(unquote(parsed.path)).resolve()
        except ValueError:  # an encoded NUL
            raise ArtifactError(f"{uri!r} is not a file path") from None
        if not path.is_relative_to(self.root):
            raise ArtifactError(f"{uri!r} is outside this store ({self.root_url})")
        return path

    def _staged(self, name: str, data: bytes) -> tuple[Path, Path]:
        """(final path, a temp file beside it holding `data`): the caller moves it into place."""
        path = self.root / check_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path, Path(tmp)

    def put(self, name: str, data: bytes) -> str:
        path, tmp = self._staged(name, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path.as_uri()

    def create(self, name: str, data: bytes) -> bool:
        path, tmp = self._staged(name, data)
        try:
            os.link(tmp, path)  # atomic and exclusive: fails if the name exists
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def get(self, uri: str) -> bytes:
        try:
            return self._path(uri).read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactMissing(f"cannot read artifact {uri!r}: it does not exist") from exc
        except OSError as exc:
            raise ArtifactError(f"cannot read artifact {uri!r}: {exc.strerror}") from exc

    def size(self, uri: str) -> int:
        try:
            return self._path(uri).stat().st_size
        except FileNotFoundError as exc:
            raise ArtifactMissing(f"cannot read artifact {uri!r}: it does not exist") from exc
        except OSError as exc:
            raise ArtifactError(f"cannot read artifact {uri!r}: {exc.strerror}") from exc

    def read_range(self, uri: str, offset: int, length: int) -> bytes:
        try:
            with self._path(uri).open("rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError as exc:
            raise ArtifactMissing(f"cannot read artifact {uri!r}: it does not exist") from exc
        except OSError as exc:
            raise ArtifactError(f"cannot read artifact {uri!r}: {exc.strerror}") from exc

    def delete(self, uri: str) -> None:
        path = self._path(uri)
        path.unlink(missing_ok=True)
        # A job's folder goes with its last artifact; a folder still holding files stays.
        with contextlib.suppress(OSError):
            if path.parent != self.root:
                path.parent.rmdir()


class FsspecStore:
    """Any fsspec URL (s3://, gs://, memory://): the seam for object stores."""

    def __init__(self, root_url: str) -> None:
        self.root_url = root_url.rstrip("/")
        try:
            options = s3.storage_options(self.root_url, os.environ)
            self.fs, self._root_path = fsspec.core.url_to_fs(self.root_url, **options)
        except (ImportError, ValueError) as exc:
            raise ArtifactError(f"artifact store {root_url!r} is not usable here: {exc}") from exc

    def uri_for(self, name: str) -> str:
        return f"{self.root_url}/{check_name(name)}"

    def put(self, name: str, data: bytes) -> str:
        uri = self.uri_for(name)
        self.fs.pipe_file(f"{self._root_path}/{name}", data)
        return uri

    def _path(self, uri: str) -> str:
        if not uri.startswith(self.root_url + "/"):
            raise ArtifactError(f"{uri!r} is not in this store ({self.root_url})")
        return f"{self._root_path}/{check_name(uri[len(self.root_url) + 1 :])}"

    def get(self, uri: str) -> bytes:
        try:
            data: bytes = self.fs.cat_file(self._path(uri))
        except FileNotFoundError as exc:
            raise ArtifactMissing(f"artifact {uri!r} does not exist") from exc
        return data

    def size(self, uri: str) -> int:
        try:
            return int(self.fs.size(self._path(uri)))
        except FileNotFoundError as exc:
            raise ArtifactMissing(f"artifact {uri!r} does not exist") from exc

    def read_range(self, uri: str, offset: int, length: int) -> bytes:
        # A ranged read (an HTTP Range request on object stores), never the whole object.
        try:
            data: bytes = self.fs.cat_file(self._path(uri), start=offset, end=offset + length)
        except FileNotFoundError as exc:
            raise ArtifactMissing(f"artifact {uri!r} does not exist") from exc
        return data

    def delete(self, uri: str) -> None:
        path = self._path(uri)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    def create(self, name: str, data: bytes) -> bool:
        # Exclusive where the backend has it (s3fs: a conditional put, If-None-Match: *); fsspec's
        # fallback checks, then writes (racy across writers).
        try:
            self.fs.pipe_file(f"{self._root_path}/{check_name(name)}", data, mode="create")
        except FileExistsError:
            return False
        return True


def open_store(location: str) -> ArtifactStore:
    """A directory path or file:// URL gives a FileStore; any other scheme goes through fsspec."""
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        return FileStore(Path(parsed.path if parsed.scheme else location))
    return FsspecStore(location)
