"""Gradient checkpointing for diffusers' ``UNet3DConditionModel`` and the VAE decoder.

diffusers 0.42 refuses ``enable_gradient_checkpointing()`` on the 3D UNet and its 3D blocks never
read the flag. So ivlite wraps the forward of every layer inside the blocks -- each resnet,
spatial transformer, temporal convolution and temporal transformer, and the UNet's input temporal
transformer -- in ``torch.utils.checkpoint.checkpoint`` (non-reentrant, RNG state preserved so
dropout recomputes identically). Forward keeps only each layer's input; backward recomputes one
layer at a time, so the most it holds is one layer's activations. ``per="block"`` wraps whole
down/mid/up blocks instead (three layer groups recomputed at once: about 6 GiB more at full size,
see benchmarks/memory_model.py). Gradients are identical to the plain forward's (a test checks).

The SD VAE's decoder supports diffusers' own checkpointing (per up block), which works in train
and eval mode alike: :func:`enable_vae_checkpointing`.
"""

from __future__ import annotations

import functools

import torch
import torch.utils.checkpoint


_MARK = "_ivlite_checkpointed"
LAYER_LISTS = ("resnets", "attentions", "temp_convs", "temp_attentions")
GRANULARITIES = ("layer", "block")


def _blocks(unet: torch.nn.Module) -> list[torch.nn.Module]:
    blocks = list(getattr(unet, "down_blocks", [])) + list(getattr(unet, "up_blocks", []))
    if getattr(unet, "mid_block", None) is not None:
        blocks.append(unet.mid_block)
    if not blocks:
        raise TypeError(f"{type(unet).__name__} has no down_blocks/mid_block/up_blocks to "
                        f"checkpoint")
    return blocks


def _layers(unet: torch.nn.Module) -> list[torch.nn.Module]:
    layers = [unet.transformer_in] if getattr(unet, "transformer_in", None) is not None else []
    for block in _blocks(unet):
        for name in LAYER_LISTS:
            layers.extend(getattr(block, name, None) or [])
    return layers


def _units(unet: torch.nn.Module, per: str) -> list[torch.nn.Module]:
    if per not in GRANULARITIES:
        raise ValueError(f"per={per!r}; allowed: {GRANULARITIES}")
    return _layers(unet) if per == "layer" else _blocks(unet)


def _checkpointed_forward(forward, *args, **kwargs):
    # Only pay for recomputation when a backward pass will need the activations.
    if torch.is_grad_enabled():
        # Looked up at call time, as diffusers does: a tracer may wrap it (ivlite.memtrace).
        return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def enable_unet_checkpointing(unet: torch.nn.Module, per: str = "layer") -> torch.nn.Module:
    """Checkpoint every layer (``per="layer"``) or every block (``"block"``) of ``unet``.

    Idempotent; switching granularity first undoes the other one. Returns ``unet``.
    """
    units = _units(unet, per)
    disable_unet_checkpointing(unet)
    for module in units:
        # The class's own forward, bound to this module; the instance attribute shadows it.
        module.forward = functools.partial(_checkpointed_forward,
                                           type(module).forward.__get__(module))
        setattr(module, _MARK, True)
    return unet


def disable_unet_checkpointing(unet: torch.nn.Module) -> torch.nn.Module:
    """Undo :func:`enable_unet_checkpointing`."""
    for module in _layers(unet) + _blocks(unet):
        if getattr(module, _MARK, False):
            del module.forward
            delattr(module, _MARK)
    return unet


def is_checkpointing(unet: torch.nn.Module, per: str = "layer") -> bool:
    return all(getattr(module, _MARK, False) for module in _units(unet, per))


def enable_vae_checkpointing(vae: torch.nn.Module) -> torch.nn.Module:
    """diffusers' gradient checkpointing of the VAE (the decoder per up block). Returns ``vae``."""
    if getattr(vae, "_supports_gradient_checkpointing", False):
        vae.enable_gradient_checkpointing()
    return vae
