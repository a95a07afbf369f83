"""The method's settings: what one InstructVideo objective needs, nothing of a run.

:meth:`ivlite.config.Config.method` builds them from a run's configuration (which
validates them); the paper's values (arXiv 2312.12490 and the authors' training config)
are the defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class MethodSettings:
    tau: float = 0.6
    """Editing strength: the chain starts at ``grid[-int(tau * ddim_steps)]``
    (Eq. 4)."""
    ddim_steps: int = 20
    """D, the number of steps of the DDIM grid over T = 1000."""
    grad_steps: int = 1
    """K: the last K steps of the chain carry gradients (truncated backprop; 1 in the
    paper)."""
    chain: str = "edit"
    """``edit`` (InstructVideo: start from the noised clip) or ``full`` (DRaFT: start
    from noise)."""
    guidance_scale: float = 3.0
    """Classifier-free guidance scale s in eps_u + s * (eps_c - eps_u) (1 disables
    guidance)."""
    eta: float = 0.0
    """DDIM's eta: 0 is the deterministic sampler."""
    offset_noise: float = 0.1
    """Strength of the per-frame, per-channel offset added to the noise (official code:
    0.1)."""
    segments: int = 4
    """S, SegVR's number of temporal segments (Eq. 6-7)."""
    frame_sampling: str = "tsn"
    """``tsn``: one random frame per segment (training); ``first``: the first of each
    (evaluation)."""
    lambda_tar: float = 1.0
    """TAR's attenuation rate in c(j) = exp(-lambda_tar * |j - F//2|) (Eq. 8)."""
    tar_normalize: bool = False
    """Divide by the sum of TAR weights instead of S (the paper does not normalise)."""
    checkpoint_decoder: bool = True
    """Recompute the VAE decoder's activations in backward (memory for time, same
    gradient)."""


def edit_step_count(tau: float, ddim_steps: int) -> int:
    """int(tau * D), the editing chain's length (Eq. 4), computed exactly: a product
    within 1e-9 of a whole number is that number (0.29 * 100 is 28.999999999999996 in
    floating point, and means 29 steps); otherwise its floor, as
    ``VideoToVideoSDPipeline``'s strength."""
    product = tau * ddim_steps
    nearest = round(product)
    return int(nearest) if abs(product - nearest) <= 1e-9 else math.floor(product)
