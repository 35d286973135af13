"""Prompt encoding with I2VGen-XL's semantics, done outside the pipeline.

I2VGen-XL conditions on the CLIP text encoder's penultimate layer (the pipeline's default
`clip_skip=1`) passed through the encoder's final layer norm. The pipeline's own path for this
looks the norm up at `text_encoder.text_model.final_layer_norm`, which recent transformers moved to
`text_encoder.final_layer_norm`; so the engine encodes here and hands the pipeline
`prompt_embeds` / `negative_prompt_embeds`. Shapes, padding, truncation and the empty negative
prompt for classifier-free guidance follow `I2VGenXLPipeline.encode_prompt`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

log = logging.getLogger(__name__)


def _final_layer_norm(text_encoder: Any) -> torch.nn.Module:
    owner = getattr(text_encoder, "text_model", text_encoder)
    norm = getattr(owner, "final_layer_norm", None)
    if not isinstance(norm, torch.nn.Module):
        raise TypeError(f"{type(text_encoder).__name__} has no final_layer_norm; not a CLIP text encoder")
    return norm


def _encode_one(tokenizer: Any, text_encoder: Any, text: str, device: torch.device) -> torch.Tensor:
    tokens = tokenizer(
        [text],
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    if len(tokenizer(text).input_ids) > tokenizer.model_max_length:
        log.info("prompt truncated to %d tokens (CLIP's limit)", tokenizer.model_max_length)
    mask = None
    if getattr(text_encoder.config, "use_attention_mask", False):
        mask = tokens.attention_mask.to(device)
    out = text_encoder(tokens.input_ids.to(device), attention_mask=mask, output_hidden_states=True)
    penultimate = out.hidden_states[-2]
    embeds: torch.Tensor = _final_layer_norm(text_encoder)(penultimate)
    return embeds


@torch.no_grad()
def encode_prompts(
    tokenizer: Any,
    text_encoder: Any,
    prompt: str,
    negative_prompt: str,
    device: torch.device,
    guidance_scale: float,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(prompt_embeds, negative_prompt_embeds); the negative is None when guidance is off (scale <= 1),
    as the pipeline then ignores it. An empty negative prompt encodes "" like the pipeline does."""
    dtype = text_encoder.dtype
    positive = _encode_one(tokenizer, text_encoder, prompt, device).to(dtype=dtype, device=device)
    if guidance_scale <= 1:
        return positive, None
    negative = _encode_one(tokenizer, text_encoder, negative_prompt, device).to(dtype=dtype, device=device)
    return positive, negative
