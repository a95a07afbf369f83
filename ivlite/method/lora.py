"""LoRA on the 3D UNet's attention, through peft, saved in peft's standard format.

InstructVideo trains rank-4 LoRA on q, k, v and out of every attention of the UNet:
spatial self- and cross-attention and temporal self-attention (in diffusers: every
``Attention`` module's ``to_q``, ``to_k``, ``to_v`` and ``to_out.0``). The up-matrix B
starts at zero, so the fine-tuned model starts exactly at the base model. The
down-matrix A starts as ``init`` says (:data:`LORA_INITS`): the official code's
N(0, (1/rank)^2), or peft's default Kaiming-uniform. ``UNet3DConditionModel`` has no
``add_adapter``, so adapters are injected with ``peft.inject_adapter_in_model``.

The weights under peft's standard names (:func:`lora_state_dict`, e.g.
``down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight``) are what
an adapter folder holds (:mod:`ivlite.adapters` writes and reads them).
"""

from __future__ import annotations

from typing import Sequence

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer

ADAPTER_NAME = "default"
DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
LORA_INITS = {"official": "gaussian", "peft": True}
"""``lora_init`` -> peft's ``init_lora_weights``. ``official``: A ~ N(0, std = 1/rank),
as the official code's LoRA (VGen ``unet_lora.py``) draws its down matrix; peft's
``gaussian`` is exactly that for linear layers. ``peft``: peft's default,
A ~ Kaiming-uniform(a = sqrt(5)), i.e. uniform on +-1/sqrt(d_in) (std 1/sqrt(3 d_in)).
B = 0 in both. The adapter's ``adapter_config.json`` records the choice, so re-injecting
from a saved config draws A the same way."""


def lora_config(rank: int = 4, alpha: float | None = None,
                targets: Sequence[str] = DEFAULT_TARGETS, init: str = "peft"
                ) -> LoraConfig:
    """peft config: ``alpha = rank`` by default, i.e. scale alpha / rank = 1 as in the
    paper; ``init`` one of :data:`LORA_INITS`. :func:`ivlite.trainer.finetune` passes
    the config's ``lora_init`` (the official code's init in the paper and modelscope
    presets); called alone, this keeps peft's default."""
    if init not in LORA_INITS:
        raise ValueError(f"lora_init={init!r} is not an initialisation; allowed: "
                         f"{' or '.join(map(repr, LORA_INITS))}")
    return LoraConfig(r=rank, lora_alpha=rank if alpha is None else alpha,
                      target_modules=list(targets), init_lora_weights=LORA_INITS[init],
                      lora_dropout=0.0)


def add_lora(unet: torch.nn.Module, config: LoraConfig | None = None
             ) -> list[torch.nn.Parameter]:
    """Inject LoRA into ``unet``, freeze every other weight, return the trainable LoRA
    parameters.

    Each target linear layer becomes a peft ``LoraLayer``: the frozen ``base_layer`` W,
    ``lora_A`` (A: r x d_in) and ``lora_B`` (B: d_out x r), computing
    h = W x + (alpha / r) B A x (LoRA, arXiv 2106.09685, Eq. 3). A (down) starts at
    random as ``config`` says (:data:`LORA_INITS`), B (up) at zero: the output is
    unchanged.
    """
    config = config or lora_config()
    unet.requires_grad_(False)
    try:
        inject_adapter_in_model(config, unet, adapter_name=ADAPTER_NAME)
    except ValueError as err:
        raise ValueError(f"lora_targets={sorted(config.target_modules)}: "
                         f"no such modules in {type(unet).__name__} ({err})") from err
    params = lora_parameters(unet)
    for p in params:
        p.requires_grad_(True)
    return params


def lora_parameters(unet: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The LoRA A/B matrices of ``unet``, in a fixed (module) order."""
    return [p for n, p in unet.named_parameters() if ".lora_A." in n or ".lora_B." in n]


def has_lora(unet: torch.nn.Module) -> bool:
    return any(isinstance(m, BaseTunerLayer) for m in unet.modules())


def lora_state_dict(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """LoRA weights under peft's standard names (adapter name stripped), detached,
    contiguous."""
    state = get_peft_model_state_dict(unet, adapter_name=ADAPTER_NAME)
    return {k: v.detach().contiguous() for k, v in state.items()}


def check_adapter_state(unet: torch.nn.Module, state: dict[str, torch.Tensor],
                        source: str) -> None:
    """ValueError naming ``source`` unless ``state`` has exactly the LoRA weights of
    ``unet``, in the same shapes and finite (peft itself loads a partial or misshapen
    state without a word)."""
    current = lora_state_dict(unet)
    if set(state) != set(current):
        missing, extra = (sorted(set(current) - set(state)),
                          sorted(set(state) - set(current)))
        raise ValueError(f"{source} does not fit this UNet: {len(missing)} LoRA "
                         f"weights missing (e.g. {missing[:2]}), {len(extra)} "
                         f"unexpected (e.g. {extra[:2]}); another base model or "
                         f"other lora_targets?")
    bad = [k for k in state if state[k].shape != current[k].shape]
    if bad:
        raise ValueError(f"{source} does not fit this UNet: {bad[0]} has shape "
                         f"{tuple(state[bad[0]].shape)}, the model expects "
                         f"{tuple(current[bad[0]].shape)} "
                         f"(another rank or base model?)")
    bad = [k for k, v in state.items()
           if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{source} holds NaN or infinite values (in {bad[0]}); "
                         f"it is corrupt")


def _tuner_layers(unet: torch.nn.Module) -> list[BaseTunerLayer]:
    layers = [m for m in unet.modules() if isinstance(m, BaseTunerLayer)]
    if not layers:
        raise ValueError("this UNet has no LoRA adapter; "
                         "call add_lora or load_adapter first")
    return layers


def set_lora_scale(unet: torch.nn.Module, scale: float) -> None:
    """Multiply the adapter's effect by ``scale`` (0 = base model, 1 = as trained)."""
    for layer in _tuner_layers(unet):
        layer.set_scale(ADAPTER_NAME, scale)


def merge_lora(unet: torch.nn.Module) -> None:
    """Fold B @ A * scale into the base weights: no LoRA overhead at inference."""
    for layer in _tuner_layers(unet):
        layer.merge()


def unmerge_lora(unet: torch.nn.Module) -> None:
    for layer in _tuner_layers(unet):
        layer.unmerge()
