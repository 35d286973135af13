"""Peak-memory model: bytes a job needs for a resolution, frame count and optimisation profile.

The peak is the largest of three stages, each = weights resident during the stage + that stage's
transient tensors; on an accelerator a fixed runtime cost (CUDA context) and an allocator allowance
are added.

- encode: CLIP text and image encoders (fixed-size inputs) and the VAE encoding the input image.
- denoise: the UNet on a batch of 2 (classifier-free guidance; I2VGen-XL's default guidance is 9)
  x frames latents of (height/f) x (width/f), f = VAE scale factor.
- decode: the VAE decoder on `decode_chunk_size` frames at a time (1 with slicing), each at most a
  VAE tile in extent when tiling is on, plus the decoded video held while it is post-processed.

Where the numbers come from:
- Parameter counts and group sizes of the full-size model: the public ali-vilab/i2vgen-xl component
  configs, built with random weights on torch's `meta` device (UNet 1.42 B, image encoder 0.63 B,
  text encoder 0.35 B, VAE 0.08 B: 4.98 GB in fp16).
- Activation coefficients: peak live tensor bytes of real forward passes, traced op by op on the
  `meta` device for the full-size model and for small configs (`benchmarks/memory_model.py
  --calibrate` reproduces them). Attention is traced as a fused kernel (memory of its output only),
  which is what SDPA's flash / memory-efficient kernels do on CUDA and CPU.
- The CUDA context and allocator allowance are not measurable without a GPU: they are typical
  values, stated below, until `contract/i2v_contract/gpu_memory.json` exists; then the figures
  measured there by `scripts/gpu_check.sh` replace them (`RUNTIME_COSTS`, see measured.py).
  `SAFETY_MARGIN` covers the rest.

Compared with the practitioners' published figures (benchmarks/memory_model.py prints both):
with diffusers' own defaults (no forward chunking, decode_chunk_size=1) the model gives 8.6 GB at
512x512x16, against 7.6-7.8 GB seen on 8 GB cards; their RTX 4090 figures (13.8 / 17.6 / 21.3 GB)
sit 5.2 / 5.1 / 3.4 GB above ours, a near-constant offset that does not grow with the job (a fixed
cost of their stack, or the caching allocator keeping what a 24 GB card lets it keep). Their growth
from 512 to 1024 is +7.5 GB, ours +9.3 GB: the model errs high on large jobs, the safe side.

Torch is not imported here: the contract stays importable without it. `ArchSpec.from_pipeline`
reads a loaded pipeline duck-typed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from i2v_contract import measured
from i2v_contract.measured import RuntimeCosts
from i2v_contract.profiles import PROFILES, Offload, Profile
from i2v_contract.tiers import tier_for_free_bytes

# choose_profile keeps this fraction of headroom over the estimate: the allocator's block
# rounding and kernel workspaces (cuDNN convolution workspaces can reach hundreds of MB) vary
# with the card and library versions, and the practitioners' 1024p run OOMed 1 time in 3 at a
# peak of 21.3 GB on a 24 GB card, i.e. real peaks wander by about 10 %.
SAFETY_MARGIN = 0.10

# CUDA context + torch kernels resident on the device before any tensor (lazy module loading,
# CUDA 12): typically 0.3-0.6 GB on Ampere/Ada; the upper end is taken.
CUDA_CONTEXT_BYTES = 512 * 1024**2

# The caching allocator reserves more than the live tensors (2 MiB / 20 MiB segment rounding,
# fragmentation between differently sized per-block tensors): allowance on transient bytes.
ALLOCATOR_OVERHEAD = 0.10

ASSUMED_COSTS = RuntimeCosts(CUDA_CONTEXT_BYTES, ALLOCATOR_OVERHEAD)
# What accelerator estimates add: measured (gpu_memory.json beside this module) when present.
RUNTIME_COSTS = measured.runtime_costs(ASSUMED_COSTS)

# UNet transient bytes per latent token (batch x frames x h x w) = a x base_channels + b,
# times dtype bytes. Fitted to meta-device traces of the full-size UNet (base 320 channels:
# 33.5 / 15.9 base-channel units per token at 256x256x16) and a (32, 64, 64, 64) UNet
# (41.4 / 19.4 units): two configs, two unknowns per mode. At 1024x1024x16 the full-size trace
# gives 33.05 units, the fit 33.5: the fit errs high by 1.4 %. `b` is the work on the
# fixed-width image-latent path, which does not scale with the base width.
UNET_A, UNET_B = 32.63, 280.6
# With feed-forward chunking the GEGLU intermediates (12 x width per token) disappear.
UNET_A_CHUNKED, UNET_B_CHUNKED = 15.52, 124.1
# Latent-sized tensors held by the denoising loop (latents, CFG input, image latents, noise
# prediction and its halves, scheduler temporaries): copies of batch-1 4-channel latents.
LATENT_COPIES = 8

# VAE transient bytes per decoded pixel = 4 x c0 + c1 (c0, c1: the decoder's two highest-res
# widths; the up-sampler feeding full resolution emits c1 channels). Traces: (128, 256, ...) gives
# 6.00 x c0, (32, 32, 64, 64) 5.00 x c0, (32, 64) 6.03 x c0.
VAE_DECODE_C0, VAE_DECODE_C1 = 4.0, 1.0
# VAE encoder transient bytes per input pixel = (3 + layers_per_block) x c0. Traces: 5.00 x c0 for
# 2 layers per block, 4.00 x c0 for 1.
VAE_ENCODE_BASE = 3.0
# Decoded video held while post-processing: the decoder output, the concatenated video and the
# rescaled copy, 3 channels each.
VIDEO_COPIES = 3

# CLIP text (2 x 77 tokens) and image (257 patches) encoder transients: 10.7 / 8.2 MB traced at
# fp16 for the full-size encoders; rounded up, per dtype byte.
ENCODER_TRANSIENT_PER_DTYPE_BYTE = 8 * 1024**2

# Off an accelerator, a stage's peak RSS growth exceeds its live tensors by allocator and oneDNN
# scratch: the median residual of benchmarks/memory_model.py (b) over six small fp32 stage runs
# on CPU was 44 MB (range -19..61 MB).
CPU_RUNTIME_BYTES = 48 * 1024**2

# Group offload keeps the group in use plus the one being prefetched on a side stream.
PREFETCH_GROUPS = 2


@dataclass(frozen=True)
class ComponentSize:
    """Parameter counts of one pipeline component, as the offload modes move it."""

    params: int
    block_params: int  # largest group at block level: a ModuleList entry, or the other children
    leaf_params: int  # largest module without children


@dataclass(frozen=True)
class ArchSpec:
    name: str
    unet: ComponentSize
    text_encoder: ComponentSize
    image_encoder: ComponentSize
    vae: ComponentSize
    unet_channels: int  # UNet block_out_channels[0]
    vae_channels: tuple[int, int]  # VAE decoder widths at full and half resolution
    vae_layers_per_block: int
    vae_scale_factor: int  # pixels per latent cell along each axis
    vae_tile: int  # pixels: spatial extent of one VAE tile when tiling is on

    @property
    def total_params(self) -> int:
        return sum(c.params for c in self.components)

    @property
    def components(self) -> tuple[ComponentSize, ...]:
        return (self.unet, self.text_encoder, self.image_encoder, self.vae)

    @classmethod
    def from_configs(
        cls,
        name: str,
        *,
        unet_config: Mapping[str, Any],
        vae_config: Mapping[str, Any],
        unet: ComponentSize,
        text_encoder: ComponentSize,
        image_encoder: ComponentSize,
        vae: ComponentSize,
        vae_tile: int | None = None,
    ) -> ArchSpec:
        """Widths from diffusers component configs (`unet.config`, `vae.config`) plus sizes."""
        vae_widths = tuple(int(c) for c in vae_config["block_out_channels"])
        half_res = vae_widths[1] if len(vae_widths) > 1 else vae_widths[0]
        tile = vae_tile if vae_tile is not None else int(vae_config.get("sample_size") or 512)
        return cls(
            name=name,
            unet=unet,
            text_encoder=text_encoder,
            image_encoder=image_encoder,
            vae=vae,
            unet_channels=int(unet_config["block_out_channels"][0]),
            vae_channels=(vae_widths[0], half_res),
            vae_layers_per_block=int(vae_config.get("layers_per_block", 1)),
            vae_scale_factor=2 ** (len(vae_widths) - 1),
            vae_tile=tile,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (nodes publish it so the coordinator can size jobs for their model)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchSpec:
        """Inverse of to_dict; raises ValueError naming the first missing or mistyped field."""

        def count(value: Any, path: str) -> int:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"ArchSpec: {path} is {value!r}, expected an integer >= 0")
            return value

        def component(key: str) -> ComponentSize:
            part = data.get(key)
            if not isinstance(part, Mapping):
                raise ValueError(f"ArchSpec: {key} is {part!r}, expected an object")
            names = [f.name for f in dataclasses.fields(ComponentSize)]
            return ComponentSize(*(count(part.get(n), f"{key}.{n}") for n in names))

        name = data.get("name")
        if not isinstance(name, str):
            raise ValueError(f"ArchSpec: name is {name!r}, expected a string")
        widths = data.get("vae_channels")
        if not isinstance(widths, list | tuple) or len(widths) != 2:
            raise ValueError(f"ArchSpec: vae_channels is {widths!r}, expected two integers")
        return cls(
            name=name,
            unet=component("unet"),
            text_encoder=component("text_encoder"),
            image_encoder=component("image_encoder"),
            vae=component("vae"),
            unet_channels=count(data.get("unet_channels"), "unet_channels"),
            vae_channels=(count(widths[0], "vae_channels[0]"), count(widths[1], "vae_channels[1]")),
            vae_layers_per_block=count(data.get("vae_layers_per_block"), "vae_layers_per_block"),
            vae_scale_factor=count(data.get("vae_scale_factor"), "vae_scale_factor"),
            vae_tile=count(data.get("vae_tile"), "vae_tile"),
        )

    @classmethod
    def from_pipeline(cls, pipe: Any, name: str = "") -> ArchSpec:
        """Read a loaded I2VGen-XL-shaped pipeline (diffusers, duck-typed: torch is not imported)."""
        tile = getattr(pipe.vae, "tile_sample_min_size", None)
        return cls.from_configs(
            name or str(getattr(pipe, "name_or_path", "") or "pipeline"),
            unet_config=pipe.unet.config,
            vae_config=pipe.vae.config,
            unet=_measure(pipe.unet),
            text_encoder=_measure(pipe.text_encoder),
            image_encoder=_measure(pipe.image_encoder),
            vae=_measure(pipe.vae),
            vae_tile=int(tile) if tile else None,
        )


def _count(module: Any) -> int:
    return sum(int(p.numel()) for p in module.parameters())


def _is_block_list(module: Any) -> bool:
    # nn.ModuleList / nn.Sequential: the containers diffusers' block-level group offload splits.
    return type(module).__name__ in ("ModuleList", "Sequential")


def _measure(module: Any) -> ComponentSize:
    largest_entry = 0
    others = 0
    for child in module.children():
        if _is_block_list(child):
            largest_entry = max([largest_entry, *(_count(entry) for entry in child)])
        else:
            others += _count(child)
    leaves: Iterable[Any] = (m for m in module.modules() if not any(True for _ in m.children()))
    return ComponentSize(
        params=_count(module),
        block_params=max(largest_entry, others),
        leaf_params=max((_count(m) for m in leaves), default=0),
    )


# The full-size ali-vilab/i2vgen-xl, measured from its public configs built on the meta device:
# UNet (320, 640, 1280, 1280) x 2 layers; VAE (128, 256, 512, 512) x 2 layers, sample_size 768;
# CLIP ViT-H/14 text (24 x 1024) and vision (32 x 1280) towers.
I2VGEN_XL = ArchSpec(
    name="ali-vilab/i2vgen-xl",
    unet=ComponentSize(1_420_469_224, 427_540_480, 29_492_480),
    text_encoder=ComponentSize(352_984_064, 352_984_064, 50_593_792),
    image_encoder=ComponentSize(632_076_800, 632_076_800, 6_558_720),
    vae=ComponentSize(83_653_863, 83_653_863, 2_359_808),
    unet_channels=320,
    vae_channels=(128, 256),
    vae_layers_per_block=2,
    vae_scale_factor=8,
    vae_tile=768,
)


@dataclass(frozen=True)
class StageBytes:
    """One stage's peak: weights resident on the device + transient tensors."""

    stage: str
    weights: int
    transient: int

    @property
    def total(self) -> int:
        return self.weights + self.transient


def _resident(parts: tuple[ComponentSize, ...], arch: ArchSpec, offload: Offload) -> int:
    """Parameters on the device during a stage that uses `parts`."""
    if offload is Offload.NONE:
        return arch.total_params
    if offload is Offload.MODEL:
        return max(c.params for c in parts)  # one whole component at a time
    if offload is Offload.GROUP_BLOCK:
        return PREFETCH_GROUPS * max(c.block_params for c in parts)
    if offload is Offload.GROUP_LEAF:
        return PREFETCH_GROUPS * max(c.leaf_params for c in parts)
    return max(c.leaf_params for c in parts)  # sequential: one layer's weights at a time


def stage_bytes(
    width: int,
    height: int,
    frames: int,
    profile: Profile,
    *,
    arch: ArchSpec = I2VGEN_XL,
    dtype_bytes: int = 2,
    accelerator: bool = True,
) -> tuple[StageBytes, ...]:
    """Per-stage peaks, without the runtime overhead. Off an accelerator every weight stays in the
    one memory there is, whatever the offload mode."""
    f = arch.vae_scale_factor
    tokens = 2 * frames * math.ceil(height / f) * math.ceil(width / f)
    a, b = (UNET_A_CHUNKED, UNET_B_CHUNKED) if profile.forward_chunking else (UNET_A, UNET_B)
    denoise = tokens * (a * arch.unet_channels + b) + LATENT_COPIES * 4 * tokens // 2

    c0, c1 = arch.vae_channels
    per_call = frames if profile.decode_chunk_size == 0 else min(frames, profile.decode_chunk_size)
    if profile.vae_slicing:
        per_call = 1
    extent_h, extent_w = height, width
    if profile.vae_tiling:
        extent_h, extent_w = min(height, arch.vae_tile), min(width, arch.vae_tile)
    decode = per_call * extent_h * extent_w * (VAE_DECODE_C0 * c0 + VAE_DECODE_C1 * c1)
    decode += VIDEO_COPIES * frames * 3 * height * width

    encode = max(
        ENCODER_TRANSIENT_PER_DTYPE_BYTE,
        height * width * (VAE_ENCODE_BASE + arch.vae_layers_per_block) * c0,
    )
    stages = (
        ("encode", (arch.text_encoder, arch.image_encoder, arch.vae), encode),
        ("denoise", (arch.unet,), denoise),
        ("decode", (arch.vae,), decode),
    )
    offload = profile.offload if accelerator else Offload.NONE
    return tuple(
        StageBytes(name, _resident(parts, arch, offload) * dtype_bytes, int(t * dtype_bytes))
        for name, parts, t in stages
    )


def estimate_bytes(
    width: int,
    height: int,
    frames: int,
    profile: Profile,
    *,
    arch: ArchSpec = I2VGEN_XL,
    dtype_bytes: int = 2,
    accelerator: bool = True,
    costs: RuntimeCosts = RUNTIME_COSTS,
) -> int:
    """Peak bytes of one job (device memory on an accelerator, process memory growth on CPU)."""
    stages = stage_bytes(
        width, height, frames, profile, arch=arch, dtype_bytes=dtype_bytes, accelerator=accelerator
    )
    if not accelerator:
        return CPU_RUNTIME_BYTES + max(s.total for s in stages)
    peak = max(s.weights + int(s.transient * (1 + costs.allocator_overhead)) for s in stages)
    return costs.cuda_context_bytes + peak


@dataclass(frozen=True)
class ProfileFit:
    """What `choose_profile` found, and why in words (the caller logs it)."""

    profile: Profile | None  # None: no profile of the ladder fits
    reason: str


def choose_profile(
    width: int,
    height: int,
    frames: int,
    free_bytes: int,
    ladder: tuple[Profile, ...],
    *,
    arch: ArchSpec = I2VGEN_XL,
    dtype_bytes: int = 2,
    accelerator: bool = True,
    margin: float = SAFETY_MARGIN,
) -> ProfileFit:
    """The fastest profile of `ladder` whose estimate plus `margin` fits in `free_bytes`."""
    for profile in ladder:
        need = estimate_bytes(
            width,
            height,
            frames,
            profile,
            arch=arch,
            dtype_bytes=dtype_bytes,
            accelerator=accelerator,
        )
        if need * (1 + margin) <= free_bytes:
            return ProfileFit(
                profile,
                f"profile {profile.name} for {width}x{height}x{frames}: needs {need / 1e9:.2f} GB "
                f"(+{margin * 100:.0f}%), {free_bytes / 1e9:.2f} GB free",
            )
    return ProfileFit(None, f"no profile fits {width}x{height}x{frames} in {free_bytes / 1e9:.2f} GB free")


# Routing asks for the memory to run without offload: offload works but is several times slower,
# so a job should go where it can avoid it. The leanest profile that keeps all weights resident.
_LEANEST_RESIDENT = [p for p in PROFILES if p.offload is Offload.NONE][-1]
_LEANEST = PROFILES[-1]


def required_bytes(width: int, height: int, frames: int, *, arch: ArchSpec = I2VGEN_XL) -> int:
    """Free accelerator bytes (fp16) a node needs to run the job without offload, margin included:
    `choose_profile` at this much free memory always finds a profile."""
    need = estimate_bytes(width, height, frames, _LEANEST_RESIDENT, arch=arch)
    return math.ceil(need * (1 + SAFETY_MARGIN))


def minimum_bytes(width: int, height: int, frames: int, *, arch: ArchSpec = I2VGEN_XL) -> int:
    """Free accelerator bytes (fp16) below which no profile runs the job, even the leanest offload:
    a job above every node's `minimum_bytes` can never run (admission)."""
    need = estimate_bytes(width, height, frames, _LEANEST, arch=arch)
    return math.ceil(need * (1 + SAFETY_MARGIN))


def required_tier(width: int, height: int, frames: int, *, arch: ArchSpec = I2VGEN_XL) -> int:
    """The tier a node with exactly `required_bytes` free reports (a common_pb2.Tier value).

    Every node of a higher tier fits the job (its floor is above the need); a node of this tier
    may or may not: compare its reported free bytes with `required_bytes`. Never TIER_CPU: CPU
    nodes are placed by the coordinator's own rule."""
    return tier_for_free_bytes(required_bytes(width, height, frames, arch=arch))
