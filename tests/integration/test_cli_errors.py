"""The real `i2v` command against addresses where no i2v server is: it says so at once, and Ctrl-C
while it is still trying says that nothing was submitted."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.etcd_cluster import free_port
from tests.integration.node_process import BIN, node_env
from tests.media import png

pytestmark = pytest.mark.integration


CONNECTED = threading.Event()  # set once the silent port has accepted a connection


@pytest.fixture
def silent() -> Iterator[str]:
    """A port that accepts connections and never answers (a frozen process, the wrong service)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    CONNECTED.clear()

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept()[0])
                CONNECTED.set()

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for conn in held:
        conn.close()


def i2v(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = node_env(cwd)
    env.pop("I2V_TARGETS", None)
    return subprocess.Popen(
        [str(BIN / "i2v"), *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_silent_address_is_left_after_the_connect_timeout_naming_it(silent: str, tmp_path: Path) -> None:
    started = time.monotonic()
    done = i2v("jobs", "--target", silent, cwd=tmp_path)
    _, err = done.communicate(timeout=30)
    took = time.monotonic() - started
    assert done.returncode == 1 and took < 5.0, (took, err)
    assert err == (
        f"error: UNAVAILABLE: list jobs: cannot reach any coordinator: {silent} accepted no gRPC "
        "connection within 2 s\n"
    )


def test_ctrl_c_before_any_coordinator_answered_cancels_nothing_and_says_so(
    silent: str, tmp_path: Path
) -> None:
    (tmp_path / "in.png").write_bytes(png())
    refused = f"127.0.0.1:{free_port()}"
    running = i2v("generate", "in.png", "--prompt", "p", "--target", f"{silent},{refused}", "-o", "o.mp4",
                  cwd=tmp_path)  # fmt: skip
    # The client is up and waits on the silent address (however slow this machine starts Python).
    assert CONNECTED.wait(timeout=20), "the client never dialled the silent address"
    interrupted = time.monotonic()
    running.send_signal(signal.SIGINT)
    _, err = running.communicate(timeout=30)
    assert running.returncode == 130 and time.monotonic() - interrupted < 1.0, err
    assert err.splitlines()[-1] == "interrupted before any coordinator was reached: no job was submitted"
