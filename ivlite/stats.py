"""Paired comparisons with their uncertainty: a mean difference and its bootstrap 95% interval.

Two models scored on the same prompts from the same noise give paired scores ``a[i]``, ``b[i]``;
what varies between the pairs is the prompt and the noise, so the interval of the mean gain is
taken over pairs (resampled with replacement), not over two independent samples. With few pairs
the percentile bootstrap is too narrow (with 4 pairs it can never be wider than their range);
report ``n`` beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class PairedGain:
    """Mean of ``b - a`` over ``n`` pairs and its percentile-bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of zero."""
        return self.low > 0 or self.high < 0

    def text(self, digits: int = 3) -> str:
        """``+0.081 [+0.032, +0.130]``: the mean gain and its interval, signed."""
        f = f"{{:+.{digits}f}}"
        return f"{f.format(self.mean)} [{f.format(self.low)}, {f.format(self.high)}]"


def paired_gain(before: Sequence[float], after: Sequence[float], *, level: float = 0.95,
                resamples: int = 10_000, seed: int = 0) -> PairedGain:
    """The mean of ``after[i] - before[i]`` with a paired percentile-bootstrap interval.

    ``before``, ``after``: (n,) scores of the same n prompt-noise pairs. The bootstrap draws are
    seeded, so the interval is a pure function of the inputs.
    """
    a = np.asarray(before, dtype=np.float64)
    b = np.asarray(after, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two 1-D sequences of one length; got shapes "
                         f"{a.shape} and {b.shape}")
    if len(a) == 0:
        raise ValueError("no pairs to compare")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired scores must be finite")
    if not 0 < level < 1:
        raise ValueError(f"level={level} is out of range; allowed: 0 < level < 1")
    d = b - a
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return PairedGain(float(d.mean()), float(low), float(high), len(d), level)

