"""Everything a configuration names, in one place: models, rewards, training data, judges and
prompt splits.

A config says ``model: tiny-world`` or ``reward: hpsv2:0.7,pickscore:0.3`` or ``data: generated``;
this module turns such names into objects. The rest of ivlite asks here and never names a model,
reward or data source itself; in particular the tiny world (:mod:`ivlite.world`: its model, its
reward, its clips, its oracle and its prompt splits) enters only through this module, as entries
like any other (``tests/test_layering.py`` checks that no other core module imports or names it).

- :data:`MODELS`: built-in text-to-video models; any other name is a diffusers folder or a hub id
  (:func:`ivlite.models.load_video_model`). :func:`load_model` resolves both.
- :data:`REWARDS`: frame rewards; :func:`build_reward` reads ``name`` or ``a:0.7,b:0.3``.
- :data:`DATA`: named sources of training clips; any other ``data`` value is a caption table.
- :data:`JUDGES`: clip judges that are not rewards (any reward name is a judge too);
  :func:`oracle` is the tiny world's verdict on a clip, for evaluation tables.
- :data:`SPLITS`: named sets of evaluation prompt splits.
- :data:`ASSETS`: the shipped files a named model or reward reads (for a run's provenance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .config import Config, first_line
from .data import LatentClips, generated_clips
from .judges import RewardJudge
from .models import VideoModel, load_video_model, tiny_random_model
from .prompts import paper_splits
from .rewards import ClipReward, Reward, WeightedReward, clip_tokenizer_fn, hps_reward, \
    pickscore_reward, tiny_random_clip
from .world.captions import split_scenes, world_splits
from .world.data import world_clips
from .world.judge import Oracle, OracleJudge
from .world.reward_model import REWARD_FOLDER, load_tiny_reward
from .world.tiny_models import WORLD_DIR, load_tiny_world

# The tiny world's names (tests/test_layering.py: no other core module spells them).
WORLD_MODEL = "tiny-world"
WORLD_REWARD = "tiny-hps"
WORLD_DATA = "world"
WORLD_SPLITS = "world"
WORLD_JUDGES = ("oracle-quality", "oracle-score")


# ============================================================================== models

MODELS: dict[str, Callable[[torch.dtype], VideoModel]] = {
    # Built in code, random weights, ~3M parameters: tests and seconds-long runs.
    "tiny-random": lambda dtype: tiny_random_model(),
    # The tiny world's shipped model (fp16 files, loaded in float32; checksums verified).
    WORLD_MODEL: lambda dtype: load_tiny_world(),
}


def load_model(name: str, *, dtype: torch.dtype = torch.float32, **hub) -> VideoModel:
    """The model a config's ``model`` names: a built-in of :data:`MODELS`, else a diffusers folder
    or hub id loaded in ``dtype`` (``hub``: revision, variant, local_files_only). Built-in models
    come in their own precision; the trainer moves them to the run's."""
    if name in MODELS:
        return MODELS[name](dtype)
    return load_video_model(name, dtype=dtype, **hub)


# ============================================================================== rewards

REWARDS: dict[str, Callable[[str | None], Reward]] = {
    "tiny-random-clip": lambda ckpt: ClipReward(tiny_random_clip(), clip_tokenizer_fn()),
    "hpsv2": lambda ckpt: hps_reward("v2", ckpt),
    "hpsv2.1": lambda ckpt: hps_reward("v2.1", ckpt),
    # The tiny world's HPS: a small open_clip CLIP trained on the world's preference pairs.
    WORLD_REWARD: lambda ckpt: load_tiny_reward(ckpt),
    # A held-out judge (a CLIPModel folder or hub id as the checkpoint; default PickScore_v1).
    "pickscore": lambda ckpt: pickscore_reward(ckpt),
}
READS_CHECKPOINT: set[str] = {"hpsv2", "hpsv2.1", WORLD_REWARD, "pickscore"}
"""Rewards whose factory reads a checkpoint (the others build fixed weights and would ignore
one)."""


def register_reward(name: str, factory: Callable[[str | None], Reward], *,
                    reads_checkpoint: bool = True) -> None:
    """Make ``name`` usable in configs; ``factory(checkpoint_or_None)`` builds the reward.
    ``reads_checkpoint=False``: the factory ignores its argument, so a ``reward_checkpoint`` given
    with this reward is refused rather than silently unused."""
    REWARDS[name] = factory
    if reads_checkpoint:
        READS_CHECKPOINT.add(name)
    else:
        READS_CHECKPOINT.discard(name)


def available_rewards() -> list[str]:
    return sorted(REWARDS)


def parse_reward_spec(spec: str) -> dict[str, float]:
    """``"hpsv2"`` -> {hpsv2: 1}; ``"a:0.7,b:0.3"`` -> {a: 0.7, b: 0.3}. Validates names and
    weights."""
    weights: dict[str, float] = {}
    for part in spec.split(","):
        name, colon, weight = (s.strip() for s in part.strip().partition(":"))
        if name not in REWARDS:
            raise ValueError(f"reward={spec!r}: unknown reward {name!r}; available: "
                             f"{available_rewards()}")
        if name in weights:  # a dict would keep the last term only
            raise ValueError(f"reward={spec!r}: {name!r} appears twice; allowed: each reward "
                             f"once, e.g. 'a:0.7,b:0.3'")
        try:
            value = float(weight) if colon else 1.0
        except ValueError:
            raise ValueError(f"reward={spec!r}: weight {weight!r} of {name!r} is not a "
                             f"number") from None
        if not math.isfinite(value):
            raise ValueError(f"reward={spec!r}: weight {weight!r} of {name!r} is not a finite "
                             f"number")
        weights[name] = value
    return weights


def check_reward_checkpoint(spec: str, checkpoint: str | None) -> None:
    """ValueError unless ``checkpoint`` is None or read by the reward ``spec`` names: one reward
    whose factory loads weights (a weighted sum of several would not know which term it is for)."""
    if checkpoint is None:
        return
    names = list(parse_reward_spec(spec))
    readers = sorted(READS_CHECKPOINT & set(REWARDS))
    if len(names) > 1:
        raise ValueError(f"reward_checkpoint={checkpoint!r} with reward={spec!r}: a sum of "
                         f"several rewards does not read a checkpoint; give one reward of "
                         f"{readers}, or leave reward_checkpoint unset")
    if names[0] not in READS_CHECKPOINT:
        raise ValueError(f"reward_checkpoint={checkpoint!r}: reward={names[0]!r} reads no "
                         f"checkpoint; allowed only with {readers}")


def build_reward(spec: str, checkpoint: str | None = None) -> Reward:
    """A reward from a config string; ``checkpoint`` goes to a single reward's factory."""
    weights = parse_reward_spec(spec)
    check_reward_checkpoint(spec, checkpoint)
    rewards = {n: _load_reward(n, checkpoint) for n in weights}
    if len(weights) == 1 and next(iter(weights.values())) == 1.0:
        return next(iter(rewards.values()))
    return WeightedReward(rewards, weights)


def _load_reward(name: str, checkpoint: str | None) -> Reward:
    """``name``'s reward; a checkpoint that cannot be read gives one line naming it (a missing
    file's own FileNotFoundError already does)."""
    try:
        return REWARDS[name](checkpoint)
    except Exception as err:
        if checkpoint is None or isinstance(err, OSError):
            raise
        raise ValueError(f"reward_checkpoint={checkpoint!r}: cannot be read as a {name!r} "
                         f"checkpoint ({type(err).__name__}: {first_line(err)})") from None


# ============================================================================== training data


@dataclass(frozen=True)
class DataSource:
    """A named source of training clips."""

    load: Callable[[Config, VideoModel], LatentClips]
    """Latent clips with captions for a run's config and its loaded model."""
    captions: Callable[[Config], list[str]]
    """The captions it trains on (for the evaluation report's overlap count), without loading."""
    check: Callable[[Config], str | None] = lambda cfg: None
    """What in the config it cannot serve, as one line naming the fields; None when it fits."""


def _generated(cfg: Config, model: VideoModel) -> LatentClips:
    return generated_clips(model, cfg.prompts, model_name=cfg.model, num_frames=cfg.num_frames,
                           height=cfg.height, width=cfg.width, ddim_steps=cfg.ddim_steps,
                           guidance_scale=cfg.guidance_scale, seed=cfg.seed)


def _world_size(cfg: Config) -> str | None:
    if (cfg.height, cfg.width) == (32, 32):
        return None
    return (f"height={cfg.height}, width={cfg.width}: data={WORLD_DATA!r} renders 32x32 clips; "
            f"use height=32 and width=32, or another data source")


DATA: dict[str, DataSource] = {
    # One clip the base model samples per prompt, cached: the WebVid-free path.
    "generated": DataSource(_generated, lambda cfg: list(cfg.prompts)),
    # Renders of the tiny world's in-domain scenes, VAE-encoded.
    WORLD_DATA: DataSource(
        lambda cfg, model: world_clips(model, "in_domain", seed=cfg.seed,
                                       num_frames=cfg.num_frames),
        lambda cfg: [scene.caption for scene in split_scenes("in_domain")], _world_size),
}


def held_out_prompts(cfg: Config, count: int = 4, seed: int = 0) -> list[str] | None:
    """Default held-out prompts for early stopping: ``count`` prompts of the tiny world's held-out
    split (categories fine-tuning never sees) when the run is on the tiny world, else None."""
    if cfg.model != WORLD_MODEL and cfg.data != WORLD_DATA:
        return None
    return world_splits(count, seed)["held_out"]


# ============================================================================== judges

# Which second judge on the tiny world? Its other reward, tiny-random-clip, is an untrained CLIP:
# its scores are noise. The world has one learned preference model, tiny-hps, and it is the
# training reward. So the default judge is the oracle's frame quality: a hand-written rule (edge
# sharpness, saturation, contrast, pixel noise) that shares no weights with tiny-hps, has no
# learned blind spots a policy could exploit, and that no gradient ever reaches. Its limits: it
# judges visual quality only, not text alignment (the oracle's colour/shape/motion columns cover
# that); it is part of the oracle, so on the tiny world judge and oracle are not independent
# evidence; and tiny-hps learned from pairs labelled by the hidden rule, whose quality term is
# this score, so the judge is what the proxy imitates rather than a second opinion. At full scale
# a learned judge from another preference dataset is the honest choice (``judge="pickscore"``);
# the paper itself backs HPSv2 with a user study.
JUDGES: dict[str, Callable[[], Callable]] = {
    "oracle-quality": lambda: OracleJudge("frame_quality"),
    "oracle-score": lambda: OracleJudge("score"),
}
JUDGE_HELP = {
    "oracle-quality": "tiny world: the oracle's frame quality (sharpness, saturation, contrast, "
                      "pixel noise; mean over all frames), a hand-written rule",
    "oracle-score": "tiny world: the oracle's overall score (alignment, quality, consistency)",
    "<reward name>": "any reward of the registry (e.g. pickscore, hpsv2) on SegVR's first "
                     "frames, averaged per clip",
}


def build_judge(name: str, *, segments: int = 4, checkpoint: str | None = None, device=None):
    """A judge from a name: one of :data:`JUDGES` or a reward of :data:`REWARDS`.

    A judge maps clips (N, F, 3, H, W) in [-1, 1] and N prompts to N scores (higher is better).
    """
    if name in JUDGES:
        return JUDGES[name]()
    reward = build_reward(name, checkpoint)
    if isinstance(reward, torch.nn.Module):
        reward.requires_grad_(False).eval()
        if device is not None:
            reward.to(device)
    return RewardJudge(reward, name, segments)


def oracle() -> Oracle:
    """The tiny world's oracle: per-clip verdicts (alignment, frame quality, temporal
    consistency) on prompts it covers, and their summary."""
    return Oracle()


def default_judge(prompts: Sequence[str]) -> str | None:
    """The second judge an evaluation uses unless told: the oracle's frame quality when it covers
    every prompt, else none."""
    judge = oracle()
    return "oracle-quality" if all(judge.covers(p) for p in prompts) else None


# ============================================================================== prompt splits

SPLITS: dict[str, Callable[[int, int], dict[str, list[str]]]] = {
    # The tiny world's in-domain, held-out and out-of-domain prompts (per_split each, seeded).
    WORLD_SPLITS: lambda per_split, seed: world_splits(per_split, seed),
    # ivlite's own animals / new-animals / non-animals sets, after the paper's Table 1.
    "paper": lambda per_split, seed: paper_splits(),
}


# ============================================================================== provenance

ASSETS: dict[str, tuple[Path, tuple[str, ...] | None]] = {
    WORLD_MODEL: (WORLD_DIR, ("vae/*", "unet/*", "text_encoder/*", "scheduler/*",
                              "manifest.json")),
    WORLD_REWARD: (REWARD_FOLDER, None),
}
"""name -> (folder, glob patterns or None for every weight and config file): what it reads."""

WORLD_NAMES = frozenset({WORLD_MODEL, WORLD_REWARD, WORLD_DATA, WORLD_SPLITS, *WORLD_JUDGES})
