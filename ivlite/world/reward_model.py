"""The tiny world's HPSv2: a small open_clip CLIP trained on preference pairs.

HPSv2 (Wu et al. 2023), the reward InstructVideo fine-tunes with, is open_clip's ViT-H-14 CLIP
fine-tuned on 798k human choices between two images generated for one prompt. Its score for an
image and a prompt is the cosine similarity of their L2-normalised CLIP embeddings.

The miniature keeps everything but the size: the same open_clip ``CLIP`` class, the real CLIP BPE
tokenizer (49,408 tokens, 77 positions: ``open_clip.get_tokenizer("ViT-H-14")``), the same score
(:class:`ivlite.rewards.ClipReward`: cosine, no logit scale) and the same two-stage recipe
(:mod:`.train_reward`): contrastive pre-training on captioned frames of the world, then preference
fine-tuning on pairs of frames labelled by the world's hidden rule
(:func:`ivlite.world.judge_frame`), the stand-in for human annotators. Images are 32x32, the
world's frame size, so the reward needs no resize.

Shipped weights live in ``ivlite/assets/tiny_world/reward/`` (``config.json`` and
``model.safetensors``, fp16, the token table trimmed to the world's words: see :mod:`.assets`).

Example::

    reward = load_tiny_reward()                   # ClipReward, frozen
    scores = reward(frames, captions)             # frames (N, 3, 32, 32) in [-1, 1] -> (N,)
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import torch

from .assets import ASSET_ROOT, MANIFEST, is_shipped, load_weights, verify_manifest, \
    verify_shipped

# Every layer is as in open_clip's ViT configs, only narrower and shallower. Patch 4 on 32x32 gives
# 8x8 = 64 patch tokens (+ class token), about ViT-H-14's 16x16 grid at 224 in granularity.
# vocab_size and context_length are CLIP's, so the real tokenizer works unchanged.
TINY_HPS_CONFIG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "patch_size": 4, "width": 64, "layers": 4, "head_width": 32,
                   "mlp_ratio": 4.0},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2,
                 "layers": 3},
}
REWARD_FOLDER = ASSET_ROOT / "tiny_world" / "reward"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# Only the rows of the world's tokens are shipped (49,408 x 64 floats would dwarf the model).
TOKEN_TABLES = ("token_embedding.weight",)


def build_tiny_hps(config: dict[str, Any] | None = None) -> torch.nn.Module:
    """A randomly initialised open_clip ``CLIP`` of the given config (default TINY_HPS_CONFIG).

    Initialise the torch RNG first (``torch.manual_seed``) for a reproducible model.
    """
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    config = copy.deepcopy(TINY_HPS_CONFIG if config is None else config)
    return open_clip.CLIP(embed_dim=config["embed_dim"],
                          vision_cfg=CLIPVisionCfg(**config["vision_cfg"]),
                          text_cfg=CLIPTextCfg(**config["text_cfg"]))


@functools.lru_cache(maxsize=1)
def tiny_hps_tokenizer():
    """The real CLIP BPE tokenizer (list of N strings -> (N, 77) int64 ids), as HPSv2 uses.

    Built once per process (reading the BPE merges takes ~0.3 s); it holds no per-call state.
    """
    from ..rewards.clip import clip_tokenizer_fn

    return clip_tokenizer_fn()


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Parameters per part: vision tower, text transformer (without the token table), token table.

    ``shipped_token_rows`` is what the trimmed table keeps (see :mod:`.assets`).
    """
    counts = {"vision": 0, "text": 0, "token_table": 0, "other": 0}
    for name, param in model.named_parameters():
        if name.startswith("visual."):
            counts["vision"] += param.numel()
        elif name in TOKEN_TABLES:
            counts["token_table"] += param.numel()
        elif name == "logit_scale":
            counts["other"] += param.numel()
        else:  # transformer, positional embedding, final norm, text projection
            counts["text"] += param.numel()
    counts["vision_plus_text"] = counts["vision"] + counts["text"]
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def load_tiny_hps(folder: str | Path | None = None, *, verify: bool = True) -> torch.nn.Module:
    """The trained tiny HPS as an open_clip ``CLIP`` in float32 (eval mode, trainable params).

    ``folder`` holds ``config.json`` and ``model.safetensors`` (default: the shipped one). When the
    folder's parent has a ``manifest.json`` (the shipped layout), both files are checked against
    their SHA-256 first.
    """
    folder = Path(REWARD_FOLDER if folder is None else folder)
    weights, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    if folder.is_file():
        raise NotADirectoryError(f"tiny HPS reward {str(folder)!r} is a file; expected a folder "
                                 f"with {WEIGHTS_FILE} and {CONFIG_FILE}")
    if not weights.is_file() or not config_path.is_file():
        raise FileNotFoundError(
            f"no tiny HPS reward in {str(folder)!r} (need {WEIGHTS_FILE} and {CONFIG_FILE}); "
            f"train one with `python -m tools.tiny_world.train_reward --out {folder}`")
    if verify and is_shipped(folder.parent):
        verify_shipped(folder.parent)  # the manifest too must be there
    elif verify and (folder.parent / MANIFEST).is_file():
        verify_manifest(folder.parent, [f"{folder.name}/{WEIGHTS_FILE}",
                                        f"{folder.name}/{CONFIG_FILE}"])
    config = json.loads(config_path.read_text())
    model = build_tiny_hps(config.get("clip", config))
    model.load_state_dict(load_weights(weights, token_tables=TOKEN_TABLES), strict=True)
    return model.eval()


def load_tiny_reward(folder: str | Path | None = None, *, verify: bool = True):
    """The trained tiny HPS as a frozen :class:`ivlite.rewards.ClipReward`.

    score(frame, caption) = cosine(image features, text features), frames (N, 3, 32, 32) in
    [-1, 1]. Raises FileNotFoundError if the weights are not there (not trained or not shipped).
    """
    from ..rewards.clip import ClipReward

    return ClipReward(load_tiny_hps(folder, verify=verify), tiny_hps_tokenizer())
