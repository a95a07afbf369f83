"""One InstructVideo training objective, end to end (paper Sec. 3.2, Eq. 3-8).

clean latents x_0 --q(x_t|x_0)--> x_{t_start}
--partial DDIM chain, grad in last K steps--> x_0'
--SegVR: pick S frames, decode only those--> frames --reward r(frame, caption)--> scores
--TAR: R = (1/S) sum_s c(j_s) r_s--> loss = mean(1 - R).

The same function runs every ablation and baseline through
:class:`.settings.MethodSettings` (``Config.method()`` of a run): ``chain="full"``
(DRaFT-K: from pure noise through all D steps), ``segments=F, frame_sampling="first"``
(every frame, no SegVR), ``segments=1`` (one random frame), ``lambda_tar=0`` (no TAR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .editing import edit, generate
from .protocols import Reward, TextToVideoModel
from .segvr import decode_segments, sample_frame_indices
from .settings import MethodSettings
from .tar import reward_loss, video_reward


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    """Scalar mean(1 - R), differentiable into the LoRA weights."""
    reward: torch.Tensor
    """R per clip (B,), detached."""
    frame_scores: torch.Tensor
    """Reward of each picked frame (B, S), detached."""
    frame_indices: torch.Tensor
    """The picked frames (B, S)."""
    unet_calls: int
    """Guided UNet evaluations in the chain (each a batch of 2B clips with guidance)."""


def instructvideo_objective(model: TextToVideoModel, reward: Reward, x0: torch.Tensor,
                            prompts: Sequence[str], settings: MethodSettings, *,
                            generator: torch.Generator | None = None
                            ) -> ObjectiveOutput:
    """Loss of one batch: x0 (B, C, F, h, w) clean latents, ``prompts`` B captions."""
    b, _, f = x0.shape[:3]
    cond = model.encode_prompts(list(prompts))
    uncond = model.encode_prompts([""])  # empty-string negative, as the official code
    chain_kw = dict(ddim_steps=settings.ddim_steps, grad_steps=settings.grad_steps,
                    guidance_scale=settings.guidance_scale, eta=settings.eta,
                    generator=generator)
    if settings.chain == "edit":
        out = edit(model.unet, model.scheduler, x0, cond, uncond, tau=settings.tau,
                   offset_noise=settings.offset_noise, **chain_kw)
    else:
        out = generate(model.unet, model.scheduler, tuple(x0.shape), cond, uncond,
                       device=x0.device, dtype=x0.dtype, **chain_kw)
    indices = sample_frame_indices(b, f, settings.segments, settings.frame_sampling,
                                   generator=generator, device=x0.device)
    frames = decode_segments(model.vae, out.latents, indices,
                             use_checkpoint=settings.checkpoint_decoder)
    s = indices.shape[1]
    scores = reward(frames, [p for p in prompts for _ in range(s)]).view(b, s)
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()  # sum the weighted reward in fp32
    r = video_reward(scores, indices, f, settings.lambda_tar, settings.tar_normalize)
    return ObjectiveOutput(reward_loss(r), r.detach(), scores.detach(), indices,
                           out.unet_calls)
