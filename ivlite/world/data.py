"""The tiny world's "real" video-text pairs for InstructVideo: rendered clips, VAE-encoded.

InstructVideo edits real clips (WebVid in the paper). In the tiny world those are fresh renders of
a prompt split's scenes, with the same web-like quality mix the base model was trained on, so
that fine-tuning has blurred, washed-out and shaky clips to improve.
"""

from __future__ import annotations

import torch

from ..data import LatentClips
from ..models import VideoModel
from .captions import split_scenes
from .render import make_dataset


@torch.no_grad()
def world_clips(model: VideoModel, split: str = "in_domain", *, clips: int = 256, seed: int = 0,
                num_frames: int = 16, progress: str | None = None) -> LatentClips:
    """``clips`` renders of ``split``'s scenes encoded to latents (N, 4, F, 8, 8) with captions.
    ``progress`` labels a progress bar over the encoding (None: no bar)."""
    data, captions, _ = make_dataset(clips, 50_000 + seed, split_scenes(split), frames=num_frames)
    frames = torch.from_numpy(data).transpose(1, 2).to(model.device)  # (N, 3, F, 32, 32)
    gen = torch.Generator().manual_seed(seed)
    starts = range(0, len(frames), 32)
    if progress is not None:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=progress, unit="batch of 32 clips")
    latents = torch.cat([model.encode_video(frames[i:i + 32], gen).float().cpu() for i in starts])
    return LatentClips(latents, captions)
