"""Which frames of a training video the model sees, and at what size: the official recipe.

The authors' video loader (ali-vilab/VGen, ``tools/datasets/video_dataset.py`` with
``sample_fps: [8]`` and 16 frames in the InstructVideo training config) takes

- **16 consecutive frames at 8 fps**: every ``stride = round(fps / 8)``-th source frame (every 3rd
  of a 24 fps clip), starting at a random frame;
- **the short side resized and the centre cropped** to the training size (``CenterCropWide``:
  scale so that the frame covers H x W, then cut the middle), 256 x 256 at full scale.

ivlite draws the start from a generator seeded by (seed, clip index), so the window of a clip is a
pure function of the run's seed and the clip's row in the caption table, and every start whose
last frame exists is equally likely. Two differences from the official loader, both on purpose:
its start leaves a 5-frame margin because OpenCV's frame count is an estimate (ivlite counts
decoded frames exactly), and it pads a clip too short for the window with blank frames, which
ivlite refuses instead (:func:`frame_window`). The official loader draws a new window each time a
clip is loaded; ivlite encodes each clip's window once and trains on those latents.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import first_line
from .video_io import frames_to_tensor

SAMPLE_FPS = 8
"""Frames per second of the training windows (the official ``sample_fps``)."""


def frame_stride(fps: float, sample_fps: float = SAMPLE_FPS) -> int:
    """Source frames between two window frames: ``round(fps / sample_fps)``, at least 1 (a clip
    slower than ``sample_fps`` is taken frame by frame)."""
    return max(1, round(fps / sample_fps))


def frame_window(total: int, fps: float, num_frames: int, *, sample_fps: float = SAMPLE_FPS,
                 seed: int = 0, index: int = 0) -> list[int]:
    """Indices of ``num_frames`` consecutive frames at ``sample_fps`` in a clip of ``total`` frames
    at ``fps``: ``start + stride * k`` for k < num_frames, the start uniform over every position
    whose last frame exists, drawn from a generator seeded by (``seed``, ``index``).

    ValueError (one line) when the clip holds fewer than ``stride * (num_frames - 1) + 1`` frames.
    """
    stride = frame_stride(fps, sample_fps)
    span = stride * (num_frames - 1) + 1
    if total < span:
        raise ValueError(f"{total} frames at {fps:g} fps; {num_frames} frames at {sample_fps:g} "
                         f"fps (a stride of {stride} source frames) need {span} (the official "
                         f"loader pads such a clip with blank frames, ivlite refuses it): use a "
                         f"longer clip or a smaller num_frames")
    rng = np.random.default_rng([seed, index])
    start = int(rng.integers(total - span + 1))
    return [start + stride * k for k in range(num_frames)]


def resize_centre_crop(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(F, 3, h, w) -> (F, 3, height, width): scale by ``max(height / h, width / w)`` so the frame
    covers the target (the short side, for a square target), then keep the centre."""
    h, w = frames.shape[-2:]
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    if (new_h, new_w) != (h, w):
        frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", antialias=True,
                               align_corners=False)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return frames[..., top:top + height, left:left + width]


def video_fps(path: str | Path) -> float:
    """Frames per second from a video's header (ffmpeg's ``fps``; a GIF's per-frame duration)."""
    import imageio.v3 as iio

    path = Path(path)
    meta = iio.immeta(path)
    fps = meta.get("fps")
    if fps is None and path.suffix.lower() == ".gif" and meta.get("duration"):
        fps = 1000 / meta["duration"]  # Pillow gives a GIF's frame duration in milliseconds
    if not fps or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"video {str(path)!r}: its header gives no frame rate")
    return float(fps)


def frame_count(path: str | Path) -> int:
    """Exact number of frames: the header's where it has one (GIF), else counted by decoding."""
    import imageio.v3 as iio

    n = iio.improps(path).n_images
    if n is not None and math.isfinite(n):
        return int(n)
    return sum(1 for _ in iio.imiter(path))  # ffmpeg's count is an estimate: decode to be sure


def estimated_frame_count(path: str | Path, fps: float) -> float:
    """Frames from the header alone (duration in seconds x ``fps`` for ffmpeg), without
    decoding: for checks before any model loads."""
    import imageio.v3 as iio

    n = iio.improps(path).n_images
    if n is not None and math.isfinite(n):
        return float(n)
    return float(iio.immeta(path).get("duration", 0.0)) * fps


def read_clip(path: str | Path, num_frames: int, height: int, width: int, *,
              sample_fps: float = SAMPLE_FPS, seed: int = 0, index: int = 0) -> torch.Tensor:
    """The training window of one video (:func:`frame_window`, :func:`resize_centre_crop`):
    (num_frames, 3, height, width) in [-1, 1]. Decodes the video twice (count, then pick) so that
    only ``num_frames`` frames are ever held in memory."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {str(path)!r} does not exist")
    try:
        total, fps = frame_count(path), video_fps(path)
    except ValueError:
        raise
    except Exception as err:  # imageio raises OSError, RuntimeError, ... by backend
        raise ValueError(f"video {str(path)!r} cannot be read: {first_line(err)}") from None
    try:
        window = frame_window(total, fps, num_frames, sample_fps=sample_fps, seed=seed,
                              index=index)
    except ValueError as err:
        raise ValueError(f"video {str(path)!r}: {err}") from None
    wanted, picked = set(window), []
    try:
        for i, frame in enumerate(iio.imiter(path)):
            if i in wanted:
                frame = np.asarray(frame)
                picked.append(frame[..., None] if frame.ndim == 2 else frame)  # grey: (H, W)
            if i >= window[-1]:
                break
    except Exception as err:
        raise ValueError(f"video {str(path)!r} cannot be read: {first_line(err)}") from None
    return resize_centre_crop(frames_to_tensor(np.stack(picked)), height, width)
