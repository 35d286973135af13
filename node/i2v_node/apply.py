"""Applying an optimisation Profile to the pipeline, in either direction along the ladder.

Flags (forward chunking, VAE slicing and tiling) toggle freely. Offload installs hooks that cannot
be removed cleanly (accelerate's model/sequential hooks and diffusers' group-offload hooks move or
replace parameters), so changing the offload kind rebuilds the four torch components from a
pristine CPU snapshot of their tensors and wraps them in a fresh pipeline object.

The snapshot is taken right after loading, while the weights are on the CPU: on a CPU device it
shares storage with the live modules (inference never writes weights), so it costs nothing; on an
accelerator it keeps one host-RAM copy of the weights (about 5 GB for I2VGen-XL in fp16), which
is what makes a switch back from an offload profile take a second instead of a reload from disk.
Rebuilt modules are created on the meta device and take the snapshot tensors by assignment.
"""

from __future__ import annotations

import gc
import logging
from typing import Any, cast

import torch

from i2v_contract.profiles import Offload, Profile

log = logging.getLogger(__name__)

MODULES = ("text_encoder", "image_encoder", "unet", "vae")
_OTHERS = ("tokenizer", "feature_extractor", "scheduler")

_Snapshot = dict[str, torch.Tensor]


def decode_chunk_arg(profile: Profile) -> int | None:
    """The pipeline's decode_chunk_size: None decodes every frame in one VAE call."""
    return profile.decode_chunk_size or None


def _snapshot(module: torch.nn.Module) -> _Snapshot:
    tensors = {n: p.detach() for n, p in module.named_parameters(remove_duplicate=False)}
    tensors.update({n: b.detach() for n, b in module.named_buffers(remove_duplicate=False)})
    return {n: t if t.device.type == "cpu" else t.to("cpu") for n, t in tensors.items()}


def _construct(old: torch.nn.Module) -> torch.nn.Module:
    from accelerate import init_empty_weights
    from diffusers.configuration_utils import ConfigMixin

    # Parameters on the meta device (no allocation, no random init); buffers are real.
    with init_empty_weights(include_buffers=False):
        if isinstance(old, ConfigMixin):
            new: torch.nn.Module = cast(torch.nn.Module, type(old).from_config(old.config))
        else:
            new = type(old)(old.config)
    return new


def _rebuild(old: torch.nn.Module, tensors: _Snapshot) -> torch.nn.Module:
    new = _construct(old)
    for name, tensor in tensors.items():
        owner_name, _, leaf = name.rpartition(".")
        owner = new.get_submodule(owner_name)
        if leaf in owner._parameters:
            owner._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=False)
        else:
            owner._buffers[leaf] = tensor
    left = [n for n, p in new.named_parameters() if p.is_meta]
    if left:
        raise RuntimeError(f"rebuilding {type(old).__name__}: no snapshot for {left[:3]}")
    new.eval()
    return new


class ProfiledPipeline:
    """The pipeline plus the Profile currently applied to it."""

    def __init__(self, pipe: Any, device: torch.device) -> None:
        self._device = device
        self._snapshots = {name: _snapshot(getattr(pipe, name)) for name in MODULES}
        self.pipe = pipe
        self.profile: Profile | None = None
        self._offload: Offload | None = None  # None: fresh CPU components, nothing placed yet

    def apply(self, profile: Profile) -> Any:
        """Make `profile` the active one and return the pipeline to call."""
        if profile.requires_accelerator and self._device.type == "cpu":
            raise ValueError(f"profile {profile.name} needs an accelerator; this engine runs on the CPU")
        if profile == self.profile:
            return self.pipe
        if self._offload is not None and self._offload != profile.offload:
            log.info(
                "profile %s: offload %s -> %s, rebuilding components",
                profile.name,
                self._offload.value,
                profile.offload.value,
            )
            self._rebuild_all()
        if self._offload is None:
            self._place(profile.offload)
        self._set_flags(profile)
        self.profile = profile
        return self.pipe

    def _rebuild_all(self) -> None:
        old = self.pipe
        parts: dict[str, Any] = {name: getattr(old, name) for name in _OTHERS}
        parts.update({name: _rebuild(getattr(old, name), self._snapshots[name]) for name in MODULES})
        self.pipe = type(old)(**parts)
        self.pipe.set_progress_bar_config(disable=True)
        del old
        self._offload = None
        gc.collect()
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def _place(self, offload: Offload) -> None:
        pipe, device = self.pipe, self._device
        if offload is Offload.NONE:
            pipe.to(device)
        elif offload is Offload.MODEL:
            pipe.enable_model_cpu_offload(device=device)
        elif offload is Offload.SEQUENTIAL:
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            level = "block_level" if offload is Offload.GROUP_BLOCK else "leaf_level"
            pipe.enable_group_offload(
                onload_device=device,
                offload_device=torch.device("cpu"),
                offload_type=level,
                num_blocks_per_group=1 if offload is Offload.GROUP_BLOCK else None,
            )
        self._offload = offload

    def _set_flags(self, profile: Profile) -> None:
        unet, vae = self.pipe.unet, self.pipe.vae
        if profile.forward_chunking:
            unet.enable_forward_chunking(chunk_size=1, dim=1)
        else:
            unet.disable_forward_chunking()
        if profile.vae_slicing:
            vae.enable_slicing()
        else:
            vae.disable_slicing()
        if profile.vae_tiling:
            vae.enable_tiling()
        else:
            vae.disable_tiling()
