"""Evaluation: sample clips for prompts x seeds and score them with a reward.

As in the paper's evaluation, clips are generated from pure noise with the full D-step chain
(guidance 3.0) and the reward is computed on SegVR's ``first`` frames (frames 0, 4, 8, 12 for
F = 16), averaged per clip without TAR weighting. Results are a JSON-able dict and a markdown
table.
"""

from __future__ import annotations

import statistics
from typing import Sequence

import torch

from .editing import generate
from .models import VideoModel
from .rewards import Reward
from .segvr import decode_segments, sample_frame_indices


@torch.no_grad()
def sample_videos(model: VideoModel, prompts: Sequence[str], *, num_frames: int = 16,
                  height: int = 256, width: int = 256, ddim_steps: int = 20,
                  guidance_scale: float = 3.0, seed: int = 0) -> torch.Tensor:
    """Latents (N, C, F, h, w) of one clip per prompt; clip i uses generator seed ``seed + i``."""
    uncond = model.encode_prompts([""])
    out = []
    for i, prompt in enumerate(prompts):
        gen = torch.Generator().manual_seed(seed + i)
        shape = model.latent_shape(1, num_frames, height, width)
        out.append(generate(model.unet, model.scheduler, shape, model.encode_prompts([prompt]),
                            uncond, ddim_steps=ddim_steps, guidance_scale=guidance_scale,
                            generator=gen, device=model.device).latents)
    return torch.cat(out)


@torch.no_grad()
def evaluate(model: VideoModel, reward: Reward, prompts: Sequence[str], *, seeds: int = 1,
             num_frames: int = 16, height: int = 256, width: int = 256, ddim_steps: int = 20,
             guidance_scale: float = 3.0, segments: int = 4, seed: int = 0) -> dict:
    """Reward of ``seeds`` clips per prompt: per-prompt means, overall mean and std over clips."""
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds={seeds!r} must be an integer >= 1 (clips per prompt)")
    if not prompts:
        raise ValueError("prompts: need at least one prompt to evaluate")
    per_prompt: dict[str, list[float]] = {p: [] for p in prompts}
    for s in range(seeds):
        latents = sample_videos(model, prompts, num_frames=num_frames, height=height, width=width,
                                ddim_steps=ddim_steps, guidance_scale=guidance_scale,
                                seed=seed + s * len(prompts))
        idx = sample_frame_indices(len(prompts), num_frames, segments, "first", device=model.device)
        frames = decode_segments(model.vae, latents, idx)
        scores = reward(frames, [p for p in prompts for _ in range(segments)]).view(len(prompts), -1)
        for prompt, clip_scores in zip(prompts, scores.float().mean(-1).tolist()):
            per_prompt[prompt].append(clip_scores)
    clips = [v for values in per_prompt.values() for v in values]
    return {"mean": statistics.fmean(clips), "std": statistics.pstdev(clips), "clips": len(clips),
            "per_prompt": {p: statistics.fmean(v) for p, v in per_prompt.items()},
            "settings": dict(seeds=seeds, num_frames=num_frames, height=height, width=width,
                             ddim_steps=ddim_steps, guidance_scale=guidance_scale,
                             segments=segments, seed=seed)}


def to_markdown(results: dict, title: str = "reward") -> str:
    """A markdown table: one row per prompt, then the mean +- std over all clips."""
    lines = [f"| prompt | {title} |", "|---|---|"]
    lines += [f"| {p} | {v:.4f} |" for p, v in results["per_prompt"].items()]
    lines.append(f"| **all ({results['clips']} clips)** | **{results['mean']:.4f} +- "
                 f"{results['std']:.4f}** |")
    return "\n".join(lines) + "\n"
