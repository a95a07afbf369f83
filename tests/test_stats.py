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
