"""A tiny random-weight I2VGen-XL pipeline, built from fixed configs with a fixed seed.

It serves tests, CI and the offline demo: same component classes and the same on-disk layout as
the real model, so the engine loads it through the same `from_pretrained` code path. Nothing is
downloaded: the CLIP tokenizer gets a byte-level vocabulary (every byte, alone and word-final,
no merges) written here. Building takes about a second; it happens once per cache directory,
in a temporary directory renamed into place, so concurrent builders never see a half-written one.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

TINY_NAME = "tiny"
TINY_DIR = "tiny-i2vgen-xl"
_COMPLETE = "BUILD_COMPLETE"
# Bump when a config below changes, so caches built from older configs are rebuilt.
_VERSION = "1"
_SEED = 20240611

_HIDDEN = 32  # text width == image-projection width == UNet cross-attention width
_MAX_TOKENS = 77


def _byte_symbols() -> list[str]:
    """CLIP's byte-to-printable-character table (the GPT-2 byte-level BPE alphabet)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def _tiny_vocab() -> dict[str, int]:
    symbols = _byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}


def byte_level_tokenizer() -> Any:
    """A CLIPTokenizer over bytes (no merges, nothing downloaded), CLIP's 77-token limit."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=_tiny_vocab(), merges=[], model_max_length=_MAX_TOKENS)


def _build_into(target: Path) -> None:
    import diffusers
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    # diffusers' constructors are unannotated: use them through an Any-typed module.
    d: Any = diffusers
    tokenizer = byte_level_tokenizer()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        unet = d.I2VGenXLUNet(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            block_out_channels=(16, 32),
            layers_per_block=1,
            norm_num_groups=4,
            cross_attention_dim=_HIDDEN,
            attention_head_dim=8,
        )
        # Four levels: the same 8x spatial factor as the real VAE, so latent shapes scale alike.
        vae = d.AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 16, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=64,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=_HIDDEN,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=_MAX_TOKENS,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                projection_dim=_HIDDEN,
            )
        )
        image_encoder = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=_HIDDEN,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                image_size=32,
                patch_size=8,
                projection_dim=_HIDDEN,
            )
        )
    feature_extractor = CLIPImageProcessor(
        crop_size={"height": 32, "width": 32}, size={"shortest_edge": 32}, do_center_crop=True
    )
    scheduler = d.DDIMScheduler(
        beta_schedule="squaredcos_cap_v2",
        clip_sample=False,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="leading",
        steps_offset=1,
    )
    pipe = d.I2VGenXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        image_encoder=image_encoder,
        feature_extractor=feature_extractor,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.save_pretrained(str(target))


def _is_complete(path: Path) -> bool:
    marker = path / _COMPLETE
    return marker.is_file() and marker.read_text(encoding="utf-8").strip() == _VERSION


def ensure_tiny(cache_dir: Path) -> Path:
    """The directory of the tiny pipeline under `cache_dir`, building it first if needed."""
    target = cache_dir / TINY_DIR
    if _is_complete(target):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{TINY_DIR}-", dir=cache_dir))
    try:
        _build_into(staging)
        (staging / _COMPLETE).write_text(_VERSION, encoding="utf-8")
        if target.exists() and not _is_complete(target):
            log.info("replacing incomplete or outdated tiny pipeline at %s", target)
            shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
            log.info("built tiny pipeline at %s", target)
        except OSError:
            # Another process renamed its build into place first; theirs is equivalent.
            if not _is_complete(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
