"""Temporally Attenuated Reward, TAR (paper Sec. 3.2.2, Eq. 8).

Optimising every frame's reward equally pushes frames apart (structural twitching,
colour jitter). TAR weights the score of a frame with index j (0-based) by
c(j) = exp(-lambda_tar * |j - F // 2|): the centre frame counts fully and the others
fade exponentially, so fine-tuning reshapes the middle of the clip and the rest follows
through the model's temporal layers. With F = 16: c(8) = 1, c(7) = c(9) = e^-1 = 0.37,
c(0) = e^-8 = 3e-4.

The video reward over SegVR's S picked frames is
R = (1/S) * sum_s c(j_s) * r(frame_{j_s}, y), not normalised (the official code); the
loss is mean over the batch of 1 - R.
"""

from __future__ import annotations

import torch


def tar_weights(indices: torch.Tensor, num_frames: int, lambda_tar: float = 1.0
                ) -> torch.Tensor:
    """c(j) = exp(-lambda_tar * |j - F // 2|) for frame indices of any shape (Eq. 8)."""
    if lambda_tar < 0:
        raise ValueError(f"lambda_tar={lambda_tar} must be >= 0")
    return torch.exp(-lambda_tar * (indices.float() - num_frames // 2).abs())


def video_reward(scores: torch.Tensor, indices: torch.Tensor, num_frames: int,
                 lambda_tar: float = 1.0, normalize: bool = False) -> torch.Tensor:
    """Per-clip reward R (B,) from frame scores (B, S) at frame indices (B, S).

    ``normalize=False`` (paper): R = mean_s c_s * r_s. ``normalize=True``:
    R = sum c_s r_s / sum c_s, a weighted average that keeps R on the scale of the frame
    scores.
    """
    c = tar_weights(indices.to(scores.device), num_frames, lambda_tar).to(scores.dtype)
    if normalize:
        return (c * scores).sum(-1) / c.sum(-1)
    return (c * scores).mean(-1)


def reward_loss(reward: torch.Tensor) -> torch.Tensor:
    """Loss = mean over the batch of (1 - R): the gradient of -R, on a readable
    scale."""
    return (1.0 - reward).mean()
