"""Helpers for the book: figures of frames, inline videos, and small measurements.

The chapters in ``book/`` are thin drivers; what they compute more than once lives here:

- figures: :func:`frame_strip` (a clip's frames in a row, picked frames outlined),
  :func:`clip_rows` (several clips, one per row), :func:`before_after` (pairs of clips side by
  side), :func:`pick_chart` (which frames SegVR picks),
  :func:`chain_frames` (one frame of x_t and of the predicted x_0 at every step of a DDIM chain),
  :func:`schedule_figure` (the noise schedule and where editing chains start),
  :func:`chain_cost_figure` (UNet calls against tau and D), :func:`gradient_maps` (a reward's
  gradient in pixel space);
  figures fit the page's column (<= 7.5 in at 100 dpi) with text >= 9 pt, and frames are
  enlarged by whole factors with pixel repetition, so a 32x32 frame stays sharp;
- intervals: :func:`interval_chart` (a forest plot of paired gains with their 95% intervals),
  :func:`band_chart` (curves with interval bands, e.g. gains along a training run);
- videos that play in a static page: :func:`video_html` / :func:`videos_html` (inline base64 GIFs);
  :func:`slider` (one ipywidgets slider, for a live kernel);
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

# The page's text column holds a 7.5-inch figure at matplotlib's default 100 dpi (750 px) without
# scaling it, so a figure no wider than that shows its 9-pt labels at 9 pt and every frame pixel
# as a whole block of screen pixels.
PAGE_WIDTH = 7.5
MIN_FONTSIZE = 9
DPI = 100
MAX_SCALE = 4   # small frames are enlarged at most 4x (32 px -> 128 px)
_GAP = 8        # px between frames: room for a highlight outline or a segment border
_PAD = 4        # px of margin around the figure and between a label and its frames


def _text_px(text: str, fontsize: float) -> tuple[float, float]:
    """(width, height) in px at :data:`DPI` of ``text`` (lines split at ``\\n``)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    prop, lines = FontProperties(size=fontsize), text.split("\n")
    width = max(TextToPath().get_text_width_height_descent(line, prop, ismath=False)[0]
                for line in lines)
    return width * DPI / 72, len(lines) * 1.25 * fontsize * DPI / 72


def _check_figure_args(scale: int | None, fontsize: float) -> None:
    if scale is not None and (not isinstance(scale, int) or scale < 1):
        raise ValueError(f"scale={scale!r}; allowed: a whole number >= 1 (screen pixels per "
                         f"frame pixel) or None (the largest that fits the page)")
    if fontsize < MIN_FONTSIZE:
        raise ValueError(f"fontsize={fontsize}; allowed: >= {MIN_FONTSIZE} (legible in the page)")


def _fit_scale(frame_px: int, cols: int, room_px: float) -> int:
    """The largest whole enlargement (1 .. MAX_SCALE) at which ``cols`` frames of ``frame_px``
    fit ``room_px``; 1 if none does (frames are never shrunk)."""
    fits = [k for k in range(1, MAX_SCALE + 1)
            if cols * frame_px * k + (cols - 1) * _GAP <= room_px]
    return max(fits, default=1)


def _frame_grid(images: Sequence[np.ndarray], labels: Sequence[str] | None,
                col_titles: Sequence[str] | None, *, title: str | None, scale: int | None,
                fontsize: float):
    """Lay out rows of frames at exact pixel sizes; returns (Figure, axes (rows, cols)).

    ``images[r]`` is row r's (C, H, W, 3) frames in [0, 1]. Each frame is enlarged by a whole
    factor with nearest-neighbour repetition, so its pixels stay sharp squares. Row labels sit
    left of their row when they leave room for the frames, else above it; column titles turn
    vertical when they are wider than a frame.
    """
    import matplotlib.pyplot as plt

    rows, cols, h, w = len(images), *images[0].shape[:3]
    line = 1.25 * fontsize * DPI / 72
    page = PAGE_WIDTH * DPI - 2 * _PAD
    label_w = max((_text_px(s, fontsize)[0] for s in labels or []), default=0.0)
    label_h = max((_text_px(s, fontsize)[1] for s in labels or []), default=0.0)
    # Beside the row if the frames keep most of their size and the row still fits the page.
    k_free, k_side = (_fit_scale(w, cols, page - room) for room in (0.0, label_w + _PAD))
    side = bool(labels) and k_side >= 0.6 * k_free and (
        label_w + _PAD + cols * w * k_side + (cols - 1) * _GAP <= page)
    left = label_w + _PAD if side else 0.0
    k = scale or _fit_scale(w, cols, page - left)
    fw, fh = w * k, h * k
    title_w = max((_text_px(s, fontsize)[0] for s in col_titles or []), default=0.0)
    vertical = title_w > fw + _GAP - 2
    head = 0.0 if not col_titles else (title_w + _PAD if vertical else line) + 2
    above = 0.0 if side or not labels else label_h + 2
    top = _text_px(title, fontsize)[1] + _PAD if title else 0.0
    width = 2 * _PAD + left + cols * fw + (cols - 1) * _GAP
    if title:
        width = max(width, _text_px(title, fontsize)[0] + 2 * _PAD)
    row_h = above + fh + _GAP
    height = 2 * _PAD + top + head + rows * row_h - _GAP
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    axes = np.empty((rows, cols), dtype=object)
    for r, clip in enumerate(images):
        # Top down: figure title, [row label], column titles (first row only), frames.
        y = height - _PAD - top - head - r * row_h - above - fh   # bottom edge of the row, px
        for c in range(cols):
            x = _PAD + left + c * (fw + _GAP)
            ax = fig.add_axes((x / width, y / height, fw / width, fh / height))
            ax.imshow(clip[c].repeat(k, 0).repeat(k, 1), interpolation="nearest", aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            axes[r, c] = ax
            if r == 0 and col_titles:
                ax.text(0.5, 1.0 + 2 / fh, col_titles[c], transform=ax.transAxes, ha="center",
                        va="bottom", fontsize=fontsize, rotation=90 if vertical else 0)
        if labels and side:
            fig.text((_PAD + label_w) / width, (y + fh / 2) / height, labels[r], ha="right",
                     va="center", fontsize=fontsize)
        elif labels:
            base = y + fh + 2 + (head if r == 0 else 0.0)
            fig.text((_PAD + left) / width, base / height, labels[r], ha="left",
                     va="bottom", fontsize=fontsize)
    if title:
        fig.text(0.5, 1 - _PAD / height, title, ha="center", va="top", fontsize=fontsize)
    return fig, axes


def frame_strip(frames: Any, *, titles: Sequence[str] | None = None,
                highlight: Sequence[int] = (), segments: int | None = None,
                title: str | None = None, scale: int | None = None, fontsize: float = 9):
    """One row of a clip's frames; frames in ``highlight`` are outlined in orange.

    ``frames``: (F, 3, H, W) in [-1, 1]. ``segments`` draws SegVR's segment borders (S equal
    parts of the clip) as black bars between frames; ``titles`` labels each frame (default: its
    index). Frames are enlarged ``scale`` times by pixel repetition (default: the most, up to
    4x, that fits the page's 7.5 inches); text is ``fontsize`` pt (>= 9). Returns the Figure.
    """
    from matplotlib.lines import Line2D

    _check_figure_args(scale, fontsize)
    images = to_images(frames)
    n = len(images)
    labels = [str(j) for j in range(n)] if titles is None else [str(t) for t in titles]
    if len(labels) != n:
        raise ValueError(f"titles has {len(labels)} entries for {n} frames")
    fig, axes = _frame_grid([images], None, labels, title=title, scale=scale, fontsize=fontsize)
    picked = {int(i) for i in highlight}
    for j, ax in enumerate(axes[0]):
        for spine in ax.spines.values():
            spine.set_edgecolor("tab:orange" if j in picked else "0.8")
            spine.set_linewidth(3 if j in picked else 0.5)
    for start, _ in (segment_bounds(n, segments)[1:] if segments else []):
        left, right = axes[0, start - 1].get_position(), axes[0, start].get_position()
        x = 0.5 * (left.x1 + right.x0)
        fig.add_artist(Line2D([x, x], [left.y0, left.y1], color="k", lw=2,
                              transform=fig.transFigure))
    return fig


def clip_rows(clips: Sequence[Any], labels: Sequence[str], *, frames: Sequence[int] | None = None,
              title: str | None = None, titles: Sequence[str] | None = None,
              scale: int | None = None, fontsize: float = 9):
    """Several clips, one per row (the frames ``frames`` of each, default all), labelled.

    ``clips``: each (F, 3, H, W) in [-1, 1]; ``labels``: one per clip, left of its row or, when
    that leaves the frames too little room, above it. ``titles`` names the columns (default:
    the frame index). Enlargement and text size as in :func:`frame_strip`. Returns the Figure.
    """
    _check_figure_args(scale, fontsize)
    if len(labels) != len(clips):
        raise ValueError(f"{len(labels)} labels for {len(clips)} clips")
    images = [to_images(c) for c in clips]
    ids = list(range(len(images[0]))) if frames is None else [int(j) for j in frames]
    names = [str(j) for j in ids] if titles is None else [str(t) for t in titles]
    if len(names) != len(ids):
        raise ValueError(f"titles has {len(names)} entries for {len(ids)} frames")
    fig, _ = _frame_grid([img[ids] for img in images], [str(s) for s in labels], names,
                         title=title, scale=scale, fontsize=fontsize)
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
        _, ax = plt.subplots(figsize=(min(PAGE_WIDTH, 0.32 * num_frames + 1.5), 0.3 * rows + 0.9))
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
    ax.set_yticklabels([str(r) for r in range(rows)] if labels is None else labels,
                       fontsize=MIN_FONTSIZE)
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


def before_after(before: Sequence[Any], after: Sequence[Any], titles: Sequence[str], *,
                 frames: Sequence[int] = (0, 5, 10, 15), notes: Sequence[tuple[str, str]] = (),
                 labels: tuple[str, str] = ("before", "after"), scale: int | None = None,
                 fontsize: float = 9):
    """Pairs of clips side by side: one row per pair, the ``frames`` of ``before[i]`` left of a
    black bar and those of ``after[i]`` right of it, each frame enlarged by pixel repetition.

    ``before``, ``after``: clips (F, 3, H, W) in [-1, 1]; ``titles[i]`` labels row i, above it;
    ``notes[i]`` (optional), a (left, right) pair of texts, for example what a judge sees in
    each clip, goes on two more lines, ``labels[0]: left`` and ``labels[1]: right``. The
    columns are titled by frame index, the first of each half with its label. Enlargement and
    text size as in :func:`frame_strip`. Returns the Figure.
    """
    from matplotlib.lines import Line2D

    _check_figure_args(scale, fontsize)
    if not len(before) == len(after) == len(titles) or (notes and len(notes) != len(titles)):
        raise ValueError(f"{len(before)} before clips, {len(after)} after clips, "
                         f"{len(titles)} titles, {len(notes)} notes: give one of each per row")
    ids = [int(j) for j in frames]
    rows = [np.concatenate([to_images(a)[ids], to_images(b)[ids]]) for a, b in zip(before, after)]
    row_labels = [str(t) if not notes else
                  f"{t}\n{labels[0]}: {n[0]}\n{labels[1]}: {n[1]}"
                  for t, n in zip(titles, notes or [None] * len(titles))]
    cols = [f"{label} {j}" if c == 0 else str(j) for label in labels for c, j in enumerate(ids)]
    fig, axes = _frame_grid(rows, row_labels, cols, title=None, scale=scale, fontsize=fontsize)
    k = len(ids)
    for r in range(len(rows)):
        left, right = axes[r, k - 1].get_position(), axes[r, k].get_position()
        x = 0.5 * (left.x1 + right.x0)
        fig.add_artist(Line2D([x, x], [left.y0, left.y1], color="k", lw=2,
                              transform=fig.transFigure))
    return fig

def schedule_figure(alphas_cumprod: Any, starts: dict[float, int], *, highlight: float = 0.6):
    """The two weights of Eq. 3 against t, with the chain's start t_s for each tau (dashed).

    ``alphas_cumprod`` (T,) is the scheduler's; ``starts`` maps tau to t_s; the start of
    ``highlight`` (the paper's tau) is drawn in orange. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    t = np.arange(len(abar))
    fig, ax = plt.subplots(figsize=(6.5, 3.0), dpi=DPI)
    ax.plot(t, abar.sqrt(), label=r"$\sqrt{\bar\alpha_t}$ (clean clip)")
    ax.plot(t, (1 - abar).sqrt(), label=r"$\sqrt{1-\bar\alpha_t}$ (noise)")
    for tau, start in starts.items():
        paper = tau == highlight
        ax.axvline(start, color="tab:orange" if paper else "0.7", lw=2 if paper else 1, ls="--")
        ax.text(start, 1.02, f"{tau:g}", ha="center", fontsize=9,
                transform=ax.get_xaxis_transform())
    ax.set_xlabel(f"timestep t (dashed: t_s for the tau above; orange: tau = {highlight:g})",
                  fontsize=10)
    ax.set_ylabel("weight in Eq. 3", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.legend(fontsize=9, loc="center right")
    fig.tight_layout()
    return fig


def chain_cost_figure(taus: Sequence[float], calls: dict[int, Sequence[int]],
                      measured: dict[float, int], *, paper: tuple[float, int] = (0.6, 12)):
    """UNet calls of an editing chain against tau, one step line per D (``calls[D]``), with the
    ``measured`` counts as dots and the paper's setting ``paper`` = (tau, calls) circled."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.0), dpi=DPI)
    for d, counts in calls.items():
        ax.step(taus, counts, where="post", label=f"D = {d}")
    ax.plot(list(measured), list(measured.values()), "ko", ms=4, label="measured (D = 20)")
    ax.plot([paper[0]], [paper[1]], "o", color="tab:orange", ms=10, mfc="none", mew=2,
            label=f"paper: {paper[1]} calls")
    ax.set_xlabel("editing strength tau", fontsize=10)
    ax.set_ylabel("UNet calls per chain", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def gradient_maps(frame: Any, grad: Any, *, title: str | None = None):
    """A frame and the reward's gradient with respect to its pixels, in five panels.

    ``frame`` (3, H, W) in [-1, 1], ``grad`` (3, H, W): the frame; the saliency |d r / d x|
    summed over colour channels; and the signed gradient of each channel (red: the score rises
    if that channel brightens), on one symmetric colour scale. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    g = torch.as_tensor(grad).detach().float().cpu()
    fig, axes = plt.subplots(1, 5, figsize=(7.5, 2.0), dpi=DPI)
    axes[0].imshow(to_images(frame)[0], interpolation="nearest")
    axes[0].set_title("frame", fontsize=9)
    axes[1].imshow(g.abs().sum(0), cmap="magma", interpolation="nearest")
    axes[1].set_title("|d r / d x|, RGB sum", fontsize=9)
    limit = float(g.abs().max())
    for c, name in enumerate("RGB"):
        axes[2 + c].imshow(g[c], cmap="RdBu_r", vmin=-limit, vmax=limit,
                           interpolation="nearest")
        axes[2 + c].set_title(f"d r / d {name}", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


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


def slider(function, options: Sequence[Any], *, value: Any, name: str):
    """A slider over ``options`` that calls ``function(name=option)``, displayed.

    ``ipywidgets.interactive`` with a ``SelectionSlider``; it needs a live kernel (in a static
    page it shows the output of ``value`` only). The page's plain-text fallback is a short line
    instead of the widget's repr, which would list every option. Returns the widget.
    """
    from IPython.display import display
    from ipywidgets import SelectionSlider, interactive

    widget = interactive(function, **{name: SelectionSlider(
        options=list(options), value=value, description=name)})
    bundle = widget._repr_mimebundle_()
    bundle["text/plain"] = f"(a slider over {name}: it needs a live kernel)"
    display(bundle, raw=True)
    return widget


# ----------------------------------------------------------------------------- intervals


def _interval(x: Any) -> tuple[float, float, float]:
    """(mean, low, high) of a :class:`ivlite.stats.PairedGain`, of a 3-sequence or of a bare
    number (no interval: low and high NaN)."""
    if hasattr(x, "low"):
        return float(x.mean), float(x.low), float(x.high)
    if isinstance(x, (int, float)):
        return float(x), float("nan"), float("nan")
    mean, low, high = x
    return float(mean), float(low), float(high)


def interval_chart(rows: Sequence[str], panels: dict[str, Sequence[Sequence[Any]]], *,
                   series: Sequence[str] = ("",), title: str | None = None,
                   width: float = 7.5, fontsize: int = 9):
    """A forest plot: one row per comparison, one panel per metric, a vertical line at zero.

    ``panels[metric][i][k]`` is row ``i``'s interval for series ``k`` (e.g. a prompt split):
    a :class:`ivlite.stats.PairedGain` or ``(mean, low, high)``; ``None`` leaves it out. The
    series of a row sit one above the other, each with its own marker, named in a legend when
    there is more than one. Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    markers = "os^Dv"
    # "0" and "-0.0015" rather than "0.0000" and "-0.0015": short labels in narrow panels
    short = FuncFormatter(lambda v, _: "0" if abs(v) < 1e-12 else f"{v:g}")
    n, k = len(rows), len(series)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 0.32 * n * max(1, k / 2) + 1.3),
                             sharey=True, squeeze=False)
    for ax, (metric, cells) in zip(axes[0], panels.items()):
        if len(cells) != n:
            raise ValueError(f"interval_chart: panel {metric!r} has {len(cells)} rows, "
                             f"expected {n}")
        for j, name in enumerate(series):
            pts = [(i + (j - (k - 1) / 2) * 0.22, _interval(c[j])) for i, c in enumerate(cells)
                   if c[j] is not None]
            ys = [y for y, _ in pts]
            means = [m for _, (m, _, _) in pts]
            err = [[m - lo for _, (m, lo, _) in pts], [hi - m for _, (m, _, hi) in pts]]
            ax.errorbar(means, ys, xerr=err, fmt=markers[j % len(markers)], ms=4, capsize=2,
                        color=f"C{j}", label=name or None)
        ax.axvline(0, color="0.4", lw=0.8)
        ax.set_title(metric, fontsize=fontsize)
        ax.tick_params(labelsize=fontsize)
        ax.xaxis.set_major_locator(MaxNLocator(3, symmetric=True))
        ax.xaxis.set_major_formatter(short)
        ax.grid(axis="x", color="0.9")
    axes[0, 0].set_yticks(range(n), rows, fontsize=fontsize)
    axes[0, 0].set_ylim(n - 0.5, -0.5)
    if title:
        fig.suptitle(title, fontsize=fontsize)
    bottom = 0.0
    if k > 1:   # the series' legend in one row under the panels
        handles, names = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="lower center", ncol=k, fontsize=fontsize,
                   frameon=False)
        bottom = 0.35 / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def band_chart(x: Sequence[float], panels: dict[str, dict[str, Sequence[Any]]], *,
               marks: dict[str, float] | None = None, xlabel: str = "optimizer step",
               width: float = 7.5, height: float = 3.0, fontsize: int = 9):
    """Curves with their intervals as shaded bands, one panel per entry of ``panels``.

    ``panels[title][label]`` is one curve: an interval per ``x`` (a
    :class:`ivlite.stats.PairedGain` or ``(mean, low, high)``). ``marks`` draws a dashed
    vertical line at each value, named by its key (e.g. where early stopping stops). Returns the
    matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(width, height), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels.items()):
        for j, (label, cells) in enumerate(curves.items()):
            if len(cells) != len(x):
                raise ValueError(f"band_chart: curve {label!r} has {len(cells)} points, "
                                 f"expected {len(x)}")
            m, lo, hi = zip(*(_interval(c) for c in cells))
            ax.plot(x, m, "o-", ms=3, color=f"C{j}", label=label)
            ax.fill_between(x, lo, hi, color=f"C{j}", alpha=0.2, lw=0)
        ax.axhline(0, color="0.4", lw=0.8)
        ax.legend(fontsize=fontsize, loc="best")
        marked = [ax.axvline(at, color="0.3", lw=1, ls=("--", ":", "-.")[j % 3], label=label)
                  for j, (label, at) in enumerate((marks or {}).items())]
        ax.set_title(name, fontsize=fontsize)
        ax.set_xlabel(xlabel, fontsize=fontsize)
        ax.tick_params(labelsize=fontsize)
    bottom = 0.0
    if marks:   # the marks' legend in one row under the panels
        fig.legend(marked, list(marks), loc="lower center", ncol=len(marks),
                   fontsize=fontsize, frameon=False)
        bottom = 0.35 / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


# ----------------------------------------------------------------------------- measurements


@torch.no_grad()
def score_frames(reward, clips: Any, captions: Sequence[str], *, batch: int = 256) -> torch.Tensor:
    """Reward of every frame: clips (N, F, 3, H, W) in [-1, 1] and N captions -> scores (N, F)
    on the CPU. The frames are moved to the reward's device (a module's parameters')."""
    x = torch.as_tensor(np.asarray(clips) if not isinstance(clips, torch.Tensor) else clips)
    n, f = x.shape[:2]
    flat = x.reshape(n * f, *x.shape[2:]).float()
    if isinstance(reward, torch.nn.Module):
        flat = flat.to(next(reward.parameters()).device)
    prompts = [c for c in captions for _ in range(f)]
    scores = [reward(flat[i:i + batch], prompts[i:i + batch]) for i in range(0, n * f, batch)]
    return torch.cat(scores).float().cpu().view(n, f)


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
