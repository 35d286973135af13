"""A node's standalone output put back together: Node.Generate sends the video and frames as
ResultChunk events before a Result without bytes, so no message nears gRPC's 4 MiB default."""

from __future__ import annotations

import grpc

from i2v_client.errors import CallError
from i2v_contract.wire import common_pb2


class Reassembly:
    """The chunks of one stream, in the order sent; `into` puts them in the Result that follows."""

    def __init__(self) -> None:
        self._video = bytearray()
        self._frames: dict[int, bytearray] = {}

    def add(self, chunk: common_pb2.ResultChunk) -> None:
        part = (
            self._video
            if chunk.WhichOneof("part") == "video"
            else self._frames.setdefault(chunk.frame, bytearray())
        )
        if chunk.offset != len(part):
            raise CallError(
                grpc.StatusCode.DATA_LOSS,
                f"result chunk at offset {chunk.offset}, expected {len(part)}: a piece was lost; retry",
            )
        part += chunk.data

    def into(self, result: common_pb2.Result) -> common_pb2.Result:
        if self._video:
            result.video = bytes(self._video)
        if self._frames:
            result.frames_png.extend(bytes(self._frames[i]) for i in sorted(self._frames))
        return result
