"""The peak-memory model (i2v_contract.memory): estimates for the full-size model, and estimate vs
measured on this CPU.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/memory_model.py [--calibrate] [--repeat N]

(a) the full-size I2VGen-XL at 512/768/1024 x 16 frames for every profile, beside the practitioners'
    reference figures; (b) CPU, fp32: a small real UNet (width 64) and VAE (width 32) built from
    diffusers configs with random weights, each stage run in a fresh subprocess; the peak RSS growth
    of the run (VmHWM after /proc/self/clear_refs reset, minus RSS before) vs the model's transient
    bytes for that stage. --calibrate re-derives the activation coefficients by tracing live tensor
    bytes op by op on the meta device (full-size UNet and VAE, about a minute).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import weakref
from typing import Any, ClassVar

from i2v_contract.memory import CPU_RUNTIME_BYTES, ArchSpec, estimate_bytes, required_bytes, required_tier
from i2v_contract.memory import stage_bytes as model_stages
from i2v_contract.profiles import PROFILES, Offload, Profile
from i2v_contract.tiers import tier_name

# Practitioners' published figures: RTX 4090, DDIM 50 steps, 16 frames (their stack, their settings).
REFERENCE_GB = {512: 13.8, 768: 17.6, 1024: 21.3}
# diffusers' I2VGenXLPipeline defaults: no forward chunking, decode_chunk_size=1.
PIPELINE_DEFAULT = Profile("pipeline_default", False, 1, False, False, Offload.NONE)

SMALL_UNET = {
    "block_out_channels": (64, 128, 128, 128),
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 64,
    "norm_num_groups": 8,
}
SMALL_VAE = {
    "block_out_channels": (32, 64, 64, 64),
    "layers_per_block": 2,
    "norm_num_groups": 8,
    "sample_size": 128,
}
CASES = (  # stage, width, height, frames, profile
    ("denoise", 256, 256, 8, "fast"),
    ("denoise", 192, 192, 4, "chunked"),
    ("decode", 256, 256, 8, "fast"),
    ("decode", 256, 256, 8, "chunked"),
    ("decode", 384, 384, 2, "tiled"),
    ("encode", 384, 384, 1, "fast"),
)


def full_size_table() -> None:
    print("(a) full-size I2VGen-XL, fp16 on an accelerator, 16 frames: estimate GB")
    ladder = (PIPELINE_DEFAULT, *PROFILES)
    print(f"{'profile':>22}" + "".join(f"{s:>10}p" for s in REFERENCE_GB))
    for profile in ladder:
        cells = "".join(f"{estimate_bytes(s, s, 16, profile) / 1e9:>11.2f}" for s in REFERENCE_GB)
        print(f"{profile.name:>22}{cells}")
    print(f"{'reference (RTX 4090)':>22}" + "".join(f"{g:>11.1f}" for g in REFERENCE_GB.values()))
    need = "".join(f"{required_bytes(s, s, 16) / 1e9:>11.2f}" for s in REFERENCE_GB)
    tiers = "".join(f"{tier_name(required_tier(s, s, 16)):>11}" for s in REFERENCE_GB)
    print(f"{'required_bytes':>22}{need}\n{'required_tier':>22}{tiers}")
    for s, ref in REFERENCE_GB.items():
        ours = estimate_bytes(s, s, 16, PIPELINE_DEFAULT) / 1e9
        print(f"  {s}p: reference - pipeline_default = {ref - ours:+.2f} GB")
    print("  reference 512p on 8 GB cards: 7.6-7.8 GB; 3060 12 GB: 11.2 GB; 3090 fp16: 9.8 GB")


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _build(stage: str) -> Any:
    import torch
    from diffusers import AutoencoderKL, I2VGenXLUNet

    torch.manual_seed(0)
    if stage == "denoise":
        unet: Any = I2VGenXLUNet(**SMALL_UNET)
        return unet.eval()
    levels = len(SMALL_VAE["block_out_channels"])  # type: ignore[arg-type]
    vae: Any = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        latent_channels=4,
        **SMALL_VAE,
    )
    return vae.eval()


def _configure(model: Any, stage: str, profile: Profile) -> None:
    if stage == "denoise":
        if profile.forward_chunking:
            model.enable_forward_chunking(1, 1)
    elif profile.vae_tiling:
        model.enable_tiling()


def _run(model: Any, stage: str, w: int, h: int, frames: int, profile: Profile) -> None:
    import torch

    f = 2 ** (len(SMALL_VAE["block_out_channels"]) - 1)  # type: ignore[arg-type]
    if stage == "denoise":
        shape = (2, 4, frames, h // f, w // f)
        ca = int(SMALL_UNET["cross_attention_dim"])  # type: ignore[call-overload]
        model(
            torch.randn(shape),
            torch.tensor(10),
            encoder_hidden_states=torch.randn(2, 77, ca),
            fps=torch.tensor([8, 8]),
            image_latents=torch.randn(shape),
            image_embeddings=torch.randn(2, ca),
            return_dict=False,
        )
    elif stage == "decode":
        chunk = frames if profile.decode_chunk_size == 0 else profile.decode_chunk_size
        z = torch.randn(frames, 4, h // f, w // f)
        video = torch.cat([model.decode(part).sample for part in z.split(chunk)])
        (video / 2 + 0.5).clamp(0, 1).float()
    else:
        model.encode(torch.randn(1, 3, h, w))


def child(stage: str, w: int, h: int, frames: int, profile_name: str) -> None:
    """One measurement in this (fresh) process; prints JSON."""
    import torch

    torch.set_num_threads(2)
    profile = next(p for p in PROFILES if p.name == profile_name)
    model = _build(stage)
    _configure(model, stage, profile)
    with torch.inference_mode():
        _run(model, stage, 64, 64, 2, profile)  # warm-up: kernels, thread pools, allocator
        before = _rss_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset VmHWM to the current RSS
        _run(model, stage, w, h, frames, profile)
    print(json.dumps({"peak_delta": (_rss_kib("VmHWM") - before) * 1024}))


def small_arch() -> ArchSpec:
    """The small model's ArchSpec, read from a real pipeline object as the node does."""
    from diffusers import I2VGenXLPipeline

    class _Stub:  # text and image encoders do not take part in (b)'s stages
        config: ClassVar[dict[str, int]] = {}

        def parameters(self) -> list[Any]:
            return []

        def children(self) -> list[Any]:
            return []

        def modules(self) -> list[Any]:
            return [self]

    pipe = I2VGenXLPipeline.__new__(I2VGenXLPipeline)
    for name, value in (("unet", _build("denoise")), ("vae", _build("decode"))):
        object.__setattr__(pipe, name, value)
    object.__setattr__(pipe, "text_encoder", _Stub())
    object.__setattr__(pipe, "image_encoder", _Stub())
    return ArchSpec.from_pipeline(pipe, "small")


def cpu_measurements(repeat: int) -> None:
    arch = small_arch()
    print(
        f"\n(b) CPU fp32, small model ({arch.unet.params / 1e6:.1f} M UNet, "
        f"{arch.vae.params / 1e6:.1f} M VAE), peak RSS growth of the stage, {repeat} runs each"
    )
    print(
        f"{'stage':>8} {'size':>11} {'profile':>8} {'model MB':>9} {'median MB':>10} "
        f"{'spread MB':>10} {'error':>7}"
    )
    for stage, w, h, frames, name in CASES:
        profile = next(p for p in PROFILES if p.name == name)
        est = CPU_RUNTIME_BYTES + next(
            s.transient
            for s in model_stages(w, h, frames, profile, arch=arch, dtype_bytes=4, accelerator=False)
            if s.stage == stage
        )
        runs = []
        for _ in range(repeat):
            out = subprocess.run(
                [sys.executable, __file__, "--child", stage, str(w), str(h), str(frames), name],
                check=True,
                capture_output=True,
                text=True,
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1])["peak_delta"])
        med = statistics.median(runs)
        print(
            f"{stage:>8} {w}x{h}x{frames:<3} {name:>8} {est / 1e6:>9.1f} {med / 1e6:>10.1f} "
            f"{(max(runs) - min(runs)) / 1e6:>10.1f} {(est - med) / med * 100:>+6.1f}%"
        )


class _PeakTrace:
    """Live tensor bytes, op by op (torch dispatch), for the meta device."""

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}

    def drop(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            del self.refs[key]
            self.live -= self.sizes.pop(key)

    def seen(self, out: Any) -> None:
        import torch
        from torch.utils._pytree import tree_leaves

        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                key = t.untyped_storage()._cdata
                if key not in self.refs:
                    self.refs[key] = 0
                    self.sizes[key] = t.untyped_storage().nbytes()
                    self.live += self.sizes[key]
                    self.peak = max(self.peak, self.live)
                self.refs[key] += 1
                weakref.finalize(t, self.drop, key)


def calibrate() -> None:
    import torch
    import torch.nn.functional as functional
    from diffusers import AutoencoderKL, I2VGenXLUNet
    from torch.utils._python_dispatch import TorchDispatchMode

    trace = _PeakTrace()

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            trace.seen(out)
            return out

    def fused_attention(q: Any, k: Any, v: Any, *args: Any, **kwargs: Any) -> Any:
        return torch.empty((*q.shape[:-1], v.shape[-1]), dtype=q.dtype, device=q.device)

    functional.scaled_dot_product_attention = fused_attention  # type: ignore[assignment]
    dt = torch.float16
    with torch.device("meta"):
        unet: Any = I2VGenXLUNet().to(dt)  # type: ignore[attr-defined]
        vae: Any = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            sample_size=768,
        ).to(dt)  # type: ignore[attr-defined]
    print("\n(calibrate) meta-device traces, fp16, base-channel units per token / pixel")
    for chunked in (False, True):
        if chunked:
            unet.enable_forward_chunking(1, 1)
        with torch.device("meta"):
            s = torch.empty(2, 4, 16, 32, 32, dtype=dt)
            ctx = torch.empty(2, 77, 1024, dtype=dt)
        trace.peak = trace.live = 0
        with torch.inference_mode(), Mode():
            unet(
                s,
                torch.tensor(10),
                encoder_hidden_states=ctx,
                fps=torch.tensor([8, 8]),
                image_latents=s,
                image_embeddings=ctx[:, 0],
                return_dict=False,
            )
        print(f"  UNet 256x256x16 chunked={chunked}: {trace.peak / (s.numel() // 4 * 320 * 2):.2f}")
    with torch.device("meta"):
        z = torch.empty(1, 4, 64, 64, dtype=dt)
    trace.peak = trace.live = 0
    with torch.inference_mode(), Mode():
        vae.decode(z)
    print(f"  VAE decode 512x512: {trace.peak / (512 * 512 * 128 * 2):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        stage, w, h, frames, name = args.child
        child(stage, int(w), int(h), int(frames), name)
        return
    full_size_table()
    cpu_measurements(args.repeat)
    if args.calibrate:
        calibrate()


if __name__ == "__main__":
    main()
