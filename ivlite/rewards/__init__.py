"""Rewards: the protocol, CLIP-style preference models (HPSv2, PickScore, miniatures), a registry.

``build_reward("hpsv2")`` or ``build_reward("a:0.7,b:0.3")`` (a weighted sum) turns a config
string into a :class:`Reward`; :func:`available_rewards` lists the names.
"""

from __future__ import annotations

import math
from typing import Callable

from .base import Reward, RewardGradientError, WeightedReward, check_reward_gradients
from .clip import ClipReward, clip_tokenizer_fn, tiny_random_clip
from .hps import hps_reward
from .pickscore import HFClipReward, pickscore_reward

_REGISTRY: dict[str, Callable[[str | None], Reward]] = {
    "tiny-random-clip": lambda ckpt: ClipReward(tiny_random_clip(), clip_tokenizer_fn()),
    "hpsv2": lambda ckpt: hps_reward("v2", ckpt),
    "hpsv2.1": lambda ckpt: hps_reward("v2.1", ckpt),
    "tiny-hps": lambda ckpt: _tiny_hps(ckpt),
    # A held-out judge (a CLIPModel folder or hub id as the checkpoint; default PickScore_v1).
    "pickscore": lambda ckpt: pickscore_reward(ckpt),
}
# Rewards whose factory reads a checkpoint (the others build fixed weights and would ignore one).
_READS_CHECKPOINT: set[str] = {"hpsv2", "hpsv2.1", "tiny-hps", "pickscore"}


def _tiny_hps(folder: str | None) -> Reward:
    from ..world.reward_model import load_tiny_reward

    return load_tiny_reward(folder)


def register_reward(name: str, factory: Callable[[str | None], Reward], *,
                    reads_checkpoint: bool = True) -> None:
    """Make ``name`` usable in configs; ``factory(checkpoint_or_None)`` builds the reward.
    ``reads_checkpoint=False``: the factory ignores its argument, so a ``reward_checkpoint`` given
    with this reward is refused rather than silently unused."""
    _REGISTRY[name] = factory
    if reads_checkpoint:
        _READS_CHECKPOINT.add(name)
    else:
        _READS_CHECKPOINT.discard(name)


def available_rewards() -> list[str]:
    return sorted(_REGISTRY)


def parse_reward_spec(spec: str) -> dict[str, float]:
    """``"hpsv2"`` -> {hpsv2: 1}; ``"a:0.7,b:0.3"`` -> {a: 0.7, b: 0.3}. Validates names and weights."""
    weights: dict[str, float] = {}
    for part in spec.split(","):
        name, colon, weight = (s.strip() for s in part.strip().partition(":"))
        if name not in _REGISTRY:
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
    readers = sorted(_READS_CHECKPOINT & set(_REGISTRY))
    if len(names) > 1:
        raise ValueError(f"reward_checkpoint={checkpoint!r} with reward={spec!r}: a sum of "
                         f"several rewards does not read a checkpoint; give one reward of "
                         f"{readers}, or leave reward_checkpoint unset")
    if names[0] not in _READS_CHECKPOINT:
        raise ValueError(f"reward_checkpoint={checkpoint!r}: reward={names[0]!r} reads no "
                         f"checkpoint; allowed only with {readers}")


def build_reward(spec: str, checkpoint: str | None = None) -> Reward:
    """A reward from a config string; ``checkpoint`` goes to a single reward's factory."""
    weights = parse_reward_spec(spec)
    check_reward_checkpoint(spec, checkpoint)
    rewards = {n: _load(n, checkpoint) for n in weights}
    if len(weights) == 1 and next(iter(weights.values())) == 1.0:
        return next(iter(rewards.values()))
    return WeightedReward(rewards, weights)


def _load(name: str, checkpoint: str | None) -> Reward:
    """``name``'s reward; a checkpoint that cannot be read gives one line naming it (a missing
    file's own FileNotFoundError already does)."""
    try:
        return _REGISTRY[name](checkpoint)
    except Exception as err:
        if checkpoint is None or isinstance(err, OSError):
            raise
        from ..config import first_line

        raise ValueError(f"reward_checkpoint={checkpoint!r}: cannot be read as a {name!r} "
                         f"checkpoint ({type(err).__name__}: {first_line(err)})") from None


__all__ = ["Reward", "RewardGradientError", "WeightedReward", "check_reward_gradients",
           "ClipReward", "tiny_random_clip", "hps_reward", "HFClipReward", "pickscore_reward",
           "build_reward", "register_reward",
           "available_rewards", "check_reward_checkpoint", "parse_reward_spec"]
