"""Rewards: the protocol, CLIP-style preference models (HPSv2, PickScore, miniatures), a registry.

``build_reward("hpsv2")`` or ``build_reward("a:0.7,b:0.3")`` (a weighted sum) turns a config
string into a :class:`Reward`; :func:`available_rewards` lists the names.
"""

from __future__ import annotations

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


def _tiny_hps(folder: str | None) -> Reward:
    from ..world.reward_model import load_tiny_reward

    return load_tiny_reward(folder)


def register_reward(name: str, factory: Callable[[str | None], Reward]) -> None:
    """Make ``name`` usable in configs; ``factory(checkpoint_or_None)`` builds the reward."""
    _REGISTRY[name] = factory


def available_rewards() -> list[str]:
    return sorted(_REGISTRY)


def parse_reward_spec(spec: str) -> dict[str, float]:
    """``"hpsv2"`` -> {hpsv2: 1}; ``"a:0.7,b:0.3"`` -> {a: 0.7, b: 0.3}. Validates names and weights."""
    weights: dict[str, float] = {}
    for part in spec.split(","):
        name, _, weight = part.strip().partition(":")
        if name not in _REGISTRY:
            raise ValueError(f"reward={spec!r}: unknown reward {name!r}; available: "
                             f"{available_rewards()}")
        try:
            weights[name] = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"reward={spec!r}: weight {weight!r} of {name!r} is not a number")
    return weights


def build_reward(spec: str, checkpoint: str | None = None) -> Reward:
    """A reward from a config string; ``checkpoint`` goes to a single reward's factory."""
    weights = parse_reward_spec(spec)
    if len(weights) == 1 and next(iter(weights.values())) == 1.0:
        return _REGISTRY[next(iter(weights))](checkpoint)
    return WeightedReward({n: _REGISTRY[n](None) for n in weights}, weights)


__all__ = ["Reward", "RewardGradientError", "WeightedReward", "check_reward_gradients",
           "ClipReward", "tiny_random_clip", "hps_reward", "HFClipReward", "pickscore_reward",
           "build_reward", "register_reward",
           "available_rewards", "parse_reward_spec"]
