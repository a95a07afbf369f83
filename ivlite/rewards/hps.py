"""HPSv2 (Human Preference Score v2) as a differentiable training reward.

HPSv2 is open_clip's ViT-H-14 with weights fine-tuned on human preference pairs, published as
``HPS_v2_compressed.pt`` (v2.0, what InstructVideo used) and ``HPS_v2.1_compressed.pt`` in the hub
repository ``xswu/HPSv2``. ivlite does not call the ``hpsv2`` pip package: it scores only PIL images
under ``torch.no_grad()``, pins ``pytest==7.2.0`` and ``protobuf<4``, and version 1.2.0 misses its
BPE vocabulary file. Instead ivlite builds ViT-H-14 with open_clip (``pretrained=None``: no LAION
download), loads the HPS state dict strictly, and scores through :class:`ClipReward`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .clip import ClipReward, clip_tokenizer_fn

HPS_FILES = {"v2": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
HPS_REPO = "xswu/HPSv2"


def find_hps_checkpoint(version: str = "v2", path: str | None = None) -> Path:
    """Locate an HPS checkpoint: ``path`` if given, else the hpsv2 package's cache, else the hub."""
    if version not in HPS_FILES:
        raise ValueError(f"HPS version={version!r}; allowed: {sorted(HPS_FILES)}")
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"reward_checkpoint={path!r} does not exist")
        return Path(path)
    cache = Path(os.environ.get("HPS_ROOT", os.path.expanduser("~/.cache/hpsv2")))
    if (cache / HPS_FILES[version]).is_file():
        return cache / HPS_FILES[version]
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(HPS_REPO, HPS_FILES[version]))


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.pt`` checkpoint safely (``weights_only=True``: no pickled code runs)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated, or holding pickled objects
        raise ValueError(f"cannot read checkpoint {str(path)!r} as plain tensors: {err}") from err
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {str(path)!r} holds no state dict")
    return state


def hps_reward(version: str = "v2", checkpoint: str | None = None, *,
               model: torch.nn.Module | None = None) -> ClipReward:
    """HPSv2 as a :class:`ClipReward`. ``model`` replaces the ViT-H-14 build (tests pass a tiny one)."""
    path = find_hps_checkpoint(version, checkpoint)
    if model is None:
        import open_clip

        model = open_clip.create_model("ViT-H-14", pretrained=None)
    state = load_state_dict(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {str(path)!r} does not fit the HPS architecture: "
                         f"{str(err).splitlines()[0]}") from err
    return ClipReward(model, clip_tokenizer_fn())
