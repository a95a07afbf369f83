"""Reward fine-tuning recast as editing (paper Sec. 3.2.1, Eq. 3-4), and the full-chain
baseline.

InstructVideo does not generate a video from pure noise to score it. It takes a training
clip's latents x_0 (a real WebVid clip in the paper; :mod:`ivlite.data` lists ivlite's
sources), noises them to t_start = grid[-int(tau * D)] with q(x_t | x_0) (Eq. 3), and
runs only the remaining int(tau * D) DDIM steps (Eq. 4): 12 UNet calls instead of 20 at
tau = 0.6, D = 20, and a chain that starts from a sensible video, which eases
optimisation. The full chain (pure noise, all D steps) is what DRaFT and other reward
fine-tuning methods differentiate through; it is here for the baselines.
"""

from __future__ import annotations

from typing import Callable

import torch
from diffusers import DDIMScheduler

from .ddim import ChainResult, chain_timesteps, ddim_scheduler, run_chain, sample_noise


def edit(unet: torch.nn.Module, scheduler: DDIMScheduler, x0: torch.Tensor,
         cond: torch.Tensor, uncond: torch.Tensor | None, *, tau: float = 0.6,
         ddim_steps: int = 20, grad_steps: int = 1, guidance_scale: float = 3.0,
         eta: float = 0.0, offset_noise: float = 0.1,
         generator: torch.Generator | None = None,
         noise: torch.Tensor | None = None, record: bool = False,
         on_step: Callable[[int, int], None] | None = None) -> ChainResult:
    """Noise clean latents x0 (B, C, F, h, w) to t_start and denoise them with the
    partial chain.

    ``noise`` overrides the sampled eps (it then ignores ``offset_noise``). With
    ``grad_steps=0`` and ``offset_noise=0`` this is
    ``VideoToVideoSDPipeline(strength=tau)`` on latents.
    """
    sched = ddim_scheduler(scheduler, ddim_steps)
    timesteps = chain_timesteps(sched, ddim_steps, tau)
    if noise is None:
        noise = sample_noise(tuple(x0.shape), offset_noise=offset_noise,
                             generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = sched.add_noise(x0, noise, timesteps[:1].to(x0.device))  # q(x_t | x_0), Eq. 3
    return run_chain(unet, sched, x_t, timesteps, cond, uncond,
                     guidance_scale=guidance_scale, grad_steps=grad_steps, eta=eta,
                     generator=generator, record=record, on_step=on_step)


def generate(unet: torch.nn.Module, scheduler: DDIMScheduler, shape: tuple[int, ...],
             cond: torch.Tensor, uncond: torch.Tensor | None, *, ddim_steps: int = 20,
             grad_steps: int = 0, guidance_scale: float = 3.0, eta: float = 0.0,
             generator: torch.Generator | None = None,
             noise: torch.Tensor | None = None, device=None,
             dtype: torch.dtype = torch.float32, record: bool = False,
             on_step: Callable[[int, int], None] | None = None) -> ChainResult:
    """Text-to-video from pure noise through all D steps (sampling; DRaFT-K when
    grad_steps = K).

    ``shape`` is the latent shape (B, C, F, h, w). DDIM with ``init_noise_sigma`` = 1,
    so the initial latents are the noise itself, as in ``TextToVideoSDPipeline``. The
    chain's state is kept in ``dtype`` (float32 by default, whatever the UNet's
    precision).
    """
    sched = ddim_scheduler(scheduler, ddim_steps)
    if noise is None:
        noise = sample_noise(shape, generator=generator, device=device, dtype=dtype)
    latents = noise * sched.init_noise_sigma
    return run_chain(unet, sched, latents, sched.timesteps, cond, uncond,
                     guidance_scale=guidance_scale, grad_steps=grad_steps, eta=eta,
                     generator=generator, record=record, on_step=on_step)
