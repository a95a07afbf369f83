"""What ivlite does so that a full-size training step fits a 16 GB GPU.

``benchmarks/memory_model.py`` traces ModelScopeT2V + HPSv2 steps at full size and measures each
measure's saving; ``tests/test_memory_model.py`` holds the ``modelscope`` preset's step to its
budget. :func:`reduce_step_memory` (called by the trainer) applies:

- the VAE decoder checkpointed per up block (with ``gradient_checkpointing``; the UNet's per-layer
  checkpointing is :func:`ivlite.grad_checkpointing.enable_unet_checkpointing`);
- on a CUDA device, both frozen text towers -- the video model's text encoder (0.68 GB in fp16)
  and the reward's CLIP text transformer (0.71 GB) -- moved to the CPU once the features of every
  prompt the run trains on (and of the empty negative prompt) are cached. A prompt outside those
  (an evaluation prompt) is still encoded, on the CPU.

On the CPU (the tiny models, the tests) only the VAE checkpointing applies, which changes no
number: checkpointing recomputes exactly what it dropped.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .grad_checkpointing import enable_vae_checkpointing


def offload_text_towers(model, reward, prompts: Sequence[str], device="cpu") -> None:
    """Cache the text features of ``prompts`` (and of the empty negative prompt) in ``model`` and
    ``reward``, then move both text towers to ``device``."""
    model.offload_text_encoder(list(prompts) + [""], device)
    parts = getattr(reward, "rewards", {"reward": reward}).values()
    for part in parts:
        if hasattr(part, "offload_text_tower"):
            part.offload_text_tower(list(prompts), device)


def reduce_step_memory(cfg, model, reward, prompts: Sequence[str], device) -> list[str]:
    """Apply the savings above for a run of ``cfg`` on ``device``; returns their names."""
    applied = []
    if cfg.gradient_checkpointing:
        enable_vae_checkpointing(model.vae)
        applied.append("vae_checkpointing")
    if torch.device(device).type == "cuda":
        offload_text_towers(model, reward, prompts)
        applied.append("offload_text")
    return applied
