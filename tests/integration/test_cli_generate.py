"""`i2v generate` end to end against a real tiny node."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.node_process import BIN, NodeProcess, free_port, node_env
from tests.media import decode, png

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    cache = tmp_path_factory.getbasetemp() / "i2v-cache"  # shared with the other node tests
    proc = NodeProcess(cache, tmp_path_factory.mktemp("cli") / "node.log", node_id="cli-node")
    try:
        proc.wait_serving()
        yield proc
    finally:
        proc.stop()


def i2v(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "i2v"), *args], capture_output=True, text=True, timeout=180, cwd=cwd, env=node_env(cwd)
    )


def test_generate_writes_mp4(node: NodeProcess, tmp_path: Path) -> None:
    (tmp_path / "in.png").write_bytes(png())
    done = i2v(
        "generate", "in.png", "--prompt", "a gradient", "--frames", "8", "--width", "64", "--height", "64",
        "--steps", "4", "--seed", "5", "--fps", "6", "--node", node.address, "-o", "out/clip.mp4",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert decode((tmp_path / "out" / "clip.mp4").read_bytes()) == (8, 6.0, 64, 64)
    assert "8 frames 64x64 @ 6 fps" in done.stdout
    assert "seed 5" in done.stdout and "profile " in done.stdout
    assert "denoise" in done.stderr  # plain progress lines: stderr is a pipe here


def test_generate_bad_request_exits_nonzero_with_message(node: NodeProcess, tmp_path: Path) -> None:
    (tmp_path / "in.png").write_bytes(png())
    done = i2v(
        "generate",
        "in.png",
        "--prompt",
        "p",
        "--width",
        "60",
        "--node",
        node.address,
        "-o",
        "o.mp4",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: INVALID_ARGUMENT: width")
    assert not (tmp_path / "o.mp4").exists()


def test_generate_unreachable_node(tmp_path: Path) -> None:
    (tmp_path / "in.png").write_bytes(png())
    address = f"127.0.0.1:{free_port()}"
    done = i2v(
        "generate",
        "in.png",
        "--prompt",
        "p",
        "--node",
        address,
        "--timeout",
        "5",
        "-o",
        "o.mp4",
        "-q",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "error: UNAVAILABLE" in done.stderr or "error: DEADLINE_EXCEEDED" in done.stderr


def test_target_flag_at_a_node_says_it_is_one(node: NodeProcess, tmp_path: Path) -> None:
    (tmp_path / "in.png").write_bytes(png())
    for args in (["generate", "in.png", "--prompt", "p", "-o", "o.mp4"], ["status"]):
        done = i2v(*args, "--target", node.address, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"error: {node.address} is a node, not a coordinator")
    assert not (tmp_path / "o.mp4").exists()


def test_a_failed_write_of_a_node_run_keeps_the_video_elsewhere(node: NodeProcess, tmp_path: Path) -> None:
    (tmp_path / "in.png").write_bytes(png())
    done = i2v(
        "generate", "in.png", "--prompt", "p", "--frames", "2", "--width", "64", "--height", "64", "--steps",
        "2", "--node", node.address, "-o", "/dev/full", "-q", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    why, _, saved = done.stderr.strip().partition("; saved it to ")
    assert why == "error: cannot write /dev/full: No space left on device" and saved.endswith(" instead")
    kept = Path(saved.removesuffix(" instead"))
    try:
        assert decode(kept.read_bytes())[0] == 2
    finally:
        kept.unlink()
