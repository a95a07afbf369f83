"""DDIM sampling with classifier-free guidance and truncated backpropagation.

The update itself is diffusers' :class:`~diffusers.DDIMScheduler` (``eta = 0`` by
default, so deterministic). What ivlite adds is *where gradients flow*: of the chain's
steps, only the last ``grad_steps`` (K) run with autograd on; the earlier ones run under
``torch.no_grad`` and cost no activation memory. K = 1 is the paper's
"trunc_backprop_timestep 1"; K = all steps is full backpropagation through the chain.

Shapes: latents ``(B, C, F, h, w)``; text embeddings ``(B, L, D)``; the unconditional
embedding ``(1, L, D)`` or ``(B, L, D)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from diffusers import DDIMScheduler

from .settings import edit_step_count


def ddim_scheduler(base: DDIMScheduler | dict, ddim_steps: int) -> DDIMScheduler:
    """A private copy of ``base`` set to a ``ddim_steps``-step grid (the caller's stays
    untouched)."""
    config = base.config if isinstance(base, DDIMScheduler) else base
    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(ddim_steps)
    return scheduler


def chain_timesteps(scheduler: DDIMScheduler, ddim_steps: int, tau: float = 1.0
                    ) -> torch.Tensor:
    """The timesteps an editing chain of strength ``tau`` visits: the last int(tau * D)
    of the grid (computed exactly, :func:`.settings.edit_step_count`: tau = 0.29,
    D = 100 gives 29).

    This is ``VideoToVideoSDPipeline.get_timesteps`` and the paper's Eq. 4 start:
    tau = 0.6, D = 20 on the ModelScope grid (951, 901, ..., 1) gives 551, 501, ..., 1
    (12 steps).
    """
    grid = ddim_scheduler(scheduler, ddim_steps).timesteps
    n = min(edit_step_count(tau, ddim_steps), ddim_steps)
    if n < 1:
        raise ValueError(f"tau={tau} with ddim_steps={ddim_steps} leaves "
                         f"int(tau * D) = 0 steps; "
                         f"need tau >= 1 / ddim_steps = {1 / ddim_steps:.4g}")
    return grid[ddim_steps - n:]


def start_timestep(scheduler: DDIMScheduler, ddim_steps: int, tau: float) -> int:
    """t_start = grid[-int(tau * D)]: the noise level the clean video is pushed to
    (Eq. 4)."""
    return int(chain_timesteps(scheduler, ddim_steps, tau)[0])


def sample_noise(shape: tuple[int, ...], *, offset_noise: float = 0.0,
                 generator: torch.Generator | None = None, device=None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gaussian noise (B, C, F, h, w) plus ``offset_noise`` x a per-(clip, channel,
    frame) constant.

    The official InstructVideo code uses
    eps = randn(b, c, f, h, w) + 0.1 * randn(b, c, f, 1, 1): the offset lets the model
    change a frame's overall brightness or colour, which pure per-pixel noise at
    moderate t barely allows.
    """
    # Drawn on the generator's device, then moved: the same seed gives the same noise on
    # any device.
    gen_device = generator.device if generator is not None else device
    noise = torch.randn(shape, generator=generator, device=gen_device, dtype=dtype)
    if offset_noise > 0:
        noise = noise + offset_noise * torch.randn(
            (*shape[:3], 1, 1), generator=generator, device=gen_device, dtype=dtype)
    return noise.to(device)


def guided_noise(unet: torch.nn.Module, latents: torch.Tensor, t: torch.Tensor | int,
                 cond: torch.Tensor, uncond: torch.Tensor | None, guidance_scale: float
                 ) -> torch.Tensor:
    """Classifier-free guided eps: eps_u + s * (eps_c - eps_u), both in one batched UNet
    call."""
    x = latents.to(unet.dtype)
    if uncond is None or guidance_scale == 1.0:
        return unet(x, t, encoder_hidden_states=cond.to(unet.dtype)).sample
    uncond = uncond.expand(cond.shape[0], -1, -1)
    eps = unet(torch.cat([x, x]), t,
               encoder_hidden_states=torch.cat([uncond, cond]).to(unet.dtype)).sample
    eps_uncond, eps_cond = eps.chunk(2)
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


@dataclass
class ChainResult:
    """What a DDIM chain produced. ``latents`` carries gradients when
    ``grad_steps > 0``."""

    latents: torch.Tensor
    """Final latents x_0 (B, C, F, h, w)."""
    timesteps: torch.Tensor
    """The timesteps visited, first to last."""
    unet_calls: int
    """Guided noise predictions made (each one batched UNet call of 2B clips with
    guidance)."""
    trajectory: list[tuple[int, torch.Tensor, torch.Tensor]] = field(
        default_factory=list)
    """If recorded: (t, x_t before the step, predicted x_0) per step, detached, on the
    CPU."""


def run_chain(unet: torch.nn.Module, scheduler: DDIMScheduler, latents: torch.Tensor,
              timesteps: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None,
              *, guidance_scale: float = 3.0, grad_steps: int = 0, eta: float = 0.0,
              generator: torch.Generator | None = None, record: bool = False,
              on_step: Callable[[int, int], None] | None = None) -> ChainResult:
    """Denoise ``latents`` (at ``timesteps[0]``) through ``timesteps`` with DDIM.

    The last ``grad_steps`` steps run with gradients enabled (truncated backprop); the
    others under ``no_grad``. ``scheduler`` must already be set to the grid the
    timesteps come from (see :func:`ddim_scheduler`): DDIM's previous timestep is
    t - T / D.
    """
    n = len(timesteps)
    if not 0 <= grad_steps <= n:
        raise ValueError(f"grad_steps={grad_steps} must be between 0 and the chain's "
                         f"{n} steps")
    trajectory = []
    x = latents.detach() if grad_steps < n else latents
    for i, t in enumerate(timesteps):
        with torch.set_grad_enabled(i >= n - grad_steps and torch.is_grad_enabled()):
            eps = guided_noise(unet, x, t, cond, uncond, guidance_scale)
            out = scheduler.step(eps.to(x.dtype), t, x, eta=eta, generator=generator)
        if record:
            trajectory.append((int(t), x.detach().float().cpu(),
                               out.pred_original_sample.detach().float().cpu()))
        x = out.prev_sample
        if on_step is not None:
            on_step(i, int(t))
    return ChainResult(x, timesteps, n, trajectory)
