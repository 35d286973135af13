"""Hypothesis strategies for hostile requests: ids, URIs and text that try to escape, overflow or
confuse (traversal, NUL and control characters, bidi overrides, megabytes), numbers at and past every
edge, and images that are not images. Valid values are mixed in, so requests that pass one check
reach the next."""

from __future__ import annotations

import base64
import math
from typing import Any

from hypothesis import strategies as st

from i2v_contract.ids import JOB_ID_MAX_CHARS
from i2v_contract.limits import DEFAULT_LIMITS as L
from i2v_contract.wire import common_pb2, coordinator_pb2, node_pb2
from tests.media import png, png_claiming

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1
INT64 = (-(2**63), 2**63 - 1)

# Proto strings are UTF-8: lone surrogates cannot be sent as str (the raw-bytes tests send them).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=64)
NASTY = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\n",
    "line\r\nInjected: log",
    "\x1b[31mred",
    "\u202egnp.exe",
    "\ufeff",
    "\U0001f600" * 8,
    "..",
    ".",
    "../..",
    "../../../etc/passwd",
    "/etc/passwd",
    "a/b",
    "a\\b",
    "%2e%2e%2f",
    "${jndi:ldap://x}",
    "'; DROP TABLE jobs; --",
    "<script>",
    "job-1",
    "job.1_ok",
    "-leading-dash",
    "x" * JOB_ID_MAX_CHARS,
    "x" * (JOB_ID_MAX_CHARS + 1),
    "x" * 10_000,
    "\u0130" * 200,
]
HOSTILE_TEXT = st.one_of(st.sampled_from(NASTY), TEXT)
HUGE_TEXT = st.sampled_from(
    ["p" * (L.max_prompt_chars + 1), "\U0001f600" * L.max_prompt_chars, "q" * 300_000]
)


def uint32() -> st.SearchStrategy[int]:
    edges = [0, 1, 7, 8, 63, 64, 65, 512, 1280, 1281, 1288, 2**16, 2**31 - 1, 2**31, UINT32_MAX]
    return st.one_of(st.sampled_from(edges), st.integers(0, UINT32_MAX))


def small_or_edge(valid_max: int) -> st.SearchStrategy[int]:
    """Mostly in 0..valid_max (so other fields get checked), sometimes at a uint32 edge."""
    return st.one_of(st.integers(0, valid_max), uint32())


FLOATS = st.one_of(
    st.sampled_from(
        [0.0, -0.0, 1.0, 0.999, 30.0, 30.001, -1.0, math.nan, math.inf, -math.inf, 3.4e38, 1e-45]
    ),
    st.floats(width=32),
)


def images() -> st.SearchStrategy[bytes]:
    good = png(16, 16)
    return st.one_of(
        st.just(good),
        st.just(b""),
        st.binary(max_size=256),
        st.just(good[:40]),
        st.just(good[:-12]),
        st.just(png_claiming(100_000, 100_000)),
        st.just(png_claiming(L.max_image_pixels + 1, 1)),
        st.just(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64),
        st.just(b"RIFF\x00\x00\x00\x00WEBPVP8 "),
        st.just(b"\xff\xd8\xff\xe0" + b"\x00" * 32),
        st.just(b"GIF89a" + b"\x00" * 32),
        st.binary(min_size=1, max_size=64).map(lambda tail: good[:60] + tail),
    )


def uris(root: str) -> st.SearchStrategy[str]:
    """Artifact URIs: inside the store, traversing out of it, in other stores, malformed."""
    inside = ["jobs/j1/attempt-1.mp4", "jobs/j1/input.png", "x"]
    escapes = [
        "../../../tmp/x",
        "jobs/../../x",
        "jobs/j1/a/b/c/d.mp4",
        "jobs//x",
        "./x",
        "jobs/%2e%2e/x",
        "jobs/j1/x\x00.mp4",
        "jobs/j1/" + "x" * 200,
        "jobs/j1/.x",
        "jobs/j1/x y",
        "jobs/j1/x?y=../..",
        "jobs/j1/x#../../etc",
        "",
        "/",
        "\\..\\..\\x",
    ]
    others = [
        "file:///etc/passwd",
        "file:///tmp/x.mp4",
        "s3://bucket/x.mp4",
        "http://169.254.169.254/x",
        "memory://x",
        "",
        "relative/x.mp4",
        "\x00",
        root,
        root + "x/y.mp4",
        "file://" + "a" * 5000,
    ]
    return st.one_of(
        st.sampled_from(inside + escapes).map(lambda name: f"{root}/{name}"),
        st.sampled_from(others),
        HOSTILE_TEXT.map(lambda tail: f"{root}/{tail}"),
    )


@st.composite
def generation_requests(draw: st.DrawFn, root: str) -> common_pb2.GenerationRequest:
    fields: dict[str, Any] = {
        "image": draw(images()),
        "prompt": draw(st.one_of(HOSTILE_TEXT, HUGE_TEXT)),
        "negative_prompt": draw(HOSTILE_TEXT),
        "width": draw(small_or_edge(L.max_width)),
        "height": draw(small_or_edge(L.max_height)),
        "frames": draw(small_or_edge(L.max_frames)),
        "fps": draw(small_or_edge(L.max_fps)),
        "steps": draw(small_or_edge(L.max_steps)),
        "guidance_scale": draw(FLOATS),
        "allow_degrade": draw(st.booleans()),
        "return_frames": draw(st.booleans()),
        "model": draw(st.one_of(st.just(""), st.just("tiny"), HOSTILE_TEXT)),
    }
    if draw(st.booleans()):
        fields["seed"] = draw(
            st.one_of(st.sampled_from([0, 2**63 - 1, 2**63, UINT64_MAX]), st.integers(0, UINT64_MAX))
        )
    if draw(st.integers(0, 3)) == 0:
        fields["image_uri"] = draw(uris(root))
    return common_pb2.GenerationRequest(**fields)


@st.composite
def node_requests(draw: st.DrawFn, root: str) -> node_pb2.NodeGenerateRequest:
    request = node_pb2.NodeGenerateRequest(request=draw(generation_requests(root)))
    if draw(st.booleans()):  # a dispatch: a job id and its fencing values
        request.job_id = draw(HOSTILE_TEXT)
        request.attempt = draw(uint32())
        request.epoch = draw(st.one_of(st.sampled_from([0, -1, 1, *INT64]), st.integers(*INT64)))
        request.assign_revision = draw(st.one_of(st.sampled_from([0, -1, 1, *INT64]), st.integers(*INT64)))
    if draw(st.booleans()):
        request.output_uri = draw(uris(root))
    return request


@st.composite
def submits(draw: st.DrawFn, root: str) -> coordinator_pb2.SubmitRequest:
    request_id = draw(st.one_of(HOSTILE_TEXT, st.uuids().map(lambda u: u.hex)))
    return coordinator_pb2.SubmitRequest(request=draw(generation_requests(root)), request_id=request_id)


def job_ids() -> st.SearchStrategy[str]:
    return st.one_of(HOSTILE_TEXT, st.uuids().map(lambda u: u.hex))


def page_tokens() -> st.SearchStrategy[str]:
    """Garbage, and base64 of JSON that is almost a token, or nested past the parser's recursion limit."""
    shapes = [b'["open"]', b'{"open": 1, "x": 2}', b'["history", "/etc/passwd"]', b'["open", 1]', b"[" * 5000]
    return st.one_of(
        HOSTILE_TEXT,
        st.sampled_from(shapes).map(lambda raw: base64.urlsafe_b64encode(raw).decode()),
        st.binary(max_size=64).map(lambda raw: base64.urlsafe_b64encode(raw).decode()),
    )
