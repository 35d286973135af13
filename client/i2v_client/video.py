"""A finished job's video as bytes: inlined in the result, or read from a file:// artifact this
machine can see, checked against the result's sha256.

Coming with the download RPC: fetching any artifact through the coordinators. Until then a video
that is neither inline nor local (s3://, another host's file://) is named by its URI only.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from i2v_client.request import checked
from i2v_contract.wire import common_pb2


def read_local_artifact(uri: str) -> bytes | None:
    """The bytes behind a file:// URI when this machine can read it, else None."""
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    try:
        return Path(url2pathname(parsed.path)).read_bytes()
    except OSError:
        return None


def with_video(result: common_pb2.Result) -> common_pb2.Result:
    """The result with its video inline: as sent, or read from a local file:// artifact (checked:
    CallError(DATA_LOSS) when the bytes do not match). Without either, the result as it was: its
    `video` stays empty and `artifact_uri` says where the video is."""
    if result.video or not result.artifact_uri:
        return result
    video = read_local_artifact(result.artifact_uri)
    if video is None:
        return result
    fetched = common_pb2.Result()
    fetched.CopyFrom(result)
    fetched.video = video
    return checked(fetched)
