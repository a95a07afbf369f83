"""Gradient checkpointing for diffusers' ``UNet3DConditionModel``.

diffusers 0.42 refuses ``enable_gradient_checkpointing()`` on this class and its 3D blocks never
read the flag. So ivlite wraps the forward of every down, mid and up block in
``torch.utils.checkpoint.checkpoint`` (non-reentrant, RNG state preserved so dropout recomputes
identically): activations inside a block are recomputed during backward instead of stored.
Gradients are identical to the plain forward's (a test checks it).
"""

from __future__ import annotations

import functools

import torch
from torch.utils.checkpoint import checkpoint

_MARK = "_ivlite_checkpointed"


def _blocks(unet: torch.nn.Module) -> list[torch.nn.Module]:
    blocks = list(getattr(unet, "down_blocks", [])) + list(getattr(unet, "up_blocks", []))
    if getattr(unet, "mid_block", None) is not None:
        blocks.append(unet.mid_block)
    if not blocks:
        raise TypeError(f"{type(unet).__name__} has no down_blocks/mid_block/up_blocks to checkpoint")
    return blocks


def _checkpointed_forward(forward, *args, **kwargs):
    # Only pay for recomputation when a backward pass will need the activations.
    if torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def enable_unet_checkpointing(unet: torch.nn.Module) -> torch.nn.Module:
    """Checkpoint every block of ``unet`` (idempotent). Returns ``unet``."""
    for block in _blocks(unet):
        if not getattr(block, _MARK, False):
            # The class's own forward, bound to this block; the instance attribute shadows it.
            block.forward = functools.partial(_checkpointed_forward, type(block).forward.__get__(block))
            setattr(block, _MARK, True)
    return unet


def disable_unet_checkpointing(unet: torch.nn.Module) -> torch.nn.Module:
    """Undo :func:`enable_unet_checkpointing`."""
    for block in _blocks(unet):
        if getattr(block, _MARK, False):
            del block.forward
            delattr(block, _MARK)
    return unet


def is_checkpointing(unet: torch.nn.Module) -> bool:
    return all(getattr(block, _MARK, False) for block in _blocks(unet))
