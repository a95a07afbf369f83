"""Judge a text-to-video model of the tiny world with the oracle: sample prompts, score clips."""

from __future__ import annotations

import numpy as np
import torch

from ..evaluation import sample_clips
from ..models import VideoModel
from .captions import Scene
from .oracle import judge_clip, summarise


@torch.no_grad()
def oracle_report(model: VideoModel, scenes: list[Scene], *, samples: int = 48, seed: int = 0,
                  ddim_steps: int = 20, guidance_scale: float = 3.0, num_frames: int = 16) -> dict:
    """Oracle summary (colour/shape/motion/all accuracy, frame quality, temporal consistency)
    over ``samples`` clips, prompts cycling through ``scenes`` in a seeded random order."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(scenes))
    prompts = [scenes[order[i % len(scenes)]].caption for i in range(samples)]
    clips = sample_clips(model, prompts, ddim_steps=ddim_steps, guidance_scale=guidance_scale,
                         seed=seed, num_frames=num_frames, height=32, width=32)
    results = [judge_clip(clip.numpy(), prompt) for clip, prompt in zip(clips, prompts)]
    return {"samples": samples, "ddim_steps": ddim_steps, "guidance_scale": guidance_scale,
            **summarise(results)}
