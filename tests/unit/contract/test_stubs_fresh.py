"""The committed protobuf stubs must be what scripts/gen_proto.sh makes from the .proto sources."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_generated_stubs_match_proto_sources():
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_proto.sh"), "--check"],
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "generated stubs are fresh" in done.stdout
