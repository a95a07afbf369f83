"""HPSv2 (Human Preference Score v2) as a differentiable training reward.

HPSv2 is open_clip's ViT-H-14 with weights fine-tuned on human preference pairs, published as
``HPS_v2_compressed.pt`` (v2.0, what InstructVideo used) and ``HPS_v2.1_compressed.pt`` in the hub
repository ``xswu/HPSv2``. ivlite does not call the ``hpsv2`` pip package: it scores only PIL images
under ``torch.no_grad()``, pins ``pytest==7.2.0`` and ``protobuf<4``, and version 1.2.0 misses its
BPE vocabulary file. Instead ivlite builds ViT-H-14 with open_clip (``pretrained=None``: no LAION
download), loads the HPS state dict strictly, and scores through :class:`ClipReward`.

The checkpoint is looked up in this order: an explicit path (``reward_checkpoint``), the hpsv2
package's cache folder (``$HPS_ROOT``, else ``~/.cache/hpsv2``, where ``hpsv2`` keeps the files it
downloaded), then the hub repository (``huggingface_hub``'s cache, downloading if allowed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .clip import ClipReward, clip_tokenizer_fn

HPS_FILES = {"v2": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
HPS_REPO = "xswu/HPSv2"


HPS_ARCH = "ViT-H-14"
"""The open_clip architecture HPSv2 fine-tunes (the laion2B-s32B-b79K ViT-H-14)."""

# open_clip's ViT-H-14 config (model_configs/ViT-H-14.json) and a scaled-down copy of the same
# family (a ViT image tower with 14-pixel patches and its text transformer, narrow and shallow).
VIT_H_14 = {"embed_dim": 1024,
            "vision_cfg": {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80,
                           "patch_size": 14},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16,
                         "layers": 24}}
SMALL_VIT_H_14 = {"embed_dim": 32,
                  "vision_cfg": {"image_size": 56, "layers": 2, "width": 64, "head_width": 16,
                                 "patch_size": 14},
                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                               "layers": 2}}
SMALL_ARCH = "ViT-H-14-ivlite-small"


def register_open_clip_config(name: str, config: dict, folder: str | Path | None = None) -> str:
    """Make ``name`` an open_clip model (``open_clip.create_model(name)``); returns ``name``.

    open_clip reads model configs from JSON files; this writes ``config`` to ``folder/name.json``
    (default: ivlite's cache) and registers it with ``open_clip.add_model_config``.
    """
    import open_clip

    from ..common import atomic_write_text, cache_dir

    if name in open_clip.list_models():
        return name
    folder = Path(folder) if folder is not None else cache_dir("open_clip_configs")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    atomic_write_text(path, json.dumps(config))
    open_clip.add_model_config(path)
    return name


def hps_cache_dir() -> Path:
    """The hpsv2 package's download folder: ``$HPS_ROOT``, else ``~/.cache/hpsv2``."""
    return Path(os.environ.get("HPS_ROOT") or os.path.expanduser("~/.cache/hpsv2"))


def find_hps_checkpoint(version: str = "v2", path: str | None = None, *,
                        local_files_only: bool = False) -> Path:
    """Locate an HPS checkpoint: ``path`` if given, else the hpsv2 package's cache, else the hub.

    ``local_files_only`` looks only in the hub's local cache (no download; FileNotFoundError if
    the file has never been downloaded).
    """
    if version not in HPS_FILES:
        raise ValueError(f"HPS version={version!r}; allowed: {sorted(HPS_FILES)}")
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"reward_checkpoint={path!r} does not exist")
        return Path(path)
    cache = hps_cache_dir()
    if (cache / HPS_FILES[version]).is_file():
        return cache / HPS_FILES[version]
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(HPS_REPO, HPS_FILES[version],
                                    local_files_only=local_files_only))
    except Exception as err:
        why = str(err).splitlines()[0] if str(err) else ""
        raise FileNotFoundError(
            f"HPS {version} checkpoint {HPS_FILES[version]!r} not found: no reward_checkpoint "
            f"given, not in {str(cache)!r} ($HPS_ROOT), and the hub repository {HPS_REPO!r} "
            f"could not provide it ({type(err).__name__}: {why})") from err


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.pt`` checkpoint safely (``weights_only=True``: no pickled code runs)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated, or holding pickled objects
        raise ValueError(f"cannot read checkpoint {str(path)!r} as plain tensors: {err}") from err
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state:
        raise ValueError(f"checkpoint {str(path)!r} holds no state dict")
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"checkpoint {str(path)!r}: its state dict holds non-tensor values")
    # Checkpoints saved from a DistributedDataParallel model prefix every key with "module.".
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                what: str) -> None:
    """``model.load_state_dict(state, strict=True)`` with an error that says what does not fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of the model's {len(expected)} weights are missing "
                         f"(e.g. {missing[:2]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} have other shapes (e.g. {k}: file "
                         f"{tuple(state[k].shape)}, model {tuple(expected[k].shape)})")
        raise ValueError(f"checkpoint {source!r} does not fit the {what} architecture: "
                         + "; ".join(parts) + " -- is it the right file for this model?")
    model.load_state_dict(state, strict=True)


def hps_reward(version: str = "v2", checkpoint: str | None = None, *,
               model: torch.nn.Module | None = None, arch: str = HPS_ARCH,
               local_files_only: bool = False) -> ClipReward:
    """HPSv2 as a differentiable :class:`ClipReward`, its weights loaded strictly and safely.

    ``arch`` is the open_clip model name to build (``ViT-H-14``; tests register a scaled-down
    config with ``open_clip.add_model_config`` and pass its name); ``model`` replaces the build
    altogether. ``checkpoint`` is an explicit ``.pt`` path (see :func:`find_hps_checkpoint`).
    """
    path = find_hps_checkpoint(version, checkpoint, local_files_only=local_files_only)
    state = load_state_dict(path)  # read (and reject a bad file) before building 1B parameters
    if model is None:
        import open_clip

        if arch not in open_clip.list_models():
            raise ValueError(f"arch={arch!r} is not an open_clip model config; register it with "
                             f"open_clip.add_model_config first")
        model = open_clip.create_model(arch, pretrained=None)
    load_strict(model, state, str(path), f"HPS ({arch})")
    return ClipReward(model, clip_tokenizer_fn())
