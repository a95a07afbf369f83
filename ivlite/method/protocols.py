"""What the method needs of a text-to-video model and of a reward, as structural types.

Any object with these attributes works: :class:`ivlite.models.VideoModel` is one model,
every reward of :mod:`ivlite.rewards` and any plain function
``(frames, prompts) -> scores`` is a reward.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch
from diffusers import DDIMScheduler


@runtime_checkable
class Reward(Protocol):
    def __call__(self, frames: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """frames (N, 3, H, W) in [-1, 1], N prompts -> scores (N,), differentiable in
        frames."""


class TextToVideoModel(Protocol):
    """A latent text-to-video diffusion model: latents (B, C, F, h, w), a per-frame
    VAE."""

    unet: torch.nn.Module
    """eps-prediction UNet: ``unet(latents, t, encoder_hidden_states=...).sample``."""
    vae: torch.nn.Module
    """Per-frame decoder: ``vae.decode(z).sample``, ``vae.config.scaling_factor``."""
    scheduler: DDIMScheduler

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text embeddings (N, L, D) of N prompts."""
