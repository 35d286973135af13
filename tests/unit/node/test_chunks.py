"""A standalone run's inline output in chunks: every byte once, in order, then the bare Result."""

from __future__ import annotations

import pytest

from i2v_contract.wire import common_pb2
from i2v_node.chunks import CHUNK_BYTES, result_events


@pytest.mark.parametrize(
    ("video", "frames", "chunks"),
    [
        pytest.param(b"", [], [], id="nothing-inline"),
        pytest.param(b"v" * 10, [], [("video", 0, 0, 4), ("video", 0, 4, 4), ("video", 0, 8, 2)], id="video"),
        pytest.param(
            b"v" * 4,
            [b"a" * 5, b"b"],
            [("video", 0, 0, 4), ("frame", 0, 0, 4), ("frame", 0, 4, 1), ("frame", 1, 0, 1)],
            id="video-then-frames",
        ),
    ],
)
def test_bytes_go_in_chunks_before_a_result_without_them(
    video: bytes, frames: list[bytes], chunks: list[tuple[str, int, int, int]]
) -> None:
    result = common_pb2.Result(video=video, frames_png=frames, sha256="ab", video_size=len(video), seed=3)
    *parts, last = list(result_events(result, chunk=4))
    got = [(p.chunk.WhichOneof("part"), p.chunk.frame, p.chunk.offset, len(p.chunk.data)) for p in parts]
    assert got == chunks
    assert last.result == common_pb2.Result(sha256="ab", video_size=len(video), seed=3)
    assert b"".join(p.chunk.data for p in parts if p.chunk.WhichOneof("part") == "video") == video


def test_the_default_chunk_is_one_mib() -> None:
    result = common_pb2.Result(video=b"x" * (CHUNK_BYTES + 1))
    sizes = [len(e.chunk.data) for e in result_events(result) if e.HasField("chunk")]
    assert CHUNK_BYTES == 1024 * 1024 and sizes == [CHUNK_BYTES, 1]
