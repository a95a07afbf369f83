"""Helpers for the book: figures of frames, inline videos, and small measurements.

The chapters in ``book/`` are thin drivers; what they compute more than once lives here:

- figures: :func:`frame_strip` (a clip's frames in a row, picked frames outlined),
  :func:`clip_rows` (several clips, one per row), :func:`pick_chart` (which frames SegVR picks),
  :func:`chain_frames` (one frame of x_t and of the predicted x_0 at every step of a DDIM chain);
- videos that play in a static page: :func:`video_html` / :func:`videos_html` (inline base64 GIFs);
- measurements: :func:`score_frames` (reward of every frame of clips), :func:`vae_roundtrip`
  (world clips as a VAE decodes them), :func:`segvr_estimates` (the video reward over many random
  SegVR draws), :func:`pixel_gradient` (d score / d pixels), :func:`effective_frames` (how many
  frames a set of TAR weights really counts), :class:`FrameCounter` (frames through a module),
  :class:`CallLog` (the calls of a module: batch size, with or without autograd) and
  :func:`saved_activation_bytes` (memory a backward pass keeps).

Frames are (F, 3, H, W) in [-1, 1], numpy or torch, as everywhere in ivlite.
"""

from __future__ import annotations

import base64
import html
import io
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .method.segvr import sample_frame_indices, segment_bounds
from .method.tar import video_reward


# ----------------------------------------------------------------------------- conversions


def to_images(frames: Any) -> np.ndarray:
    """(F, 3, H, W) or (3, H, W) in [-1, 1], numpy or torch -> float (F, H, W, 3) in [0, 1]."""
    if hasattr(frames, "detach"):
        frames = frames.detach().float().cpu().numpy()
    x = np.asarray(frames, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected frames of shape (F, 3, H, W), got {x.shape}")
    return np.clip((x.transpose(0, 2, 3, 1) + 1.0) * 0.5, 0.0, 1.0)


def to_uint8_images(frames: Any) -> np.ndarray:
    """Frames in [-1, 1] -> uint8 (F, H, W, 3), rounded to the nearest level."""
    return np.round(to_images(frames) * 255.0).astype(np.uint8)


# ----------------------------------------------------------------------------- figures


def frame_strip(frames: Any, *, titles: Sequence[str] | None = None,
                highlight: Sequence[int] = (), segments: int | None = None,
                title: str | None = None, size: float = 0.6, dpi: int = 72):
    """One row of a clip's frames; frames in ``highlight`` are outlined in orange.

    ``segments`` draws SegVR's segment borders (S equal parts of the clip) as black bars between
    frames; ``titles`` labels each frame (default: its index). Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    images = to_images(frames)
    n = len(images)
    height = size * 1.35 + (0.3 if title else 0.0)
    fig, axes = plt.subplots(1, n, figsize=(size * n, height), dpi=dpi, squeeze=False)
    picked = {int(i) for i in highlight}
    for j, ax in enumerate(axes[0]):
        ax.imshow(images[j], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(str(j) if titles is None else titles[j], fontsize=7, pad=2)
        for spine in ax.spines.values():
            spine.set_edgecolor("tab:orange" if j in picked else "0.8")
            spine.set_linewidth(3 if j in picked else 0.5)
    top = 1.0
    if title:
        top = 1.0 - 0.3 / fig.get_figheight()
        fig.suptitle(title, fontsize=9, y=1.0, va="top")
    fig.tight_layout(pad=0.2, w_pad=0.6, rect=(0, 0, 1, top))
    for start, _ in (segment_bounds(n, segments)[1:] if segments else []):
        left, right = axes[0, start - 1].get_position(), axes[0, start].get_position()
        x = 0.5 * (left.x1 + right.x0)
        fig.add_artist(Line2D([x, x], [left.y0, left.y1], color="k", lw=2,
                              transform=fig.transFigure))
    return fig


def clip_rows(clips: Sequence[Any], labels: Sequence[str], *, frames: Sequence[int] | None = None,
              size: float = 0.6, dpi: int = 72, title: str | None = None,
              titles: Sequence[str] | None = None):
    """Several clips, one per row (the frames ``frames`` of each, default all), labelled.

    ``titles`` names the columns (default: the frame index).
    """
    import matplotlib.pyplot as plt

    images = [to_images(c) for c in clips]
    ids = list(range(len(images[0]))) if frames is None else list(frames)
    fig, axes = plt.subplots(len(images), len(ids), squeeze=False, dpi=dpi,
                             figsize=(size * len(ids) + 1.2, size * len(images) + 0.5))
    for row, (clip, label) in enumerate(zip(images, labels)):
        for col, j in enumerate(ids):
            ax = axes[row, col]
            ax.imshow(clip[j], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(str(j) if titles is None else titles[col], fontsize=7, pad=2)
        axes[row, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    top = 1.0
    if title:
        top = 1.0 - 0.3 / fig.get_figheight()
        fig.suptitle(title, fontsize=9, y=1.0, va="top")
    fig.tight_layout(pad=0.2, w_pad=0.2, h_pad=0.2, rect=(0, 0, 1, top))
    return fig


def pick_chart(indices: Any, num_frames: int, segments: int, *, labels: Sequence[str] | None = None,
               ax=None):
    """Which frames are picked: one row per draw, one column per frame, picked cells filled.

    ``indices`` (R, S) frame indices; segment borders are drawn as vertical lines. Returns the Axes.
    """
    import matplotlib.pyplot as plt

    idx = np.asarray(indices.tolist() if hasattr(indices, "tolist") else indices, dtype=int)
    rows = len(idx)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.32 * num_frames + 1.5, 0.28 * rows + 0.8), dpi=72)
    grid = np.zeros((rows, num_frames))
    for r, picks in enumerate(idx):
        grid[r, picks] = 1.0
    ax.imshow(np.ma.masked_equal(grid, 0), cmap="autumn", vmin=0, vmax=1.5, aspect="auto",
              interpolation="nearest")
    for start, _ in segment_bounds(num_frames, segments)[1:]:
        ax.axvline(start - 0.5, color="k", lw=1.5)
    ax.set_xticks(range(num_frames))
    ax.set_xticks(np.arange(num_frames + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(rows + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="0.85", lw=0.5)
    ax.tick_params(which="minor", length=0)
    ax.set_yticks(range(rows))
    ax.set_yticklabels([str(r) for r in range(rows)] if labels is None else labels, fontsize=7)
    ax.set_xlabel("frame index j")
    return ax


@torch.no_grad()
def chain_frames(model, trajectory: Sequence[tuple[int, torch.Tensor, torch.Tensor]], *,
                 frame: int = 0, clip: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """One frame of a recorded DDIM chain (``run_chain(..., record=True).trajectory``), decoded.

    Returns (x_t frames (n, 3, H, W), predicted x_0 frames (n, 3, H, W), timesteps): for each
    of the n steps, the latent the step started from and the clean clip the UNet predicted from
    it, frame ``frame`` of clip ``clip``, through the VAE decoder, clamped to [-1, 1].
    """
    xt = torch.stack([x[clip, :, frame] for _, x, _ in trajectory])
    x0 = torch.stack([p[clip, :, frame] for _, _, p in trajectory])
    param = next(model.vae.parameters())
    decoded = model.decode_latents(torch.cat([xt, x0]).to(param.device, param.dtype))
    decoded = decoded.clamp(-1, 1).float().cpu()
    return decoded[:len(xt)], decoded[len(xt):], [int(t) for t, _, _ in trajectory]


# ----------------------------------------------------------------------------- inline videos


def gif_bytes(frames: Any, fps: int = 8) -> bytes:
    """An animated, looping GIF of the frames (exact colours up to 256 per frame, no dithering)."""
    from PIL import Image

    images = [Image.fromarray(img).quantize(256, dither=Image.Dither.NONE)
              for img in to_uint8_images(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=int(round(1000 / fps)), loop=0, optimize=False)
    return buffer.getvalue()


def _gif_tag(frames: Any, fps: int, width: int, caption: str | None) -> str:
    data = base64.b64encode(gif_bytes(frames, fps)).decode("ascii")
    img = (f'<img src="data:image/gif;base64,{data}" width="{width}" '
           f'style="image-rendering: pixelated; image-rendering: crisp-edges;"/>')
    text = f'<figcaption style="font-size: 0.8em; max-width: {width + 24}px;">' \
           f'{html.escape(caption)}</figcaption>' if caption else ""
    return f'<figure style="display: inline-block; margin: 4px 10px; text-align: center;">' \
           f'{img}{text}</figure>'


def video_html(frames: Any, fps: int = 8, *, width: int = 128, caption: str | None = None):
    """An ``IPython.display.HTML`` that plays the clip (inline GIF), scaled up without smoothing."""
    from IPython.display import HTML

    return HTML(_gif_tag(frames, fps, width, caption))


def videos_html(clips: Sequence[Any], captions: Sequence[str] | None = None, fps: int = 8, *,
                width: int = 128):
    """Several clips side by side, each with an optional caption."""
    from IPython.display import HTML

    captions = [None] * len(clips) if captions is None else list(captions)
    return HTML("<div>" + "".join(_gif_tag(c, fps, width, t) for c, t in zip(clips, captions))
                + "</div>")


# ----------------------------------------------------------------------------- measurements


@torch.no_grad()
def score_frames(reward, clips: Any, captions: Sequence[str], *, batch: int = 256) -> torch.Tensor:
    """Reward of every frame: clips (N, F, 3, H, W) in [-1, 1] and N captions -> scores (N, F)."""
    x = torch.as_tensor(np.asarray(clips) if not isinstance(clips, torch.Tensor) else clips)
    n, f = x.shape[:2]
    flat = x.reshape(n * f, *x.shape[2:]).float()
    prompts = [c for c in captions for _ in range(f)]
    scores = [reward(flat[i:i + batch], prompts[i:i + batch]) for i in range(0, n * f, batch)]
    return torch.cat(scores).view(n, f)


@torch.no_grad()
def vae_roundtrip(vae, clips: Any, *, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """World clips as the VAE sees and returns them, to mimic generated frames.

    clips (N, F, 3, H, W) in [-1, 1] -> (decoded clips (N, F, 3, H, W), scaled latents
    (N, C, F, h, w) in the layout the video UNet and :func:`ivlite.decode_segments` use). The
    encoder's posterior mean is used (no sampling noise), so the result is deterministic.
    """
    x = torch.as_tensor(np.asarray(clips) if not isinstance(clips, torch.Tensor) else clips)
    n, f = x.shape[:2]
    flat = x.reshape(n * f, *x.shape[2:]).float()
    scale = vae.config.scaling_factor
    z = torch.cat([vae.encode(flat[i:i + batch]).latent_dist.mean
                   for i in range(0, n * f, batch)])
    decoded = torch.cat([vae.decode(z[i:i + batch]).sample for i in range(0, n * f, batch)])
    latents = (z * scale).view(n, f, *z.shape[1:]).transpose(1, 2).contiguous()
    return decoded.view(n, f, *decoded.shape[1:]), latents


def segvr_estimates(scores: torch.Tensor, segments: int, draws: int, *, mode: str = "tsn",
                    lambda_tar: float = 0.0, normalize: bool = True, seed: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The video reward R of each clip under ``draws`` random SegVR draws.

    ``scores`` (N, F): the reward of every frame (computed once; a draw only picks which of them
    count). Each draw picks S frames per clip with :func:`ivlite.sample_frame_indices` and
    combines them with :func:`ivlite.video_reward` (``lambda_tar=0``: the plain mean of Eq. 7).
    Returns (R (draws, N), indices (draws, N, S)).
    """
    n, f = scores.shape
    gen = torch.Generator().manual_seed(seed)
    idx = sample_frame_indices(draws * n, f, segments, mode, generator=gen).view(draws, n, segments)
    picked = scores.unsqueeze(0).expand(draws, -1, -1).gather(2, idx)
    return video_reward(picked, idx, f, lambda_tar, normalize=normalize), idx


def pixel_gradient(reward, frame: Any, caption: str) -> tuple[float, torch.Tensor]:
    """score(frame, caption) and its gradient with respect to the frame's pixels, (3, H, W)."""
    x = torch.as_tensor(np.asarray(frame) if not isinstance(frame, torch.Tensor) else frame)
    x = x.detach().float().clone()[None].requires_grad_(True)
    with torch.enable_grad():
        score = reward(x, [caption])
        score.sum().backward()
    return float(score.detach()), x.grad[0]


def effective_frames(weights: Any) -> float | torch.Tensor:
    """Kish's effective sample size (sum c)^2 / sum c^2 over the last axis.

    Equal weights over n frames give n; one dominant weight gives about 1. A measure of how many
    frames a weighted reward really listens to.
    """
    c = torch.as_tensor(weights, dtype=torch.float64)
    n_eff = c.sum(-1) ** 2 / (c ** 2).sum(-1)
    return float(n_eff) if n_eff.ndim == 0 else n_eff


def _batch_size(args: tuple, kwargs: dict) -> int:
    """Batch size of a forward call: its first tensor input, by position or (as diffusers models
    are often called) by keyword."""
    return int(next(x for x in (*args, *kwargs.values()) if isinstance(x, torch.Tensor)).shape[0])


class FrameCounter:
    """Counts the images (batch items) that pass through the forward of some modules.

    ``with FrameCounter(vae.decoder, reward.model.visual) as count: ...`` then ``count.frames``
    maps each module's position (0, 1, ...) to the number of images it processed.
    """

    def __init__(self, *modules: torch.nn.Module):
        self.modules = modules
        self.frames = {i: 0 for i in range(len(modules))}
        self._handles: list = []

    def _hook(self, i: int):
        def hook(module, args, kwargs, output):
            self.frames[i] += _batch_size(args, kwargs)
        return hook

    def __enter__(self) -> "FrameCounter":
        self._handles = [m.register_forward_hook(self._hook(i), with_kwargs=True)
                         for i, m in enumerate(self.modules)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class CallLog:
    """Records every forward call of a module: its batch size and whether autograd was on.

    ``with CallLog(unet) as log: ...`` then ``log.grad`` is one bool per call (``True`` where the
    call ran with gradients enabled, i.e. where the backward pass will reach) and ``log.batch``
    the batch size of each call.
    """

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self.grad: list[bool] = []
        self.batch: list[int] = []
        self._handle = None

    def _hook(self, module, args, kwargs, output):
        self.grad.append(torch.is_grad_enabled())
        self.batch.append(_batch_size(args, kwargs))

    @property
    def calls(self) -> int:
        return len(self.grad)

    def __enter__(self) -> "CallLog":
        self._handle = self.module.register_forward_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()
        self._handle = None


@contextmanager
def saved_activation_bytes(*modules: torch.nn.Module) -> Iterator[dict[str, Any]]:
    """Bytes of the activations autograd keeps for backward inside the block (``out["bytes"]``).

    The memory a backward pass must hold on to; it grows with every frame decoded and scored with
    gradients. Each storage counts once (an expanded or reshaped view costs nothing extra), and
    the parameters and buffers of ``modules`` are left out: they live anyway (but not the copies
    autocast makes of them in another precision). ``out["by_dtype"]`` splits the bytes by the
    saved tensors' dtype (``"torch.float32"``, ...), ``out["tensors"]`` counts the storages.
    """
    out: dict[str, Any] = {"bytes": 0, "tensors": 0, "by_dtype": {}}
    seen = {t.untyped_storage().data_ptr() for m in modules
            for t in [*m.parameters(), *m.buffers()]}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            out["bytes"] += storage.nbytes()
            out["tensors"] += 1
            key = str(t.dtype)
            out["by_dtype"][key] = out["by_dtype"].get(key, 0) + storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield out
