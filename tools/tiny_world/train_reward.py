"""Train the tiny world's HPSv2: contrastive pre-training, then preference fine-tuning.

HPSv2 starts from a contrastively pre-trained CLIP (OpenCLIP ViT-H-14 on LAION) and fine-tunes it
on human choices between two images generated for the same prompt: for a prompt p and images
(a, b) with a preferred, the loss is the cross-entropy of softmax(logit_scale * [s(a, p), s(b, p)])
against "a", with s the cosine similarity of CLIP embeddings. That is a Bradley-Terry model,
``-log sigmoid(logit_scale * (s(a, p) - s(b, p)))``. This module runs the same two stages on the
tiny world:

1. **contrastive**: frames (single frames of 16-frame clips, in the world's web-like qualities) and
   their captions, CLIP loss with the model's learned logit scale. One frame cannot show motion,
   so captions that differ only in the direction are not negatives of each other (a
   multi-positive CLIP loss, see :func:`contrastive_loss`). Only :func:`base_training_scenes`
   are used: the out-of-domain categories stay unseen, as they are for the base video model.
2. **preference**: pairs of frames for one caption, the better one chosen by the world's hidden
   rule :func:`ivlite.world.judge_frame` (the stand-in for human annotators): two renders of the
   caption in independent random qualities ("quality" pairs), or a render of the caption against
   a render of another colour or shape ("negative" pairs). Pairs whose judge scores tie (less
   than 0.01 apart) are skipped, as HPSv2's data drops ties. A small contrastive term keeps the
   text alignment from stage 1.

It reports the **held-out pairwise accuracy** (agreement with ``judge_frame`` on fresh pairs
rendered from seeds that training never draws) per prompt split, and caption retrieval, in
``OUT/metrics.json``, and ships ``OUT/model.safetensors`` (fp16, trimmed token table) and
``OUT/config.json`` for :func:`ivlite.world.reward_model.load_tiny_reward`.

Checkpoints (every ``--checkpoint-every`` steps) are one safetensors file holding the model, the
optimizer and, in its metadata, the training state; it is written to a temporary name and renamed,
so an interrupted run always leaves a complete checkpoint. Every step draws its data from
``numpy.random.default_rng([seed, stage, step])`` and the model has no dropout, so ``--resume``
continues bit for bit where the run stopped.

Usage::

    OMP_NUM_THREADS=1 python -m tools.tiny_world.train_reward --out ivlite/assets/tiny_world/reward
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ivlite.common import atomic_write_json
from ivlite.rewards.base import bradley_terry_loss
from ivlite.rewards.clip import CLIP_MEAN, CLIP_STD, ClipReward
from ivlite.world.assets import load_weights, save_weights
from ivlite.world.captions import (
    SPLITS,
    Scene,
    all_categories,
    all_scenes,
    base_training_scenes,
    split_scenes,
)
from ivlite.world.oracle import judge_frame
from ivlite.world.render import render_clip, sample_quality
from ivlite.world.reward_model import (
    CONFIG_FILE,
    TINY_HPS_CONFIG,
    TOKEN_TABLES,
    WEIGHTS_FILE,
    build_tiny_hps,
    parameter_counts,
    tiny_hps_tokenizer,
)
from .training import has_state, load_state, remove_state, save_state

# Render seeds: training draws from the lower half of the range, evaluation from the upper half,
# so no evaluation clip can ever have been seen in training, whatever --seed is.
TRAIN_SEEDS = (0, 2**30)
EVAL_SEEDS = (2**30, 2**31 - 1)
EVAL_SEED = 20231220   # fixed, independent of --seed: every run is scored on the same pairs
TIE = 0.01             # judge scores closer than this are a tie: no preference to learn
FRAMES = 16            # frames per rendered clip; training and evaluation use single frames
MAX_LOGIT_SCALE = 100.0  # CLIP's clamp of exp(logit_scale)
METRICS_FILE = "metrics.json"
STAGES = ("contrastive", "preference")


@dataclass
class Settings:
    """Everything that determines the trained weights (a resumed run must match them)."""

    contrastive_steps: int = 900
    preference_steps: int = 600
    batch: int = 128             # images per step (preference: batch // 2 pairs)
    seed: int = 0
    contrastive_lr: float = 1e-3
    preference_lr: float = 3e-4  # fine-tuning: lower, as HPSv2 fine-tunes a pre-trained CLIP
    warmup: int = 50
    weight_decay: float = 0.05
    regulariser: float = 0.25    # weight of the contrastive term during preference fine-tuning
    negative_fraction: float = 0.5  # share of "negative" (other colour/shape) preference pairs

    @property
    def total_steps(self) -> int:
        return self.contrastive_steps + self.preference_steps


# ----------------------------------------------------------------------------- data


def frame_key(scene: Scene) -> tuple[str, str, str]:
    """What a single frame can show of a scene: colour, shape and background (not the motion)."""
    return (scene.colour, scene.shape, scene.background)


def render_frames(scene: Scene, rng: np.random.Generator, frame_ids: Sequence[int],
                  seed_range: tuple[int, int]) -> np.ndarray:
    """Frames ``frame_ids`` of one clip of ``scene`` in a random web-like quality.

    Returns float32 (len(frame_ids), 3, 32, 32) in [-1, 1].
    """
    quality = sample_quality(rng)
    clip = render_clip(scene, quality, frames=FRAMES, seed=int(rng.integers(*seed_range)))
    return clip[np.asarray(frame_ids)]


def contrastive_batch(rng: np.random.Generator, scenes: Sequence[Scene], n_images: int,
                      ) -> tuple[torch.Tensor, list[Scene]]:
    """``n_images`` frames, two different frames of each rendered clip (half the rendering).

    Returns frames (n_images, 3, 32, 32) in [-1, 1] and the scene of each frame.
    """
    frames, shown = [], []
    while len(frames) < n_images:
        scene = scenes[int(rng.integers(len(scenes)))]
        ids = rng.choice(FRAMES, size=2, replace=False)
        for frame in render_frames(scene, rng, ids, TRAIN_SEEDS):
            frames.append(frame)
            shown.append(scene)
    return torch.from_numpy(np.stack(frames[:n_images])), shown[:n_images]


@dataclass
class Pairs:
    """Preference pairs for one caption each; P pairs, frames (P, 3, 32, 32) in [-1, 1]."""

    first: np.ndarray
    second: np.ndarray
    captions: list[str]          # the prompt both frames are judged against
    judge_first: np.ndarray      # (P,) judge_frame(first, caption)
    judge_second: np.ndarray     # (P,)
    kinds: list[str]             # "quality" or "negative"
    shown_first: list[Scene]     # what each frame actually shows (for the contrastive term)
    shown_second: list[Scene]

    def __len__(self) -> int:
        return len(self.captions)


def sample_pairs(rng: np.random.Generator, scenes: Sequence[Scene], n_pairs: int, *,
                 negative_categories: Sequence[tuple[str, str]], seed_range: tuple[int, int],
                 negative_fraction: float = 0.5, pairs_per_clip: int = 1) -> Pairs:
    """Draw ``n_pairs`` judged, non-tied preference pairs.

    A caption's scene is drawn from ``scenes``. A "quality" pair is two independent renders of it
    (different sizes, positions and random qualities): like two samples of a generator for one
    prompt. A "negative" pair replaces the second by a render of another category from
    ``negative_categories`` with the same motion and background: the generator drew the wrong
    object. ``pairs_per_clip`` > 1 takes several frame pairs from one pair of clips (cheaper).
    """
    out: dict[str, list] = {k: [] for k in ("first", "second", "captions", "judge_first",
                                            "judge_second", "kinds", "shown_first",
                                            "shown_second")}
    while len(out["captions"]) < n_pairs:
        scene = scenes[int(rng.integers(len(scenes)))]
        kind = "negative" if rng.random() < negative_fraction else "quality"
        other = scene
        if kind == "negative":
            options = [c for c in negative_categories if c != scene.category]
            colour, shape = options[int(rng.integers(len(options)))]
            other = Scene(colour, shape, scene.motion, scene.background)
        first = render_frames(scene, rng, rng.choice(FRAMES, pairs_per_clip, replace=False),
                              seed_range)
        second = render_frames(other, rng, rng.choice(FRAMES, pairs_per_clip, replace=False),
                               seed_range)
        for a, b in zip(first, second):
            ja, jb = judge_frame(a, scene), judge_frame(b, scene)
            if abs(ja - jb) < TIE or len(out["captions"]) >= n_pairs:
                continue
            for key, value in zip(out, (a, b, scene.caption, ja, jb, kind, scene, other)):
                out[key].append(value)
    return Pairs(np.stack(out["first"]), np.stack(out["second"]), out["captions"],
                 np.asarray(out["judge_first"]), np.asarray(out["judge_second"]), out["kinds"],
                 out["shown_first"], out["shown_second"])


def step_rng(seed: int, stage: str, step: int) -> np.random.Generator:
    """The data generator of one training step: a pure function of (seed, stage, step)."""
    return np.random.default_rng([seed, STAGES.index(stage), step])


# ----------------------------------------------------------------------------- model and losses


class TextBank:
    """Tokenises every world caption once; maps a batch of captions to unique token rows."""

    def __init__(self):
        self.captions = [s.caption for s in all_scenes()]
        self.tokens = tiny_hps_tokenizer()(self.captions)           # (144, 77)
        self.index = {c: i for i, c in enumerate(self.captions)}

    def unique(self, captions: Sequence[str]) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """(U, 77) tokens of the distinct captions, their texts, and (N,) index of each caption."""
        texts = list(dict.fromkeys(captions))
        where = {c: i for i, c in enumerate(texts)}
        rows = torch.tensor([self.index[c] for c in texts])
        return self.tokens[rows], texts, torch.tensor([where[c] for c in captions])


def normalise_frames(frames: torch.Tensor) -> torch.Tensor:
    """Frames (N, 3, 32, 32) in [-1, 1] -> CLIP input; exactly ClipReward.preprocess at 32x32."""
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return ((frames.float() * 0.5 + 0.5).clamp(0, 1) - mean) / std


def encode(model: torch.nn.Module, frames: torch.Tensor, tokens: torch.Tensor,
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised image (N, E) and text (U, E) features: the score is their dot product."""
    image = F.normalize(model.encode_image(normalise_frames(frames)), dim=-1)
    text = F.normalize(model.encode_text(tokens), dim=-1)
    return image, text


def logit_scale(model: torch.nn.Module) -> torch.Tensor:
    return model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, positive: torch.Tensor,
                     scale: torch.Tensor) -> torch.Tensor:
    """Symmetric CLIP loss with several positives per row.

    image (N, E), text (U, E) normalised; positive (N, U) bool, True where caption u describes
    what frame n shows. Plain CLIP has one positive per row; here the captions of the same
    colour, shape and background but another motion are positives too, because a single frame
    cannot tell them apart: as negatives they would ask the impossible. Every row and column has
    at least one positive (a frame's own caption). Targets are uniform over the positives.
    """
    logits = scale * image @ text.T                                       # (N, U)
    target = positive.float()
    image_to_text = -(target / target.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1)
    text_to_image = -(target.T / target.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1)
    return 0.5 * (image_to_text.mean() + text_to_image.mean())


def positives(shown: Sequence[Scene], texts: Sequence[str]) -> torch.Tensor:
    """(N, U) bool: caption u fits what frame n shows (same colour, shape, background)."""
    keys = [frame_key(Scene.from_caption(t)) for t in texts]
    return torch.tensor([[frame_key(s) == k for k in keys] for s in shown])


def contrastive_step(model, bank: TextBank, settings: Settings, step: int
                     ) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one contrastive step on base-training frames."""
    frames, shown = contrastive_batch(step_rng(settings.seed, "contrastive", step),
                                      base_training_scenes(), settings.batch)
    tokens, texts, _ = bank.unique([s.caption for s in shown])
    image, text = encode(model, frames, tokens)
    positive = positives(shown, texts)
    loss = contrastive_loss(image, text, positive, logit_scale(model))
    # Share of frames whose best caption in the batch fits them: a readable learning signal,
    # since the multi-positive loss cannot reach 0.
    best = (image @ text.T).argmax(1)
    retrieval = positive[torch.arange(len(best)), best].float().mean().item()
    return loss, {"contrastive": loss.item(), "train_retrieval": retrieval}


def preference_step(model, bank: TextBank, settings: Settings, step: int
                    ) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one preference step: Bradley-Terry on judged pairs + contrastive regulariser."""
    base = base_training_scenes()
    pairs = sample_pairs(step_rng(settings.seed, "preference", step), base, settings.batch // 2,
                         negative_categories=sorted({s.category for s in base}),
                         seed_range=TRAIN_SEEDS, negative_fraction=settings.negative_fraction,
                         pairs_per_clip=2)
    n = len(pairs)
    frames = torch.from_numpy(np.concatenate([pairs.first, pairs.second]))  # (2P, 3, 32, 32)
    shown = pairs.shown_first + pairs.shown_second
    tokens, texts, where = bank.unique(pairs.captions + [s.caption for s in shown])
    image, text = encode(model, frames, tokens)
    prompt = text[where[:n]]                                              # (P, E)
    s_first, s_second = (image[:n] * prompt).sum(-1), (image[n:] * prompt).sum(-1)
    first_better = torch.from_numpy(pairs.judge_first > pairs.judge_second)
    better = torch.where(first_better, s_first, s_second)
    worse = torch.where(first_better, s_second, s_first)
    scale = logit_scale(model)
    bt = bradley_terry_loss(better, worse, scale)
    reg = contrastive_loss(image, text, positives(shown, texts), scale)
    accuracy = float((better > worse).float().mean())
    return bt + settings.regulariser * reg, {"preference": bt.item(), "contrastive": reg.item(),
                                             "train_pair_accuracy": accuracy}


def make_optimizer(model: torch.nn.Module, settings: Settings) -> torch.optim.AdamW:
    """AdamW as CLIP trains it (betas 0.9/0.98, eps 1e-6); no weight decay on gains, biases,
    embeddings and the logit scale, which decay would pull towards meaningless zeros."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        embedding = "embedding" in name or name == "logit_scale"
        (decay if param.ndim >= 2 and not embedding else no_decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=settings.contrastive_lr, betas=(0.9, 0.98), eps=1e-6)


def learning_rate(settings: Settings, step: int) -> float:
    """Per-stage linear warm-up then cosine decay to a tenth of the stage's peak rate."""
    if step < settings.contrastive_steps:
        peak, t, length = settings.contrastive_lr, step, settings.contrastive_steps
    else:
        peak = settings.preference_lr
        t, length = step - settings.contrastive_steps, settings.preference_steps
    warm = min(1.0, (t + 1) / max(1, min(settings.warmup, length // 4)))
    cosine = 0.5 * (1 + math.cos(math.pi * t / max(1, length)))
    return peak * warm * (0.1 + 0.9 * cosine)


# ----------------------------------------------------------------------------- evaluation


def heldout_pairs(split: str, n_pairs: int, seed: int = EVAL_SEED) -> Pairs:
    """Fresh judged pairs for the captions of one split, rendered from evaluation-only seeds.

    Negatives are renders of any other of the 18 categories (out-of-domain ones included).
    """
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    return sample_pairs(rng, split_scenes(split), n_pairs, negative_categories=all_categories(),
                        seed_range=EVAL_SEEDS)


@torch.no_grad()
def pairwise_agreement(reward, pairs: Pairs) -> np.ndarray:
    """(P,) bool: the reward prefers the same frame of each pair as ``judge_frame``."""
    s_first = reward(torch.from_numpy(pairs.first), pairs.captions).numpy()
    s_second = reward(torch.from_numpy(pairs.second), pairs.captions).numpy()
    return (s_first > s_second) == (pairs.judge_first > pairs.judge_second)


def pair_metrics(reward, pairs: Pairs) -> dict[str, float]:
    """Pairwise accuracy overall and per kind of pair."""
    agree = pairwise_agreement(reward, pairs)
    kinds = np.asarray(pairs.kinds)
    out = {"pairwise_accuracy": float(agree.mean()), "pairs": len(pairs)}
    for kind in ("quality", "negative"):
        chosen = agree[kinds == kind]
        out[f"{kind}_pair_accuracy"] = float(chosen.mean()) if len(chosen) else None
        out[f"{kind}_pairs"] = len(chosen)
    return out


@torch.no_grad()
def retrieval_metrics(reward, split: str, n_frames: int, seed: int = EVAL_SEED,
                      ) -> dict[str, float]:
    """Caption retrieval: for fresh frames of a split, the best-scoring of all 144 captions.

    ``retrieval_accuracy``: it names the right colour, shape and background (the motion is
    invisible in one frame, so it is not asked for); ``category_accuracy``: colour and shape.
    """
    rng = np.random.default_rng([seed, SPLITS.index(split), 1])
    scenes = split_scenes(split)
    shown = [scenes[int(rng.integers(len(scenes)))] for _ in range(n_frames)]
    frames = np.stack([render_frames(s, rng, [int(rng.integers(FRAMES))], EVAL_SEEDS)[0]
                       for s in shown])
    candidates = all_scenes()
    image = reward.image_features(torch.from_numpy(frames))
    text = reward.text_features([c.caption for c in candidates])
    best = [candidates[i] for i in (image @ text.T).argmax(1).tolist()]
    return {
        "retrieval_accuracy": float(np.mean([frame_key(b) == frame_key(s)
                                             for b, s in zip(best, shown)])),
        "category_accuracy": float(np.mean([b.category == s.category
                                            for b, s in zip(best, shown)])),
    }


def evaluate_reward(reward, n_pairs: int = 400, n_frames: int = 300, seed: int = EVAL_SEED,
                    ) -> dict[str, dict[str, float]]:
    """Pairwise accuracy and retrieval per split (in_domain, held_out, out_of_domain)."""
    return {split: {**pair_metrics(reward, heldout_pairs(split, n_pairs, seed)),
                    **retrieval_metrics(reward, split, n_frames, seed)} for split in SPLITS}


def as_reward(model: torch.nn.Module) -> ClipReward:
    """A frozen copy of ``model`` behind the same ClipReward that fine-tuning uses."""
    return ClipReward(copy.deepcopy(model), tiny_hps_tokenizer())


# ----------------------------------------------------------------------------- training loop


def train(out: Path, settings: Settings, *, resume: bool = False, checkpoint_every: int = 100,
          stop_at: int | None = None, eval_pairs: int = 400, eval_frames: int = 300,
          log_every: int = 25, keep_checkpoint: bool = False) -> dict | None:
    """Run (or resume) both stages and write the final files; returns the metrics.

    ``stop_at``: checkpoint and return None once this many steps are done (an interruption, for
    tests and time-sliced runs; ``resume=True`` continues).
    """
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    model = build_tiny_hps(TINY_HPS_CONFIG).train()
    optimizer = make_optimizer(model, settings)
    bank = TextBank()
    state = {"step": 0, "settings": asdict(settings), "log": [], "train_seconds": 0.0}
    if resume and has_state(out):
        state = load_state(out, {"model": model}, optimizer)["progress"]
        if state["settings"] != asdict(settings):
            diff = {k: (state["settings"].get(k), v) for k, v in asdict(settings).items()
                    if state["settings"].get(k) != v}
            raise ValueError(f"--resume with other settings than the checkpoint's "
                             f"(checkpoint, now): {diff}")
        print(f"resuming from step {state['step']}", flush=True)
    elif resume:
        print(f"no checkpoint in {out}; starting from scratch", flush=True)

    started, window = time.perf_counter(), []
    while state["step"] < settings.total_steps:
        step = state["step"]
        if step == settings.contrastive_steps:
            # Stage 2 is a fine-tuning run of its own: record where stage 1 got to, fresh AdamW.
            if "after_contrastive" not in state and settings.preference_steps > 0:
                state["after_contrastive"] = evaluate_reward(as_reward(model), eval_pairs,
                                                             eval_frames)
                print(f"after contrastive: {compact(state['after_contrastive'])}", flush=True)
            optimizer = make_optimizer(model, settings)
            window = []  # the log averages one stage's losses at a time
        stage = "contrastive" if step < settings.contrastive_steps else "preference"
        lr = learning_rate(settings, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        run_step = contrastive_step if stage == "contrastive" else preference_step
        loss, parts = run_step(model, bank, settings, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        state["step"] = step + 1
        window.append(parts)
        if state["step"] % log_every == 0 or state["step"] == settings.total_steps:
            elapsed = time.perf_counter() - started
            entry = {"step": state["step"], "stage": stage, "lr": lr,
                     "logit_scale": logit_scale(model).item(),
                     **{k: float(np.mean([w[k] for w in window])) for k in window[-1]}}
            state["log"].append(entry)
            window = []
            print(f"{json.dumps(entry)}  [{elapsed + state['train_seconds']:.0f}s]", flush=True)
        done = state["step"] in (stop_at, settings.total_steps)
        if state["step"] % checkpoint_every == 0 or done:
            state["train_seconds"] += time.perf_counter() - started
            started = time.perf_counter()
            save_state(out, state["step"], {"model": model}, optimizer, {"progress": state})
        if state["step"] == stop_at and state["step"] < settings.total_steps:
            return None
    state["train_seconds"] += time.perf_counter() - started
    metrics = finish(out, model, settings, state, eval_pairs, eval_frames)
    if not keep_checkpoint:  # the folder is shipped as is: no 40 MB of optimizer state in it
        remove_state(out)
    return metrics


def finish(out: Path, model: torch.nn.Module, settings: Settings, state: dict,
           eval_pairs: int, eval_frames: int) -> dict:
    """Write the shipped weights, then score *those* (fp16, trimmed) and write the metrics."""
    save_weights(model.state_dict(), out / WEIGHTS_FILE, token_tables=TOKEN_TABLES)
    shipped = build_tiny_hps(TINY_HPS_CONFIG)
    shipped.load_state_dict(load_weights(out / WEIGHTS_FILE, token_tables=TOKEN_TABLES))
    started = time.perf_counter()
    final = evaluate_reward(as_reward(shipped), eval_pairs, eval_frames)
    metrics = {"final": final, "after_contrastive": state.get("after_contrastive"),
               "eval": {"pairs_per_split": eval_pairs, "frames_per_split": eval_frames,
                        "seed": EVAL_SEED, "tie": TIE},
               "mean_pairwise_accuracy": float(np.mean([final[s]["pairwise_accuracy"]
                                                        for s in SPLITS]))}
    print(f"final: {compact(final)}", flush=True)
    atomic_write_json(out / METRICS_FILE, metrics)
    config = {
        "clip": TINY_HPS_CONFIG,
        "score": "cosine similarity of L2-normalised image and text features (HPSv2), frames "
                 "(N, 3, 32, 32) in [-1, 1] -> (x + 1) / 2 -> CLIP mean/std",
        "tokenizer": "open_clip.get_tokenizer('ViT-H-14') (CLIP BPE, 49408 tokens, 77 positions)",
        "training": {**asdict(settings), "steps": state["step"],
                     "train_seconds": round(state["train_seconds"], 1),
                     "eval_seconds": round(time.perf_counter() - started, 1),
                     "torch_threads": torch.get_num_threads(),
                     "final_log": state["log"][-2:]},
        "parameters": parameter_counts(model),
        "metrics": metrics,
    }
    atomic_write_json(out / CONFIG_FILE, config)
    return metrics


def compact(metrics: dict[str, dict[str, float]]) -> str:
    """One line: pairwise / quality-pair / negative-pair / retrieval accuracy per split."""
    def pct(value):
        return "-" if value is None else f"{value:.3f}"

    return "  ".join(
        f"{s}: pair {pct(m['pairwise_accuracy'])} (q {pct(m['quality_pair_accuracy'])}, "
        f"neg {pct(m['negative_pair_accuracy'])}) retr {pct(m['retrieval_accuracy'])}"
        for s, m in metrics.items())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Settings()
    p = argparse.ArgumentParser(prog="python -m tools.tiny_world.train_reward",
                                description="Train the tiny world's HPSv2 reward model.")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--contrastive-steps", type=int, default=defaults.contrastive_steps)
    p.add_argument("--preference-steps", type=int, default=defaults.preference_steps)
    p.add_argument("--batch", type=int, default=defaults.batch,
                   help="images per step (preference: batch // 2 pairs)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--contrastive-lr", type=float, default=defaults.contrastive_lr)
    p.add_argument("--preference-lr", type=float, default=defaults.preference_lr)
    p.add_argument("--regulariser", type=float, default=defaults.regulariser,
                   help="weight of the contrastive term in stage 2")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--stop-at", type=int, default=None,
                   help="checkpoint and exit after this many steps (resume later)")
    p.add_argument("--eval-pairs", type=int, default=400, help="held-out pairs per split")
    p.add_argument("--eval-frames", type=int, default=300, help="retrieval frames per split")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--keep-checkpoint", action="store_true",
                   help="keep OUT/checkpoint.* after the final files are written")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 is fastest for this model on a shared CPU")
    args = p.parse_args(argv)
    if args.batch < 4 or args.contrastive_steps < 0 or args.preference_steps < 0:
        p.error("need --batch >= 4 and non-negative step counts")
    return args


def main(argv: Sequence[str] | None = None) -> dict | None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)
                           if hasattr(args, f.name)})
    return train(args.out, settings, resume=args.resume, checkpoint_every=args.checkpoint_every,
                 stop_at=args.stop_at, eval_pairs=args.eval_pairs, eval_frames=args.eval_frames,
                 log_every=args.log_every, keep_checkpoint=args.keep_checkpoint)


if __name__ == "__main__":
    main(sys.argv[1:])
