"""`i2v`: the command line client.

    i2v generate IMAGE --prompt TEXT [--frames N --width W --height H --steps S --seed X --fps F]
                 --node HOST:PORT -o OUT.mp4

Subcommands share a parser per concern, so coordinator targets (`--target ADDR[,ADDR]`) and more
subcommands (status, jobs, cancel) slot in beside `--node`. Exit status: 0 done, 1 the server
refused or failed (the message is `error: CODE: message`), 2 bad local usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from i2v_contract.client import CallError, Generator, NodeClient, build_request
from i2v_contract.progress import ProgressDisplay, mode_for
from i2v_contract.v1 import common_pb2

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="i2v", description="Image-to-video generation on an i2v cluster.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    target = argparse.ArgumentParser(add_help=False)
    where = target.add_argument_group("where to run")
    where.add_argument("--node", metavar="HOST:PORT", required=True, help="call this node directly")
    where.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="deadline for the call, seconds"
    )

    gen = sub.add_parser(
        "generate",
        parents=[target],
        help="turn an image and a prompt into an MP4",
        description="Turn an image and a prompt into an MP4. Zero/omitted sizes use the server's defaults.",
    )
    gen.add_argument("image", type=Path, help="input image (PNG, JPEG or WebP)")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--negative-prompt", default="")
    gen.add_argument("--width", type=_non_negative_int, default=0, help="pixels, multiple of 8")
    gen.add_argument("--height", type=_non_negative_int, default=0, help="pixels, multiple of 8")
    gen.add_argument("--frames", type=_non_negative_int, default=0)
    gen.add_argument("--fps", type=_non_negative_int, default=0)
    gen.add_argument("--steps", type=_non_negative_int, default=0, help="denoising steps")
    gen.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance scale")
    gen.add_argument("--seed", type=_non_negative_int, default=None, help="default: random (printed)")
    gen.add_argument("--model", default="", help="model the server must serve (default: any)")
    gen.add_argument(
        "--allow-degrade",
        action="store_true",
        help="let the server lower resolution/frames/steps to fit memory",
    )
    gen.add_argument("--frames-dir", type=Path, default=None, help="also write every frame as PNG here")
    gen.add_argument("-o", "--output", type=Path, required=True, help="where to write the MP4")
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    gen.set_defaults(run=cmd_generate)
    return parser


def connect(args: argparse.Namespace) -> Generator:
    return NodeClient(args.node)


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def summary(result: common_pb2.Result, output: Path, wall_s: float) -> str:
    t = result.timings
    lines = [
        f"wrote {output}: {result.frames} frames {result.width}x{result.height} @ {result.fps} fps, "
        f"{len(result.video)} bytes",
        f"seed {result.seed}, {result.steps} steps, profile {result.profile}, peak {_mib(result.peak_bytes)}"
        + (f", tier {result.metadata['tier']}" if "tier" in result.metadata else ""),
        f"time: total {t.total_s:.2f}s on the node (encode {t.encode_s:.2f}, denoise {t.denoise_s:.2f}, "
        f"decode {t.decode_s:.2f}, video {t.video_s:.2f}); {wall_s:.2f}s here",
    ]
    if result.degradations:
        lines.append("degraded: " + ", ".join(result.degradations))
    return "\n".join(lines)


def cmd_generate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        image = args.image.read_bytes()
    except OSError as exc:
        err.write(f"error: cannot read image {args.image}: {exc.strerror}\n")
        return EXIT_USAGE
    request = build_request(
        image,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        width=args.width,
        height=args.height,
        frames=args.frames,
        fps=args.fps,
        steps=args.steps,
        guidance_scale=args.guidance,
        seed=args.seed,
        allow_degrade=args.allow_degrade,
        model=args.model,
        return_frames=args.frames_dir is not None,
    )
    display = ProgressDisplay(err, mode_for(err, args.quiet))
    client = connect(args)
    started = time.monotonic()
    call = client.generate(request, timeout=args.timeout)
    try:
        result = call.wait(display.update)
    except CallError as exc:
        display.close()
        err.write(f"error: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        call.cancel()
        display.close()
        err.write("interrupted: the job was cancelled\n")
        return EXIT_INTERRUPTED
    finally:
        client.close()
    display.close()
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(result.video)
        if args.frames_dir is not None:
            args.frames_dir.mkdir(parents=True, exist_ok=True)
            for i, png in enumerate(result.frames_png):
                (args.frames_dir / f"frame_{i:04d}.png").write_bytes(png)
    except OSError as exc:
        err.write(f"error: cannot write output: {exc}\n")
        return EXIT_USAGE
    out.write(summary(result, args.output, time.monotonic() - started) + "\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args, sys.stdout, sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
