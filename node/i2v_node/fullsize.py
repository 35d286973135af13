"""An I2VGen-XL pipeline with random weights, built from component configs directly on a device.

It is for measuring (benchmarks/gpu_check.py): memory and speed depend on the architecture, not on
the weights' values, so the full-size model can be measured on a machine that cannot download it.
`FULL_SIZE_CONFIGS` holds the public ali-vilab/i2vgen-xl component configs (UNet, VAE, CLIP text
and vision towers, DDIM scheduler, CLIP image processor); any directory with the same layout works,
e.g. the tiny pipeline's. Without a `tokenizer/` folder the byte-level tokenizer of tiny.py is used:
prompts are padded to CLIP's 77 tokens either way, so token ids do not change memory or time.

Modules are created on the target device in the target dtype (torch's device context and default
dtype), so the random init runs there: seconds on a GPU for the 2.5 B parameters, and no host copy.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from i2v_node.tiny import byte_level_tokenizer

log = logging.getLogger(__name__)

FULL_SIZE_CONFIGS = Path(__file__).resolve().parent / "configs" / "i2vgen-xl"


@contextlib.contextmanager
def _creating_on(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def build_random_pipeline(config_dir: Path, *, device: torch.device, dtype: torch.dtype, seed: int) -> Any:
    """The pipeline described by `config_dir`, with seeded random weights, on `device` in `dtype`."""
    import diffusers
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    d: Any = diffusers  # unannotated constructors
    text_config = CLIPTextConfig.from_pretrained(str(config_dir / "text_encoder"))
    vision_config = CLIPVisionConfig.from_pretrained(str(config_dir / "image_encoder"))
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), _creating_on(device, dtype):
        torch.manual_seed(seed)
        unet = d.I2VGenXLUNet.from_config(d.I2VGenXLUNet.load_config(str(config_dir / "unet")))
        vae = d.AutoencoderKL.from_config(d.AutoencoderKL.load_config(str(config_dir / "vae")))
        text_encoder = CLIPTextModel(text_config)
        image_encoder = CLIPVisionModelWithProjection(vision_config)
    tokenizer_dir = config_dir / "tokenizer"
    tokenizer = (
        CLIPTokenizer.from_pretrained(str(tokenizer_dir))
        if tokenizer_dir.is_dir()
        else byte_level_tokenizer()
    )
    pipe = d.I2VGenXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        image_encoder=image_encoder,
        feature_extractor=CLIPImageProcessor.from_pretrained(str(config_dir / "feature_extractor")),
        unet=unet,
        scheduler=d.DDIMScheduler.from_pretrained(str(config_dir / "scheduler")),
    )
    # Buffers some constructors create with an explicit dtype or device join the rest.
    pipe.to(device=device, dtype=dtype)
    for module in (unet, vae, text_encoder, image_encoder):
        module.eval()
        module.requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    log.info("built %s with random weights on %s (%s)", config_dir.name, device, dtype)
    return pipe
