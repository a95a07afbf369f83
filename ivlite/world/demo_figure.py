"""The figure of an ``ivlite demo`` folder: each split's clips before and after fine-tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..viz import to_images
from .captions import SPLITS
from .demo_files import load_scores, scores_path


def before_after_figure(demo_dir: Any, path: Any = None, *, clips_per_split: int = 1,
                        every: int = 2, size: float = 0.75, dpi: int = 100):
    """The evidence of an ``ivlite demo`` folder in one image: for each split and its first
    ``clips_per_split`` clips, the base model's clip ("before") over the fine-tuned model's
    ("after") from the same noise and prompt, every ``every``-th frame, each row labelled with its
    proxy reward and what the oracle saw. Reads ``before/`` and ``after/`` of ``demo_dir``
    (clips (N, F, 3, 32, 32) per split); writes ``path`` (a PNG) when given. Returns the Figure.
    """
    from matplotlib.figure import Figure

    demo_dir = Path(demo_dir)
    rows = []  # (split, prompt, clip before, clip after, scores before, scores after)
    found = [p.stem for p in sorted((demo_dir / "before").glob("*.safetensors"))]
    for split in [s for s in SPLITS if s in found] + [s for s in found if s not in SPLITS]:
        before = load_scores(scores_path(demo_dir, "before", split))
        after = load_scores(scores_path(demo_dir, "after", split))
        if before is None or after is None:
            raise FileNotFoundError(f"{demo_dir}: {split} has no saved before and after scores "
                                    f"(a demo writes them to before/ and after/)")
        for k in range(min(clips_per_split, len(before[0]))):
            rows.append((split, before[2][k]["prompt"], before[0][k], after[0][k],
                         before[2][k], after[2][k]))
    if not rows:
        raise FileNotFoundError(f"{demo_dir}/before holds no scored split; run ivlite demo first")
    frames = list(range(0, rows[0][2].shape[0], every))
    fig = Figure(figsize=(size * len(frames) + 2.2, (2 * size + 0.4) * len(rows) + 0.5), dpi=dpi)
    outer = fig.add_gridspec(len(rows), 1, hspace=0.35, left=2.1 / fig.get_figwidth(),
                             right=0.99, top=1 - 0.55 / fig.get_figheight(),
                             bottom=0.3 / fig.get_figheight())
    for r, (split, prompt, clip_b, clip_a, s_b, s_a) in enumerate(rows):
        grid = outer[r].subgridspec(2, len(frames), hspace=0.06, wspace=0.04)
        for half, (when, clip, sc) in enumerate((("before", clip_b, s_b),
                                                 ("after", clip_a, s_a))):
            images = to_images(clip)
            for col, j in enumerate(frames):
                ax = fig.add_subplot(grid[half, col])
                ax.imshow(images[j], interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == len(rows) - 1 and half == 1:
                    ax.set_xlabel(f"frame {j}", fontsize=7, labelpad=2)
                if col == 0:
                    ax.set_ylabel(f"{when}\nproxy reward {sc['proxy_reward']:.2f}\n"
                                  f"oracle sees:\n{sc['oracle_sees']}", rotation=0, ha="right",
                                  va="center", fontsize=7, labelpad=4)
                if col == 0 and half == 0:
                    ax.text(0, 1.06, f"[{split.replace('_', '-')}] {prompt}", fontsize=8,
                            transform=ax.transAxes, ha="left", va="bottom", weight="bold")
    fig.suptitle("ivlite demo: the base model (before) and the fine-tuned model (after), same "
                 "prompt and noise", fontsize=9, y=0.995, va="top")
    if path is not None:
        fig.savefig(path)
    return fig
