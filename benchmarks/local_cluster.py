"""What `i2v up` costs: time to the first video cold (an empty model cache, so every node builds the
tiny model) and warm (the cache the cold run filled), then the whole local cluster's idle CPU and
resident memory, per process and in total.

Run from the repository root (PYTHONPATH naming the tree, as for the tests):
    python benchmarks/local_cluster.py [--warm-runs 2] [--idle-s 10] [--settle-s 5] [-- UP_ARGS...]

Each run is the real console script (`i2v` beside this Python): `i2v up --detach` in a fresh
state dir, timed from start to exit (Python start-up, the CUDA probe, every process's start, the
leader election, the nodes' model load and the first video), then `i2v down`. After the last warm
run the cluster is left idle for --settle-s, then each recorded process's CPU time is read from
/proc/PID/stat twice, --idle-s apart (% of one core), and its VmRSS from /proc/PID/status. The
output holds no machine paths.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from i2v_client.local import procinfo, state
from i2v_client.local.state import Record

BIN = Path(sys.executable).parent
MIB = 1024 * 1024


def i2v(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "i2v"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def up(env: dict[str, str], root: Path, extra: list[str]) -> tuple[float, Record]:
    began = time.monotonic()
    done = i2v(env, "up", "--detach", "--state-dir", str(root), *extra)
    took = time.monotonic() - began
    record = state.read(root)
    if done.returncode != 0 or record is None:
        i2v(env, "down", "--state-dir", str(root))
        sys.exit(f"i2v up failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return took, record


def down(env: dict[str, str], root: Path) -> None:
    done = i2v(env, "down", "--state-dir", str(root), timeout=300)
    if done.returncode != 0:
        sys.exit(f"i2v down failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def idle(record: Record, seconds: float) -> list[tuple[str, str, float, int]]:
    """(name, kind, CPU % of one core over `seconds`, RSS bytes) per recorded process."""
    before = {p.pid: procinfo.read_stat(p.pid) for p in record.procs}
    time.sleep(seconds)
    rows = []
    for p in record.procs:
        first, last = before[p.pid], procinfo.read_stat(p.pid)
        if first is None or last is None or not last.running:
            rows.append((p.name, p.kind, float("nan"), 0))
            continue
        cpu = (last.cpu_ticks - first.cpu_ticks) / procinfo.CLOCK_TICKS / seconds * 100
        rows.append((p.name, p.kind, cpu, procinfo.rss_bytes(p.pid)))
    return rows


def line(label: str, took: float, record: Record) -> str:
    t = record.timings
    return (
        f"{label:<6} i2v up --detach {took:6.1f} s  (cluster ready {t.get('ready_s', 0):5.1f} s, "
        f"first video {t.get('first_video_s', 0):4.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-runs", type=int, default=2)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("up_args", nargs="*", help="passed to i2v up (after --)")
    args = parser.parse_args()
    if args.warm_runs < 1:
        parser.error("--warm-runs must be at least 1: the idle figures are taken from the last warm run")
    with tempfile.TemporaryDirectory(prefix="i2v-bench-up-") as tmp:
        base = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k not in ("I2V_STATE_DIR", "I2V_TARGETS")}
        env.update({"I2V_CACHE_DIR": str(base / "cache"), "HF_HUB_OFFLINE": "1"})
        print(f"i2v up on {os.cpu_count()} CPU cores; extra flags: {' '.join(args.up_args) or 'none'}")
        took, record = up(env, base / "cold", args.up_args)
        down(env, base / "cold")
        print(line("cold", took, record), f"  [{record.model} model, {len(record.procs)} processes]")
        warm = []
        for i in range(args.warm_runs):
            took, record = up(env, base / f"warm{i}", args.up_args)
            warm.append(took)
            print(line("warm", took, record))
            if i < args.warm_runs - 1:
                down(env, base / f"warm{i}")
        if warm:
            print(f"warm median {statistics.median(warm):.1f} s over {len(warm)} run(s)")
        time.sleep(args.settle_s)
        rows = idle(record, args.idle_s)
        down(env, base / f"warm{args.warm_runs - 1}")
    print(f"\nidle, {args.settle_s:g} s after the first video, over {args.idle_s:g} s:")
    print(f"  {'process':<12}{'kind':<13}{'CPU %':>7}{'RSS MiB':>10}")
    for name, kind, cpu, rss in rows:
        print(f"  {name:<12}{kind:<13}{cpu:7.1f}{rss / MIB:10.0f}")
    total_cpu = sum(r[2] for r in rows if r[2] == r[2])
    print(f"  {'total':<25}{total_cpu:7.1f}{sum(r[3] for r in rows) / MIB:10.0f}")


if __name__ == "__main__":
    main()
