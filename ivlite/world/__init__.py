"""A tiny procedural video-text world and its hidden judge.

The stand-in for WebVid in InstructVideo (arXiv 2312.12490): 16-frame 32x32 clips of one coloured
shape moving over a dark background, captioned from a fixed template, in web-like varying quality.

- :mod:`.captions`: vocabulary, :class:`Scene`, and the paper-style prompt splits
  (in-domain / held-out "new animals" / out-of-domain "non-animals");
- :mod:`.render`: deterministic numpy renderer and dataset builder;
- :mod:`.oracle`: the evaluation oracle (colour / shape / motion accuracy, frame quality,
  temporal consistency) and the per-frame rule that labels reward-model preference pairs.

Example::

    clips, captions, qualities = make_dataset(256, seed=0)          # (256, 16, 3, 32, 32)
    verdict = judge_clip(clips[0], captions[0])
    verdict.all_ok, verdict.frame_quality, verdict.temporal_consistency
"""

from .captions import (
    BACKGROUNDS,
    COLOURS,
    MOTIONS,
    SHAPES,
    SPLITS,
    Scene,
    all_scenes,
    base_training_scenes,
    category_split,
    split_categories,
    split_scenes,
)
from .oracle import (
    OracleResult,
    analyse_frames,
    judge_clip,
    judge_clips,
    judge_frame,
    preference,
    summarise,
)
from .render import CLEAN, Quality, make_dataset, render_clip, sample_quality

__all__ = [
    "BACKGROUNDS", "CLEAN", "COLOURS", "MOTIONS", "SHAPES", "SPLITS", "OracleResult", "Quality",
    "Scene", "all_scenes", "analyse_frames", "base_training_scenes", "category_split",
    "judge_clip", "judge_clips", "judge_frame", "make_dataset", "preference", "render_clip",
    "sample_quality", "split_categories", "split_scenes", "summarise",
]
