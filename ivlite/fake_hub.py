"""The published repositories' layout, offline: tiny random weights in a hub cache folder.

:func:`write_modelscope` lays out ModelScopeT2V's diffusers repository as huggingface_hub's cache
keeps it (``models--ORG--NAME/blobs/<sha256>``, ``snapshots/<revision>/<path>`` linking to the
blobs, ``refs/main`` naming the revision): ``model_index.json``, every component's config, the
CLIP tokenizer's four files (``tokenizer_config.json`` padding with ``<|endoftext|>`` and
``special_tokens_map.json`` overriding it with ``!``, as published), and the weight files under
their published names, in the default and the ``fp16`` variant, as safetensors and ``.bin``. The
weights are random and tiny (ModelScope's block types with narrow channels, one layer per block:
64x64 frames give 4x2x8x8 latents) but of the same classes, so every loader runs its real code.

:func:`write_hps` puts an HPSv2 checkpoint in its published format (``torch.save`` of
``{"state_dict": ...}`` in half precision, as ``HPS_v2_compressed.pt`` in ``xswu/HPSv2``) for a
small open_clip ViT of ViT-H-14's family (:data:`ivlite.rewards.hps.SMALL_ARCH`).

:func:`offline_hub` points huggingface_hub at such a folder with network use switched off, and
makes the ``hpsv2`` rewards build that small architecture (the only substitution: ViT-H-14 itself
would need a 2 GB checkpoint). Tests, CI and the book's full-mode checks use it; nothing here is
used for real runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from .hub import MODELSCOPE_NAMES, WEIGHT_FILES

HPS_REPO_FILES = {"v2": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}

_SPECIAL = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>"}


def _added_token(content: str, legacy_type: bool) -> dict:
    token = {"content": content, "lstrip": False, "normalized": True, "rstrip": False,
             "single_word": False}
    return {"__type": "AddedToken", **token} if legacy_type else token


def tokenizer_files() -> dict[str, bytes]:
    """ModelScopeT2V's ``tokenizer/`` folder: CLIP's BPE files built from open_clip's vocabulary,
    a ``tokenizer_config.json`` whose pad token is ``<|endoftext|>`` and a
    ``special_tokens_map.json`` whose pad token is ``!``, as the published repository has them."""
    from .tokenizer import _write_vocab_files

    with tempfile.TemporaryDirectory() as tmp:
        _write_vocab_files(Path(tmp))
        files = {f"tokenizer/{n}": (Path(tmp) / n).read_bytes() for n in ("vocab.json",
                                                                          "merges.txt")}
    config = {"add_prefix_space": False, "do_lower_case": True, "errors": "replace",
              "model_max_length": 77, "pad_token": "<|endoftext|>",
              "special_tokens_map_file": "./special_tokens_map.json",
              "tokenizer_class": "CLIPTokenizer",
              **{k: _added_token(v, True) for k, v in _SPECIAL.items()}}
    special = {**{k: _added_token(v, False) for k, v in _SPECIAL.items()}, "pad_token": "!"}
    files["tokenizer/tokenizer_config.json"] = json.dumps(config, indent=2).encode()
    files["tokenizer/special_tokens_map.json"] = json.dumps(special, indent=2).encode()
    return files


def _saved(module, subfolder: str, variant: str | None, fmt: str) -> dict[str, bytes]:
    """A component's config and weight file under the published names, {repo path: bytes}:
    ``save_pretrained`` for safetensors; ``torch.save`` of the state dict for ``.bin``
    (transformers 5 no longer writes .bin files)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    with tempfile.TemporaryDirectory() as tmp:
        verbosity = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
        try:
            module.save_pretrained(tmp, variant=variant)
        finally:
            diffusers_logging.set_verbosity(verbosity)
            transformers_logging.enable_progress_bar()
        files = {f"{subfolder}/{p.name}": p.read_bytes() for p in Path(tmp).iterdir()
                 if p.is_file() and (p.suffix == ".json" or fmt == "safetensors")}
    if fmt == "bin":
        buffer = io.BytesIO()
        torch.save(module.state_dict(), buffer)
        name = WEIGHT_FILES[subfolder][1].format(f".{variant}" if variant else "")
        files[f"{subfolder}/{name}"] = buffer.getvalue()
    return files


def modelscope_files(*, seed: int = 0, variants: tuple[str, ...] = ("fp32", "fp16"),
                     formats: tuple[str, ...] = ("safetensors", "bin")) -> dict[str, bytes]:
    """Every file of a tiny ModelScopeT2V-style diffusers repository, {repo path: bytes}.

    ``variants``: ``fp32`` (the default files) and/or ``fp16`` (``*.fp16.*``, half-precision
    tensors); ``formats``: ``safetensors`` and/or ``bin``. All variants hold the same weights.
    """
    import diffusers
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .models import (MODEL_INDEX, SMALL_MODELSCOPE_TEXT, SMALL_MODELSCOPE_UNET,
                         SMALL_MODELSCOPE_VAE, modelscope_scheduler)

    allowed = {"fp32", "fp16"}, {"safetensors", "bin"}
    if not set(variants) <= allowed[0] or not set(formats) <= allowed[1]:
        raise ValueError(f"variants={variants!r}, formats={formats!r}; allowed: "
                         f"{sorted(allowed[0])}, {sorted(allowed[1])}")
    torch.manual_seed(seed)
    parts = {"unet": UNet3DConditionModel(**{**SMALL_MODELSCOPE_UNET, "layers_per_block": 1}),
             "vae": AutoencoderKL(**SMALL_MODELSCOPE_VAE),
             "text_encoder": CLIPTextModel(CLIPTextConfig(**SMALL_MODELSCOPE_TEXT))}
    files: dict[str, bytes] = {}
    for variant in [v for v in ("fp32", "fp16") if v in variants]:  # fp16 last: in place
        for name, module in parts.items():
            if variant == "fp16":
                for p in module.parameters():
                    p.data = p.data.half()
            for fmt in formats:
                files.update(_saved(module, name, "fp16" if variant == "fp16" else None, fmt))
    files.update(_saved(modelscope_scheduler(), "scheduler", None, "safetensors"))
    files.update(tokenizer_files())
    index = {"_class_name": MODEL_INDEX["_class_name"],
             "_diffusers_version": diffusers.__version__,
             **{k: v for k, v in MODEL_INDEX.items() if not k.startswith("_")}}
    files["model_index.json"] = json.dumps(index, indent=2).encode()
    return files


def hps_checkpoint_bytes(*, seed: int = 0, arch: str | None = None) -> bytes:
    """An HPS checkpoint in the published format: ``torch.save({"state_dict": ...})``, fp16.

    The weights are a random open_clip model of ``arch`` (default: ivlite's small ViT-H-14-shaped
    config, :data:`ivlite.rewards.hps.SMALL_ARCH`).
    """
    import open_clip

    from .rewards.hps import SMALL_ARCH, SMALL_VIT_H_14, register_open_clip_config

    arch = arch or register_open_clip_config(SMALL_ARCH, SMALL_VIT_H_14)
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    buffer = io.BytesIO()
    torch.save({"state_dict": {k: v.half() for k, v in model.state_dict().items()}}, buffer)
    return buffer.getvalue()


def write_snapshot(cache_dir: str | Path, repo_id: str, files: dict[str, bytes],
                   revision: str | None = None) -> Path:
    """Write ``files`` as huggingface_hub's cache holds a download of ``repo_id``; returns the
    snapshot folder. Contents go to ``blobs/<sha256>``, the snapshot links to them (relative
    symbolic links, as on Linux), ``refs/main`` names the revision."""
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    if revision is None:
        digest = hashlib.sha1(repo_id.encode())
        for name in sorted(files):
            digest.update(name.encode() + hashlib.sha256(files[name]).digest())
        revision = digest.hexdigest()
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def write_modelscope(cache_dir: str | Path, repo_id: str = MODELSCOPE_NAMES[1], *,
                     omit: tuple[str, ...] = (), **kwargs) -> Path:
    """A tiny ModelScopeT2V repository (:func:`modelscope_files`, ``kwargs`` go there) in the hub
    cache ``cache_dir`` under ``repo_id``, without the repo paths in ``omit``. Returns the
    snapshot folder."""
    files = modelscope_files(**kwargs)
    unknown = [f for f in omit if f not in files]
    if unknown:
        raise ValueError(f"omit={unknown!r}: not files of the repository; it has {sorted(files)}")
    return write_snapshot(cache_dir, repo_id,
                          {k: v for k, v in files.items() if k not in omit})


def write_hps(cache_dir: str | Path, version: str = "v2", **kwargs) -> Path:
    """An HPS checkpoint (:func:`hps_checkpoint_bytes`) in the hub cache as ``xswu/HPSv2``'s
    file of ``version``; returns its path."""
    from .rewards.hps import HPS_REPO

    if version not in HPS_REPO_FILES:
        raise ValueError(f"version={version!r}; allowed: {sorted(HPS_REPO_FILES)}")
    name = HPS_REPO_FILES[version]
    return write_snapshot(cache_dir, HPS_REPO, {name: hps_checkpoint_bytes(**kwargs)}) / name


@contextlib.contextmanager
def offline_hub(cache_dir: str | Path) -> Iterator[Path]:
    """Inside: huggingface_hub reads only ``cache_dir`` (network off), hpsv2's own download
    folder is an empty one inside it, and the ``hpsv2`` / ``hpsv2.1`` rewards build
    :data:`ivlite.rewards.hps.SMALL_ARCH` (the architecture :func:`write_hps` writes). The
    environment variables are set too, for child processes. Everything is restored on exit."""
    import huggingface_hub.constants as constants

    from .registry import REWARDS
    from .rewards import hps_reward
    from .rewards.hps import SMALL_ARCH, SMALL_VIT_H_14, register_open_clip_config

    cache_dir = Path(cache_dir)
    register_open_clip_config(SMALL_ARCH, SMALL_VIT_H_14)
    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HPS_ROOT")}
    saved_constants = (constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE)
    saved_rewards = {k: REWARDS[k] for k in ("hpsv2", "hpsv2.1")}
    os.environ.update(HF_HUB_CACHE=str(cache_dir), HF_HUB_OFFLINE="1",
                      HPS_ROOT=str(cache_dir / "hpsv2-root"))
    constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = str(cache_dir), True
    REWARDS["hpsv2"] = lambda ckpt: hps_reward("v2", ckpt, arch=SMALL_ARCH)
    REWARDS["hpsv2.1"] = lambda ckpt: hps_reward("v2.1", ckpt, arch=SMALL_ARCH)
    try:
        yield cache_dir
    finally:
        constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = saved_constants
        REWARDS.update(saved_rewards)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
