"""Rewards: the protocol, CLIP-style preference models (HPSv2, PickScore, miniatures).

A config names a reward (``hpsv2``, or ``a:0.7,b:0.3`` for a weighted sum):
:func:`ivlite.registry.build_reward` builds it,
:func:`ivlite.registry.available_rewards` lists the names.
"""

from __future__ import annotations

from .base import (Reward, RewardGradientError, WeightedReward, bradley_terry_loss,
                   check_reward_gradients)
from .clip import ClipReward, clip_tokenizer_fn, tiny_random_clip
from .hps import hps_reward
from .pickscore import HFClipReward, pickscore_reward

__all__ = ["Reward", "RewardGradientError", "WeightedReward", "bradley_terry_loss",
           "check_reward_gradients", "ClipReward", "clip_tokenizer_fn",
           "tiny_random_clip", "hps_reward", "HFClipReward", "pickscore_reward"]
