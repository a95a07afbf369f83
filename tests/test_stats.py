"""Paired gains and their bootstrap intervals (ivlite.stats)."""

from __future__ import annotations

import numpy as np
import pytest

from ivlite.stats import paired_gain


def test_paired_gain_is_the_mean_difference_and_brackets_it():
    g = paired_gain([0.1, 0.2, 0.3, 0.4], [0.2, 0.4, 0.3, 0.6])
    assert g.mean == pytest.approx(0.125)
    assert g.low <= g.mean <= g.high and g.n == 4
    assert g.text() == f"+0.125 [{g.low:+.3f}, {g.high:+.3f}]"


def test_pairing_removes_the_shared_prompt_effect():
    rng = np.random.default_rng(1)
    prompt = rng.normal(0, 1.0, 48)                 # large differences between prompts
    before = prompt + rng.normal(0, 0.01, 48)
    after = prompt + 0.05 + rng.normal(0, 0.01, 48)
    g = paired_gain(before, after)
    assert g.excludes_zero and 0.04 < g.low < g.mean < g.high < 0.06


def test_no_effect_gives_an_interval_around_zero_and_is_seeded():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 64), rng.normal(0, 1, 64)
    g = paired_gain(a, b)
    assert not g.excludes_zero
    assert paired_gain(a, b) == g


@pytest.mark.parametrize("a, b, words", [([1.0], [1.0, 2.0], "one length"), ([], [], "no pairs"),
                                         ([float("nan")], [1.0], "finite")])
def test_bad_pairs_are_refused(a, b, words):
    with pytest.raises(ValueError, match=words):
        paired_gain(a, b)


def test_share_interval_is_wilsons_and_stays_open_at_all_or_none():
    from ivlite.stats import share_interval

    every = share_interval([True] * 8)
    assert every.mean == 1.0 and every.high == 1.0
    assert every.low == pytest.approx(0.6756, abs=1e-4)      # 8/8: not the bootstrap's point
    none = share_interval([0] * 10)
    assert none.mean == 0.0 and none.low == 0.0 and none.high == pytest.approx(0.2775, abs=1e-4)
    half = share_interval([True, False] * 50)
    assert half.low == pytest.approx(0.4038, abs=1e-4) and half.high == pytest.approx(0.5962,
                                                                                       abs=1e-4)
    assert every.text() == "1.00 [0.68, 1.00]"
    with pytest.raises(ValueError, match="booleans"):
        share_interval([0.5, 1.0])


def test_mean_interval_brackets_the_mean_and_narrows_with_n():
    from ivlite.stats import mean_interval

    rng = np.random.default_rng(3)
    small, large = mean_interval(rng.normal(2, 1, 16)), mean_interval(rng.normal(2, 1, 400))
    assert small.low < small.mean < small.high and small.n == 16
    assert large.low < 2.0 < large.high
    assert large.high - large.low < 0.5 * (small.high - small.low)
    with pytest.raises(ValueError, match="non-empty"):
        mean_interval([])
    with pytest.raises(ValueError, match="level=1.5"):
        mean_interval([1.0, 2.0], level=1.5)
