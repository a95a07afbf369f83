"""Paired comparisons with their uncertainty: a mean difference and its bootstrap 95% interval.

Two models scored on the same prompts from the same noise give paired scores ``a[i]``, ``b[i]``;
what varies between the pairs is the prompt and the noise, so the interval of the mean gain is
taken over pairs (resampled with replacement), not over two independent samples. With few pairs
the percentile bootstrap is too narrow (with 4 pairs it can never be wider than their range);
report ``n`` beside it.

One model's numbers (not a comparison) get :func:`mean_interval` (a mean, bootstrap interval)
and :func:`share_interval` (a share of yes/no verdicts, Wilson's interval, which stays honest
at 0 of n and n of n, where the bootstrap collapses to a point).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
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
    low, high = _bootstrap(d, level, resamples, seed)
    return PairedGain(float(d.mean()), low, high, len(d), level)


def _bootstrap(x: np.ndarray, level: float, resamples: int, seed: int) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``x`` (n,), seeded."""
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Estimate:
    """A mean (or a share) over ``n`` values and its interval."""

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95

    def text(self, digits: int = 2) -> str:
        """``0.54 [0.47, 0.61]``: the estimate and its interval."""
        f = f"{{:.{digits}f}}"
        return f"{f.format(self.mean)} [{f.format(self.low)}, {f.format(self.high)}]"


def _check(values: np.ndarray, level: float, what: str) -> None:
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"{what} must be a non-empty 1-D sequence; got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{what} must be finite")
    if not 0 < level < 1:
        raise ValueError(f"level={level} is out of range; allowed: 0 < level < 1")


def mean_interval(values: Sequence[float], *, level: float = 0.95, resamples: int = 10_000,
                  seed: int = 0) -> Estimate:
    """The mean of ``values`` (n,) with a seeded percentile-bootstrap interval over them."""
    x = np.asarray(values, dtype=np.float64)
    _check(x, level, "values")
    low, high = _bootstrap(x, level, resamples, seed)
    return Estimate(float(x.mean()), low, high, len(x), level)


def share_interval(verdicts: Sequence[bool], *, level: float = 0.95) -> Estimate:
    """The share of true ``verdicts`` (n,) with Wilson's score interval.

    For k of n: centre (k + z^2/2) / (n + z^2), half-width z sqrt(k(n-k)/n + z^2/4) / (n + z^2),
    z the normal quantile of ``level`` (1.96 for 95%). 8 of 8 gives [0.68, 1.00], not the
    bootstrap's [1.00, 1.00].
    """
    v = np.asarray(verdicts)
    if v.dtype != bool and not np.isin(v, (0, 1)).all():
        raise ValueError("verdicts must be booleans (or 0 / 1)")
    x = v.astype(np.float64)
    _check(x, level, "verdicts")
    n, k = len(x), float(x.sum())
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    centre = (k + z * z / 2) / (n + z * z)
    half = z * np.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return Estimate(k / n, max(0.0, centre - half), min(1.0, centre + half), n, level)

