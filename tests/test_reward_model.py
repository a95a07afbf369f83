"""The tiny world's HPSv2: architecture, training script (files, exact resume), shipping format,
and the shipped weights' agreement with the hidden judge on held-out pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ivlite.rewards import ClipReward, check_reward_gradients
from ivlite.world import judge_frame, render_clip
from ivlite.world.assets import load_weights, save_weights, write_manifest
from ivlite.world.captions import SPLITS, Scene, base_training_scenes
from ivlite.world.reward_model import (
    REWARD_FOLDER, TINY_HPS_CONFIG, TOKEN_TABLES, build_tiny_hps, load_tiny_reward,
    parameter_counts, tiny_hps_tokenizer,
)
from tools.tiny_world.train_reward import (
    EVAL_SEEDS, TIE, contrastive_loss, heldout_pairs, main, pairwise_agreement, sample_pairs,
)

CAPTIONS = ["a red circle moving left", "a blue square moving up on a striped background",
            "a magenta circle moving down"]
# Measured on the shipped weights with heldout_pairs(split, 60) for the 3 splits (180 pairs):
# 0.967 (in_domain 0.950, held_out 0.967, out_of_domain 0.983); the brief asks for >= 0.80.
SHIPPED_MIN_ACCURACY = 0.90


def _frames(n: int = 3) -> torch.Tensor:
    """(n, 3, 32, 32) world frames in [-1, 1], one per caption."""
    return torch.from_numpy(np.stack([render_clip(Scene.from_caption(c), seed=i)[5]
                                      for i, c in enumerate(CAPTIONS[:n])]))


def test_tiny_hps_is_a_small_real_clip_with_pixel_gradients():
    torch.manual_seed(0)
    model = build_tiny_hps()
    counts = parameter_counts(model)
    assert counts["vision_plus_text"] <= 2_500_000
    assert counts["token_table"] == 49408 * TINY_HPS_CONFIG["text_cfg"]["width"]
    assert model.visual.image_size == (32, 32)
    tokens = tiny_hps_tokenizer()(CAPTIONS)
    assert tokens.shape == (3, 77) and int(tokens.max()) == 49407  # real CLIP ids, EOT last
    reward = ClipReward(model, tiny_hps_tokenizer())
    assert check_reward_gradients(reward, CAPTIONS, 32, 32) > 0
    scores = reward(_frames(), CAPTIONS)
    assert scores.shape == (3,) and bool((scores.abs() <= 1 + 1e-5).all())  # a cosine


def test_contrastive_loss_prefers_matching_features():
    """Multi-positive CLIP loss: aligned features beat misaligned ones; several positives ok."""
    text = torch.nn.functional.normalize(torch.randn(4, 8, generator=torch.Generator()
                                                     .manual_seed(0)), dim=-1)
    positive = torch.eye(4, dtype=torch.bool)
    positive[0, 1] = positive[1, 0] = True  # captions 0 and 1 differ only in motion
    aligned = contrastive_loss(text, text, positive, torch.tensor(20.0))
    shuffled = contrastive_loss(text[[2, 3, 0, 1]], text, positive, torch.tensor(20.0))
    assert aligned < shuffled


def test_preference_pairs_are_judged_and_never_tied():
    rng = np.random.default_rng(0)
    pairs = sample_pairs(rng, base_training_scenes()[:8], 6, negative_categories=[("red", "circle"),
                         ("blue", "square")], seed_range=EVAL_SEEDS, pairs_per_clip=2)
    assert len(pairs) == 6 and pairs.first.shape == (6, 3, 32, 32)
    assert bool((np.abs(pairs.judge_first - pairs.judge_second) >= TIE).all())
    for a, b, caption, ja, jb in zip(pairs.first, pairs.second, pairs.captions,
                                     pairs.judge_first, pairs.judge_second):
        assert judge_frame(a, caption) == ja and judge_frame(b, caption) == jb
    # Evaluation pairs are a fixed set: same call, same pairs.
    again, once = heldout_pairs("held_out", 4), heldout_pairs("held_out", 4)
    np.testing.assert_array_equal(again.first, once.first)


def _train(out, *extra):
    return main(["--out", str(out), "--contrastive-steps", "3", "--preference-steps", "3",
                 "--batch", "8", "--eval-pairs", "4", "--eval-frames", "4",
                 "--checkpoint-every", "2", "--log-every", "2", *extra])


def test_training_writes_the_shipped_files_and_resumes_exactly(tmp_path):
    metrics = _train(tmp_path / "straight")
    for name in ("model.safetensors", "config.json", "metrics.json"):
        assert (tmp_path / "straight" / name).is_file()
    assert not (tmp_path / "straight" / "state").exists()  # not shipped
    assert set(metrics["final"]) == set(SPLITS) == set(metrics["after_contrastive"])
    for split in SPLITS:
        assert 0 <= metrics["final"][split]["pairwise_accuracy"] <= 1
        assert 0 <= metrics["final"][split]["retrieval_accuracy"] <= 1
    config = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert config["clip"] == TINY_HPS_CONFIG and config["training"]["steps"] == 6
    assert json.loads((tmp_path / "straight" / "metrics.json").read_text()) == metrics

    # Interrupted in the middle of stage 2 (after the stage-1 evaluation and optimizer reset).
    assert _train(tmp_path / "resumed", "--stop-at", "4") is None
    assert (tmp_path / "resumed" / "state" / "model.safetensors").is_file()
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    assert json.loads((tmp_path / "resumed" / "state" / "state.json").read_text())["step"] == 4
    with pytest.raises(ValueError, match="other settings"):
        _train(tmp_path / "resumed", "--resume", "--seed", "1")
    assert _train(tmp_path / "resumed", "--resume") == metrics
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_shipping_format_round_trip(tmp_path):
    """fp16 + trimmed token table reproduces the scores; load_tiny_reward checks files."""
    torch.manual_seed(1)
    model = build_tiny_hps()
    reference = ClipReward(model, tiny_hps_tokenizer())(_frames(), CAPTIONS)

    folder = tmp_path / "assets" / "reward"
    with pytest.raises(FileNotFoundError, match="train_reward"):
        load_tiny_reward(folder)
    save_weights(model.state_dict(), folder / "model.safetensors", token_tables=TOKEN_TABLES)
    (folder / "config.json").write_text(json.dumps({"clip": TINY_HPS_CONFIG}))
    state = load_weights(folder / "model.safetensors", token_tables=TOKEN_TABLES)
    assert state["token_embedding.weight"].shape == (49408, 64)
    assert (folder / "model.safetensors").stat().st_size < 2_000_000  # vs 12.6 MB untrimmed

    reward = load_tiny_reward(folder)
    assert not any(p.requires_grad for p in reward.parameters())
    torch.testing.assert_close(reward(_frames(), CAPTIONS), reference, atol=3e-3, rtol=0)

    write_manifest(folder.parent)
    load_tiny_reward(folder)  # checksums verified
    (folder / "config.json").write_text(json.dumps({"clip": TINY_HPS_CONFIG}) + " ")
    with pytest.raises(ValueError, match="checksum"):
        load_tiny_reward(folder)


@pytest.mark.skipif(not (REWARD_FOLDER / "model.safetensors").is_file(),
                    reason="tiny HPS weights not shipped yet")
def test_shipped_reward_agrees_with_the_judge_on_held_out_pairs():
    """Fresh pairs (evaluation-only seeds) of every split, incl. categories never trained on."""
    reward = load_tiny_reward()
    agree = np.concatenate([pairwise_agreement(reward, heldout_pairs(split, 60))
                            for split in SPLITS])
    assert agree.mean() >= SHIPPED_MIN_ACCURACY, f"pairwise accuracy {agree.mean():.3f}"
