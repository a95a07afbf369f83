"""The motion measures: the oracle's ``travel`` (the tiny world's dynamic degree), the model-free
:func:`ivlite.evaluation.frame_motion`, ``evaluate_splits``' per-clip rows and the paired gains of
``benchmarks/paired.py``. Clips come from the world's renderer; the model is the tiny random one.
"""

import json

import numpy as np
import pytest
import torch

from benchmarks.paired import METRICS, paired_gains, paired_markdown
from ivlite.evaluation import evaluate_splits, frame_motion, splits_markdown
from ivlite.world import Scene, judge_clip, render_clip, summarise
from ivlite.world.render import DISPLACEMENT_RANGE

SMALL = dict(num_frames=8, height=32, width=32)
SCENES = [Scene("red", "circle", "moving left"), Scene("blue", "square", "moving up"),
          Scene("green", "triangle", "moving right", "striped"),
          Scene("yellow", "circle", "moving down")]


def frozen(clip: np.ndarray) -> np.ndarray:
    """The clip's first frame held for all its frames: the same picture, no motion."""
    return np.repeat(clip[:1], len(clip), axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scene", SCENES, ids=lambda s: s.caption)
def test_travel_of_a_moving_clip_and_of_the_same_clip_frozen(scene, seed):
    clip = render_clip(scene, seed=seed, size=32)
    moving, still = judge_clip(clip, scene), judge_clip(frozen(clip), scene)
    low, high = DISPLACEMENT_RANGE
    # The renderer moves the object 0.30 .. 0.45 of the frame width along the prompted axis.
    assert low - 0.02 <= moving.travel <= high + 0.02, moving.travel
    assert moving.motion_ok and moving.details["travel"] == moving.travel
    assert still.travel == 0.0 and not still.motion_ok
    # The same picture as before: only the motion was lost.
    assert still.colour_ok and still.shape_ok
    # Played backwards it travels as far, the other way.
    back = judge_clip(clip[::-1].copy(), scene)
    assert back.travel == pytest.approx(moving.travel, abs=1e-6) and not back.motion_ok


def test_summarise_reports_mean_travel():
    clips = [render_clip(s, seed=0, size=32) for s in SCENES]
    verdicts = [judge_clip(c, s) for c, s in zip(clips, SCENES)]
    still = [judge_clip(frozen(c), s) for c, s in zip(clips, SCENES)]
    summary = summarise(verdicts + still)
    assert summary["travel"] == pytest.approx(np.mean([v.travel for v in verdicts]) / 2)
    assert summary["motion_ok"] == 0.5


def test_frame_motion_of_moving_and_frozen_clips():
    clips = np.stack([render_clip(s, seed=3, size=32) for s in SCENES])
    moving = frame_motion(torch.from_numpy(clips))
    still = frame_motion(torch.from_numpy(np.stack([frozen(c) for c in clips])))
    assert moving.shape == (4,) and torch.all(moving > 0.05)
    assert torch.all(still == 0)
    # A faint global flicker (every pixel +-0.02 in [0, 1] units) moves less than a small object:
    # the top 5% of pixels is where a small moving object's change is.
    flick = torch.from_numpy(frozen(clips[0])).clone()
    flick[1::2] += 0.04                                      # 0.02 in [0, 1] colour units
    assert frame_motion(flick[None]).item() == pytest.approx(0.02, abs=1e-5)
    assert frame_motion(flick[None]).item() < 0.5 * moving.min().item()


def test_frame_motion_works_at_full_scale_and_rejects_bad_shapes():
    clips = torch.zeros(1, 3, 3, 256, 256)
    clips[0, 1, :, :16, :16] = 1.0                            # 256 px of 65,536 change by 0.5
    # Top 5% = 3,277 px per pair: the 256 changed pixels among them, both pairs alike.
    assert frame_motion(clips).item() == pytest.approx(0.5 * 256 / 3277, rel=1e-6)
    with pytest.raises(ValueError, match="F >= 2"):
        frame_motion(torch.zeros(1, 1, 3, 8, 8))
    with pytest.raises(ValueError, match="expected clips"):
        frame_motion(torch.zeros(3, 8, 8))


def test_evaluate_splits_per_clip_rows_pair_across_runs(tiny_model, tiny_reward):
    splits = {"in_domain": ["a red circle moving left", "a blue square moving up"],
              "held_out": ["a green circle moving right"]}
    kw = dict(seeds=2, ddim_steps=2, segments=4, seed=5, **SMALL)
    res = evaluate_splits(tiny_model, tiny_reward, splits, judge="oracle-quality", **kw)
    ind = res["splits"]["in_domain"]
    rows = ind["per_clip"]
    assert [(r["prompt"], r["seed"]) for r in rows] == [
        ("a red circle moving left", 5), ("a blue square moving up", 6),
        ("a red circle moving left", 7), ("a blue square moving up", 8)]
    assert set(rows[0]) == {"prompt", "seed", "reward", "judge", "oracle_score", "motion_ok",
                            "travel", "temporal_consistency", "frame_quality", "colour_ok",
                            "shape_ok", "frame_motion", "flicker"}
    assert len(res["splits"]["held_out"]["per_clip"]) == 2
    # The rows agree with the split's summaries.
    assert ind["reward"]["mean"] == pytest.approx(np.mean([r["reward"] for r in rows]))
    assert ind["oracle"]["travel"] == pytest.approx(np.mean([r["travel"] for r in rows]))
    assert ind["oracle"]["motion_ok"] == pytest.approx(np.mean([r["motion_ok"] for r in rows]))
    assert ind["frame_motion"]["mean"] == pytest.approx(np.mean([r["frame_motion"] for r in rows]))
    assert "travel (share of width) / moved as prompted" in splits_markdown(res)
    json.dumps(res)
    # The same model, prompts and noise give the same rows: settings compare clip by clip.
    again = evaluate_splits(tiny_model, tiny_reward, splits, judge="oracle-quality", **kw)
    assert again["splits"] == res["splits"]
    gains = paired_gains(res, again)
    assert set(gains) == {"in_domain", "held_out"} and set(gains["in_domain"]) == set(METRICS)
    assert all(g.mean == 0 and g.n == 4 for g in gains["in_domain"].values())


def _result(rows_by_split: dict) -> dict:
    return {"splits": {s: {"per_clip": rows} for s, rows in rows_by_split.items()}}


def _rows(values: dict, prompts=("a", "b", "c", "d")) -> list[dict]:
    return [{"prompt": p, "seed": k, **{m: v[k] for m, v in values.items()}}
            for k, p in enumerate(prompts)]


def test_paired_gains_on_synthetic_results():
    before = _result({"in_domain": _rows({"reward": [1.0, 2.0, 3.0, 4.0],
                                          "motion_ok": [True, True, False, True],
                                          "travel": [0.4, 0.3, 0.1, 0.35]})})
    after = _result({"in_domain": _rows({"reward": [2.0, 3.0, 4.0, 5.0],
                                         "motion_ok": [False, True, False, False],
                                         "travel": [0.1, 0.3, 0.0, 0.05]})})
    gains = paired_gains(before, after)["in_domain"]
    assert set(gains) == {"reward", "motion_ok", "travel"}      # the metrics both results hold
    assert gains["reward"].mean == 1.0 and gains["reward"].low == gains["reward"].high == 1.0
    assert gains["motion_ok"].mean == pytest.approx(-0.5) and gains["motion_ok"].n == 4
    assert gains["travel"].mean == pytest.approx(-0.175) and gains["travel"].excludes_zero
    table = paired_markdown(before, after)
    assert "| in_domain | 4 |" in table and "+1.000 [+1.000, +1.000]" in table
    # Rows that are not the same prompt and noise cannot be paired.
    shuffled = _result({"in_domain": _rows({"reward": [1, 2, 3, 4]}, prompts="badc")})
    with pytest.raises(ValueError, match="not paired"):
        paired_gains(before, shuffled)
    with pytest.raises(ValueError, match="splits"):
        paired_gains(before, _result({"held_out": _rows({"reward": [1, 2, 3, 4]})}))
    with pytest.raises(ValueError, match="per_clip"):
        paired_gains(before, {"splits": {"in_domain": {"reward": {"mean": 1.0}}}})
    # A metric one result has and the other lacks is an error, not a silently dropped column.
    with pytest.raises(ValueError, match="judge"):
        paired_gains(_result({"in_domain": _rows({"reward": [1, 2, 3, 4],
                                                  "judge": [1, 2, 3, 4]})}),
                     _result({"in_domain": _rows({"reward": [1, 2, 3, 4]})}))
