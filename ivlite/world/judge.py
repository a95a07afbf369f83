"""The oracle as a judge of generated clips (torch tensors), for evaluations and early stopping.

:class:`Oracle` gives per-clip verdicts (:class:`.oracle.OracleResult`) and their summary;
:class:`OracleJudge` reduces a verdict to one number per clip, the interface of
:mod:`ivlite.judges`. Both are reached by name through :mod:`ivlite.registry`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .captions import is_world_prompt
from .oracle import OracleResult, judge_clip, summarise


class Oracle:
    """Verdicts on clips (N, F, 3, H, W) in [-1, 1] for prompts of the world's template."""

    def covers(self, prompt: str) -> bool:
        """Whether the oracle can judge ``prompt`` (a caption of the world's template)."""
        return is_world_prompt(prompt)

    def verdicts(self, clips: torch.Tensor, prompts: Sequence[str]) -> list[OracleResult]:
        return [judge_clip(c.float().cpu().numpy(), p) for c, p in zip(clips, prompts)]

    def summarise(self, verdicts: Sequence[OracleResult]) -> dict[str, float]:
        """Mean colour/shape/motion/all accuracy, frame quality, temporal consistency, travel
        (the dynamic degree: share of the frame width the object moves), score."""
        return summarise(verdicts)


class OracleJudge:
    """One attribute of the oracle's verdict per clip (``frame_quality`` or ``score``)."""

    def __init__(self, attribute: str = "frame_quality"):
        self.attribute = attribute
        self.name = "oracle-" + {"frame_quality": "quality", "score": "score"}.get(attribute,
                                                                                   attribute)

    def __call__(self, clips: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([float(getattr(judge_clip(c.numpy(), p), self.attribute))
                             for c, p in zip(clips.float().cpu(), prompts)])
