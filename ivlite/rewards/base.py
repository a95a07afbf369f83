"""The reward protocol, weighted sums of rewards, a check that a reward passes
gradients, and the Bradley-Terry loss preference models are trained with.

A reward is any callable ``reward(frames, prompts) -> scores``: ``frames`` (N, 3, H, W)
in [-1, 1] as the VAE decodes them, ``prompts`` a list of N strings, ``scores`` (N,) and
differentiable with respect to ``frames``. InstructVideo backpropagates the reward
through the VAE decoder and the last DDIM step into LoRA, so a reward that silently cuts
the graph trains nothing: :func:`check_reward_gradients` says so before a run starts.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..method.protocols import Reward


class WeightedReward(torch.nn.Module):
    """sum_i w_i * r_i(frames, prompts); the last call's per-reward means are in
    ``last_parts``."""

    def __init__(self, rewards: dict[str, Reward], weights: dict[str, float]):
        super().__init__()
        if set(rewards) != set(weights) or not rewards:
            raise ValueError(f"rewards {sorted(rewards)} and weights {sorted(weights)} "
                             f"must name the same, non-empty set of rewards")
        self.rewards = rewards
        self.weights = weights
        # Register module rewards so .to(device) moves them too.
        self.parts = torch.nn.ModuleDict({k: r for k, r in rewards.items()
                                          if isinstance(r, torch.nn.Module)})
        self.last_parts: dict[str, float] = {}

    def forward(self, frames: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        total = 0.0
        for name, reward in self.rewards.items():
            scores = reward(frames, prompts)
            self.last_parts[name] = float(scores.detach().float().mean())
            total = total + self.weights[name] * scores
        return total


def bradley_terry_loss(better: torch.Tensor, worse: torch.Tensor,
                       scale: torch.Tensor | float) -> torch.Tensor:
    """-log sigmoid(s * (r_w - r_l)), the mean over P pairs: HPSv2's preference loss.

    ``better`` and ``worse`` (P,) are the scores r of the preferred and the other image
    of each pair for the pair's prompt (cosines, for a CLIP score); ``scale`` s is the
    logit scale (CLIP's learned exp(logit_scale)). For two images this equals HPSv2's
    cross-entropy over softmax(s * [r_w, r_l]) with the preferred image as the target.
    """
    return -F.logsigmoid(scale * (better - worse)).mean()


class RewardGradientError(RuntimeError):
    """A reward returns scores that do not carry gradients back to the frames."""


def check_reward_gradients(reward: Reward, prompts: Sequence[str], height: int,
                           width: int, *, device=None,
                           dtype: torch.dtype = torch.float32, seed: int = 0) -> float:
    """Run ``reward`` on random frames and check shape, finiteness and gradient flow.

    Returns the mean absolute gradient. Raises :class:`RewardGradientError` naming the
    likely cause when the scores are detached, the gradient is missing, zero or
    non-finite.
    """
    gen = torch.Generator().manual_seed(seed)
    frames = (torch.rand((len(prompts), 3, height, width), generator=gen) * 2 - 1)
    frames = frames.to(device=device, dtype=dtype).requires_grad_(True)
    with torch.enable_grad():
        scores = reward(frames, list(prompts))
        if not isinstance(scores, torch.Tensor) or scores.shape != (len(prompts),):
            shape = getattr(scores, "shape", type(scores).__name__)
            raise RewardGradientError(f"reward returned {shape}; expected a tensor of "
                                      f"shape ({len(prompts)},), one score per frame")
        if not torch.isfinite(scores).all():
            raise RewardGradientError(
                f"reward returned non-finite scores {scores.tolist()}")
        if not scores.requires_grad:
            raise RewardGradientError(
                "reward scores carry no gradient: the reward runs under "
                "torch.no_grad(), calls .detach()/.item()/.numpy(), or converts frames "
                "to PIL images or uint8")
        scores.sum().backward()
    grad = frames.grad
    if grad is None or not grad.abs().sum() > 0:
        raise RewardGradientError(
            "reward's gradient with respect to the frames is zero: a "
            "non-differentiable step (rounding, uint8 conversion, argmax, a hard "
            "threshold or a 'nearest' resize) cuts it")
    if not torch.isfinite(grad).all():
        raise RewardGradientError(
            "reward's gradient with respect to the frames is not finite")
    return float(grad.abs().mean())
