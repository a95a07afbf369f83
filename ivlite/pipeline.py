"""Use an ivlite adapter in a diffusers pipeline of the base model.

ivlite saves adapters in peft's format (``adapter_config.json`` + ``adapter_model.safetensors``,
keys named as in the UNet). diffusers' ``pipe.load_lora_weights`` cannot take them for this base
model: ``UNet3DConditionModel`` has no peft integration (no ``load_lora_adapter``), so
:func:`load_into_pipeline` injects the LoRA layers into ``pipe.unet`` with peft directly and sets
their scale::

    import torch
    from diffusers import TextToVideoSDPipeline
    from ivlite.pipeline import load_into_pipeline

    pipe = TextToVideoSDPipeline.from_pretrained("damo-vilab/text-to-video-ms-1.7b",
                                                 torch_dtype=torch.float16, variant="fp16")
    load_into_pipeline(pipe, "runs/mine/adapter", scale=1.0)   # 0 = base model
    frames = pipe("a cat walking", num_inference_steps=20, guidance_scale=3.0).frames[0]

``TextToVideoSDPipeline`` is deprecated in diffusers (no fixes after 0.33.1) but still imports;
the function only needs ``pipe.unet``, so it works with any pipeline built around the same UNet
(``VideoToVideoSDPipeline``, or a future replacement).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .adapters import load_adapter
from .method.lora import merge_lora, set_lora_scale
from .models import VideoModel
from .registry import load_model


def load_into_pipeline(pipe, adapter_dir: str | Path, scale: float = 1.0, *,
                       merge: bool = False):
    """Load an ivlite adapter into ``pipe.unet`` with LoRA ``scale``; returns ``pipe``.

    The LoRA weights follow ``pipe.unet``'s device and dtype. ``merge=True`` folds them into the
    base weights (no LoRA overhead per step; the scale is then fixed). Change the scale later with
    :func:`set_pipeline_lora_scale`.
    """
    unet = getattr(pipe, "unet", None)
    if unet is None:
        raise TypeError(f"{type(pipe).__name__} has no .unet to load a UNet adapter into")
    load_adapter(unet, adapter_dir)
    unet.to(device=unet.device, dtype=unet.dtype)  # the fresh LoRA layers are float32 on the CPU
    set_lora_scale(unet, scale)
    if merge:
        merge_lora(unet)
    return pipe


def set_pipeline_lora_scale(pipe, scale: float) -> None:
    """Change the scale of the adapter loaded by :func:`load_into_pipeline` (not if merged)."""
    set_lora_scale(pipe.unet, scale)


def video_pipeline(model: VideoModel | str, *, adapter: str | Path | None = None,
                   scale: float = 1.0, dtype: torch.dtype | None = None, device=None):
    """A ``TextToVideoSDPipeline`` from a :class:`VideoModel` or a model name, folder or hub id.

    The components are shared, not copied: an adapter loaded here is in ``model.unet`` too.
    """
    try:
        from diffusers import TextToVideoSDPipeline
    except ImportError as err:  # removed from a future diffusers
        raise ImportError("this diffusers version no longer ships TextToVideoSDPipeline; use "
                          "ivlite's own sampling (ivlite.evaluation.sample_videos) or load the "
                          "adapter into another pipeline's unet with load_into_pipeline") from err
    if isinstance(model, str):
        model = load_model(model, dtype=dtype or torch.float32)
    pipe = TextToVideoSDPipeline(vae=model.vae, text_encoder=model.text_encoder,
                                 tokenizer=model.tokenizer, unet=model.unet,
                                 scheduler=model.scheduler)
    if device is not None or dtype is not None:
        pipe.to(device=device, dtype=dtype)
    if adapter is not None:
        load_into_pipeline(pipe, adapter, scale)
    return pipe


__all__ = ["load_into_pipeline", "set_pipeline_lora_scale", "video_pipeline"]
