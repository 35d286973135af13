"""Service overhead of the node: the same tiny job through the bare engine and through the service.

Run from the repository root:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/service_overhead.py [--reps 7]

Per repetition, interleaved so drift hits all three alike:
  bare   Engine.run in this process (the pipeline call with its progress hook), no video encoding
  rpc    Node.Generate against a running `i2v-node --model tiny`, timed in this process: gRPC,
         validation, image decode, profile choice, the engine, MP4 encoding, the result message
  cli    the whole `i2v generate` command (Python start-up, reading/writing files) as a user sees it
The ratio rpc/bare is the in-process overhead (goal <= 1.05). Cold start (node start to SERVING,
and the engine's own load time) is reported apart.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image

from i2v_client import NodeClient, build_request
from i2v_node.config import default_cache_dir
from i2v_node.engine import Engine, EngineConfig
from i2v_node.job import JobSpec
from tests.integration.node_process import BIN, NodeProcess, node_env
from tests.media import png as gradient_png

WIDTH = HEIGHT = 64
FRAMES, STEPS, FPS, SEED = 8, 10, 8, 1234
PROMPT = "a gradient slowly rotating"


def spread(values: list[float]) -> str:
    med = statistics.median(values)
    return f"median {med:7.3f} s  min {min(values):7.3f}  max {max(values):7.3f}  (n={len(values)})"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    args = parser.parse_args()
    png = gradient_png(WIDTH, HEIGHT)

    with tempfile.TemporaryDirectory() as tmp_text:
        tmp = Path(tmp_text)
        (tmp / "in.png").write_bytes(png)
        started = time.monotonic()
        node = NodeProcess(args.cache_dir, tmp / "node.log", node_id="bench")
        try:
            node.wait_serving(180)
            node_cold = time.monotonic() - started
            engine = Engine.load(
                EngineConfig(
                    model="tiny",
                    device="cpu",
                    dtype=None,
                    cache_dir=args.cache_dir,
                    offline=True,
                    fault_plan=None,
                )
            )
            spec = JobSpec(
                image=Image.open(io.BytesIO(png)).convert("RGB"),
                prompt=PROMPT,
                negative_prompt="",
                width=WIDTH,
                height=HEIGHT,
                frames=FRAMES,
                fps=FPS,
                steps=STEPS,
                guidance_scale=9.0,
                seed=SEED,
            )
            profile = engine.ladder[0]
            request = build_request(
                png, prompt=PROMPT, width=WIDTH, height=HEIGHT, frames=FRAMES, fps=FPS, steps=STEPS,
                guidance_scale=9.0, seed=SEED,
            )  # fmt: skip
            cli_args = [str(BIN / "i2v"), "generate", "in.png", "--prompt", PROMPT, "--frames", str(FRAMES)]
            cli_args += [
                "--width",
                str(WIDTH),
                "--height",
                str(HEIGHT),
                "--steps",
                str(STEPS),
                "--seed",
                str(SEED),
            ]
            cli_args += ["--fps", str(FPS), "--guidance", "9", "--node", node.address, "-o", "out.mp4", "-q"]

            # one warm-up of each path (first-call allocations, codec init)
            engine.run(spec, profile, lambda e: None, threading.Event())
            with NodeClient(node.address) as client:
                client.generate(request, timeout=300).wait()

            bare, rpc, in_node, cli = [], [], [], []
            with NodeClient(node.address) as client:
                for _ in range(args.reps):
                    t = time.perf_counter()
                    engine.run(spec, profile, lambda e: None, threading.Event())
                    bare.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    result = client.generate(request, timeout=300).wait()
                    rpc.append(time.perf_counter() - t)
                    in_node.append(result.timings.total_s)
                    t = time.perf_counter()
                    subprocess.run(
                        cli_args, cwd=tmp, check=True, env=node_env(args.cache_dir), capture_output=True
                    )
                    cli.append(time.perf_counter() - t)
        finally:
            node.stop()

    ratio = statistics.median(rpc) / statistics.median(bare)
    print(f"job: {WIDTH}x{HEIGHT}, {FRAMES} frames, {STEPS} steps, tiny model, cpu, profile {profile.name}")
    print(f"bare engine.run            {spread(bare)}")
    print(f"Node.Generate (client)     {spread(rpc)}")
    print(f"  of which in the node     {spread(in_node)}")
    print(f"i2v generate (whole CLI)   {spread(cli)}")
    print(f"in-process overhead ratio  {ratio:.3f}  (goal <= 1.05; rpc / bare, medians)")
    print(f"in-node ratio              {statistics.median(in_node) / statistics.median(bare):.3f}")
    # On a shared machine the median carries other processes' load; the fastest run of each path is
    # the closest to the code's own cost.
    print(f"in-process ratio, best-of  {min(rpc) / min(bare):.3f}  (rpc min / bare min)")
    print(
        f"CLI / bare                 {statistics.median(cli) / statistics.median(bare):.3f}"
        "  (incl. Python start-up)"
    )
    print(
        f"cold start: node start to SERVING {node_cold:.2f} s; "
        f"engine load in-process {engine.load_seconds:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
