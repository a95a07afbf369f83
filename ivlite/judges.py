"""A judge scores whole clips: clips (N, F, 3, H, W) in [-1, 1] and N prompts -> N scores.

:class:`RewardJudge` turns any frame reward into one (the mean over SegVR's first frames, the
paper's evaluation); :func:`ivlite.registry.build_judge` builds judges by name.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .method.segvr import sample_frame_indices
from .rewards import Reward


class RewardJudge:
    """A frame reward used as a clip judge: mean score over SegVR's first frames of each clip."""

    def __init__(self, reward: Reward, name: str, segments: int = 4):
        self.reward, self.name, self.segments = reward, name, segments

    def __call__(self, clips: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        n, f = clips.shape[:2]
        idx = sample_frame_indices(1, f, self.segments, "first")[0]
        device = getattr(self.reward, "device", None) or module_device(self.reward)
        frames = clips[:, idx].flatten(0, 1).to(device)
        scores = self.reward(frames, [p for p in prompts for _ in range(len(idx))])
        return scores.view(n, len(idx)).float().mean(-1).cpu()


def module_device(module) -> torch.device:
    """The device of a module's first parameter; the CPU for a plain function or no parameters."""
    try:
        return next(module.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")
