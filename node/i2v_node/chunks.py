"""A standalone run's inline output as a stream of small messages: Node.Generate sends the video's
bytes, then each frame's, as ResultChunk events of at most 1 MiB, then the Result without them, so
no message nears gRPC's default 4 MiB receive limit (512x512x32 frames already make a 4 MiB MP4).
A dispatched run's outputs go to the artifact store instead, and its Result carries none."""

from __future__ import annotations

from collections.abc import Iterator

from i2v_contract.wire import common_pb2

CHUNK_BYTES = 1024 * 1024


def result_events(result: common_pb2.Result, chunk: int = CHUNK_BYTES) -> Iterator[common_pb2.GenerateEvent]:
    """The chunks of `result`'s video and frames, in order, then the Result without their bytes."""
    for offset in range(0, len(result.video), chunk):
        part = common_pb2.ResultChunk(video=True, offset=offset, data=result.video[offset : offset + chunk])
        yield common_pb2.GenerateEvent(chunk=part)
    for index, png in enumerate(result.frames_png):
        for offset in range(0, len(png), chunk):
            part = common_pb2.ResultChunk(frame=index, offset=offset, data=png[offset : offset + chunk])
            yield common_pb2.GenerateEvent(chunk=part)
    bare = common_pb2.Result()
    bare.CopyFrom(result)
    bare.ClearField("video")
    bare.ClearField("frames_png")
    yield common_pb2.GenerateEvent(result=bare)
