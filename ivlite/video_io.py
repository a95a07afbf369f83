"""Reading and writing clips (imageio with its bundled ffmpeg): GIF and MP4.

Frames inside ivlite are float tensors (F, 3, H, W) in [-1, 1]; files hold uint8 RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import first_line


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(F, 3, H, W) in [-1, 1] -> (F, H, W, 3) uint8."""
    x = ((frames.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def write_video(frames: torch.Tensor, path: str | Path, fps: int = 8, scale: int = 1) -> Path:
    """Write (F, 3, H, W) frames in [-1, 1] as ``.gif`` or ``.mp4`` (chosen by the suffix),
    each pixel repeated ``scale`` x ``scale`` times (nearest neighbour: a 32x32 clip stays sharp
    at 256x256 in any viewer)."""
    import imageio.v3 as iio

    if not (isinstance(scale, int) and scale >= 1):
        raise ValueError(f"scale={scale!r} must be an integer >= 1")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_uint8(frames).repeat(scale, axis=1).repeat(scale, axis=2)
    if path.suffix == ".gif":
        iio.imwrite(path, data, duration=1000 / fps, loop=0)
    elif path.suffix == ".mp4":
        iio.imwrite(path, data, fps=fps, codec="libx264", macro_block_size=1)
    else:
        raise ValueError(f"{path}: video files must end in .gif or .mp4")
    return path


def read_video(path: str | Path, num_frames: int) -> torch.Tensor:
    """Read a clip and take ``num_frames`` frames evenly spread over it: (F, 3, H, W) in [-1, 1].

    For viewing and tests; training windows follow the official sampling
    (:func:`ivlite.clip_sampling.read_clip`)."""
    import imageio.v3 as iio

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"video {str(path)!r} is a folder; expected a video file")
    if not path.is_file():
        raise FileNotFoundError(f"video {str(path)!r} does not exist")
    try:
        data = np.asarray(iio.imread(path))
    except Exception as err:
        raise ValueError(f"video {str(path)!r} cannot be read: {first_line(err)}") from err
    if data.ndim == 3:  # a single image
        data = data[None]
    if data.ndim != 4 or len(data) == 0:
        raise ValueError(f"video {str(path)!r} has no frames (array shape {data.shape})")
    idx = np.linspace(0, len(data) - 1, num_frames).round().astype(int)
    return frames_to_tensor(data[idx])


def frames_to_tensor(data: np.ndarray) -> torch.Tensor:
    """Decoded frames (F, H, W, C) uint8, C = 1, 3 or 4 -> (F, 3, H, W) float in [-1, 1]."""
    data = data[..., :3]
    if data.shape[-1] == 1:
        data = np.repeat(data, 3, axis=-1)
    return torch.from_numpy(data.astype(np.float32)).permute(0, 3, 1, 2) / 127.5 - 1
