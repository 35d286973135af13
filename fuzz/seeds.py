"""Seed corpora for the fuzz targets: small valid images of every accepted format (and one that is
not accepted), and serialized requests that pass every check, so the fuzzer starts deep in the code.
`python fuzz/seeds.py DIR` writes DIR/{image,node,coordinator}/seed-*."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image

from i2v_contract.wire import common_pb2, coordinator_pb2, node_pb2


def images() -> list[bytes]:
    out = []
    picture = Image.new("RGB", (16, 8), (200, 30, 90))
    for fmt in ("PNG", "JPEG", "WEBP", "GIF"):
        buf = io.BytesIO()
        picture.save(buf, format=fmt)
        out.append(buf.getvalue())
    buf = io.BytesIO()
    Image.new("RGBA", (4, 4)).save(buf, format="PNG")
    return [*out, buf.getvalue()]


def requests(image: bytes, root: str) -> tuple[list[bytes], list[bytes]]:
    gen = common_pb2.GenerationRequest(
        image=image, prompt="a cat", width=64, height=64, frames=2, steps=2, seed=1
    )
    nodes = [
        node_pb2.NodeGenerateRequest(request=gen),
        node_pb2.NodeGenerateRequest(
            request=gen,
            job_id="j1",
            attempt=1,
            epoch=1,
            assign_revision=2,
            output_uri=f"{root}/jobs/j1/attempt-1.mp4",
        ),
    ]
    coordinators = [
        b"\x00" + coordinator_pb2.SubmitRequest(request=gen, request_id="r1").SerializeToString(),
        b"\x01" + coordinator_pb2.WatchRequest(job_id="j1").SerializeToString(),
        b"\x02"
        + coordinator_pb2.ListJobsRequest(
            states=[1, 2], limit=5, page_token="WyJvcGVuIiwgIiJd"
        ).SerializeToString(),
        b"\x03" + coordinator_pb2.DownloadRequest(job_id="j1", what=1, offset=3).SerializeToString(),
    ]
    return [n.SerializeToString() for n in nodes], coordinators


def write(out: Path, root: str = "file:///tmp/i2v-fuzz-store") -> None:
    pictures = images()
    nodes, coordinators = requests(pictures[0], root)
    for name, seeds in (("image", pictures), ("node", nodes), ("coordinator", coordinators)):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds):
            (folder / f"seed-{i}").write_bytes(seed)


if __name__ == "__main__":
    write(Path(sys.argv[1]))
