"""scripts/check_proto.sh with the real buf (skipped when `npm ci` has not installed it): the protos
pass lint, and the breaking check against the previous commit refuses what breaks the binary wire
or protobuf's JSON mapping (results/ records in etcd are Result in JSON) and lets the rest pass."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"
CHECK = ROOT / "scripts" / "check_proto.sh"
PROTOS = ROOT / "proto" / "i2v_proto" / "v1"


@pytest.fixture(scope="module", autouse=True)
def _buf() -> None:
    if not BUF.exists():
        pytest.skip("buf is not installed: run `npm ci` in the repository root")


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env={**os.environ, "BUF": str(BUF), **(env or {})}, capture_output=True, text=True
    )


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding this checkout's protos, buf.yaml and check script, in one commit."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(CHECK, tmp_path / "scripts")
    shutil.copy(ROOT / "buf.yaml", tmp_path)
    protos = tmp_path / "proto" / "i2v_proto" / "v1"
    protos.mkdir(parents=True)
    for source in PROTOS.glob("*.proto"):
        shutil.copy(source, protos)
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "contract")
    return tmp_path


def test_the_protos_pass_lint() -> None:
    done = _run(str(CHECK), "lint", cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_without_an_earlier_commit_breaking_is_skipped_saying_so(repo: Path) -> None:
    done = _run("scripts/check_proto.sh", "breaking", cwd=repo)
    assert done.returncode == 0 and "breaking skipped: no earlier commit" in done.stderr


@pytest.mark.parametrize(
    ("file", "old", "new", "passes"),
    [
        pytest.param(
            "common",
            "  bool return_frames = 14;\n",
            "  bool return_frames = 14;\n  string note = 17;\n",
            True,
            id="a-new-field",
        ),
        pytest.param(
            "common", "STAGE_RETRY = 9;", "STAGE_RETRYING = 9;", True, id="an-enum-value-renamed-same-number"
        ),
        pytest.param(
            "common",
            'option java_package = "i2vcluster.i2v.v1";',
            'option java_package = "com.example.i2v.v1";',
            True,
            id="a-file-option",
        ),
        pytest.param(
            "common",
            "  bool return_frames = 14;\n",
            '  reserved 14;\n  reserved "return_frames";\n',
            True,
            id="a-field-removed-and-reserved",
        ),
        pytest.param("common", "  bool return_frames = 14;\n", "", False, id="a-field-removed-unreserved"),
        pytest.param("common", "string prompt = 3;", "string prompt = 30;", False, id="a-field-renumbered"),
        pytest.param(
            "common", "string sha256 = 14;", "string digest = 14;", False, id="a-result-field-renamed"
        ),
        pytest.param("common", "uint32 frames = 7;", "int64 frames = 7;", False, id="a-field-retyped"),
        pytest.param(
            "coordinator",
            "JOB_STATE_FAILED = 5;",
            "JOB_STATE_FAILED = 7;",
            False,
            id="an-enum-value-renumbered",
        ),
    ],
)
def test_breaking_refuses_what_breaks_the_wire_or_json(
    repo: Path, file: str, old: str, new: str, passes: bool
) -> None:
    path = repo / "proto" / "i2v_proto" / "v1" / f"{file}.proto"
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    _git(repo, "commit", "-q", "-am", "change")
    done = _run("scripts/check_proto.sh", "breaking", cwd=repo)
    assert (done.returncode == 0) == passes, done.stdout + done.stderr
    assert "breaking changes against" in done.stderr  # HEAD~1, the commit before the change
