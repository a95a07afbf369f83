"""ModelScopeT2V's files: its names on the hub, what a complete copy holds, what is cached.

ModelScopeT2V's diffusers checkpoint was published as ``damo-vilab/text-to-video-ms-1.7b`` and is
now named ``ali-vilab/text-to-video-ms-1.7b``. The hub redirects the old name, but its local cache
keeps each name in its own folder (``models--ORG--NAME``), so files fetched under one name are not
found under the other: :func:`find_cached` looks under both. A copy is complete when it holds every
config and tokenizer file (:data:`CONFIG_FILES`) and one weight file of each component
(:data:`WEIGHT_FILES`) in one variant: ``fp16`` (the repository's half-precision files) or ``fp32``.

The tokenizer's ``special_tokens_map.json`` belongs to the configs: it sets the pad token to ``!``
(id 0), while ``tokenizer_config.json`` says ``<|endoftext|>`` (id 49407). Without the map the
prompts are silently padded with 49407, and the text embeddings are not the model's.

:data:`DOWNLOAD_COMMANDS` are the ``hf download`` lines (huggingface_hub >= 1.0; the older
``huggingface-cli`` is gone) that fetch a complete fp16 copy and the HPSv2 checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

MODELSCOPE_NAMES = ("damo-vilab/text-to-video-ms-1.7b", "ali-vilab/text-to-video-ms-1.7b")
"""The published names of ModelScopeT2V's diffusers checkpoint: the first, then the current one."""

CONFIG_FILES = (
    "model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
    "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json", "scheduler/scheduler_config.json")
"""Every non-weight file :func:`ivlite.load_video_model` reads from a ModelScopeT2V-style repo."""

WEIGHT_FILES = {
    "unet": ("diffusion_pytorch_model{}.safetensors", "diffusion_pytorch_model{}.bin"),
    "vae": ("diffusion_pytorch_model{}.safetensors", "diffusion_pytorch_model{}.bin"),
    "text_encoder": ("model{}.safetensors", "pytorch_model{}.bin"),
}
"""The weight files of each component that ``from_pretrained`` reads, for a variant suffix ("" or
".fp16"): safetensors, else the older .bin."""

VARIANTS = {"fp16": ".fp16", "fp32": ""}

# Each --include takes one pattern: `--include "*.json" "*.txt"` would make "*.txt" a file name,
# and hf download then ignores --include altogether.
DOWNLOAD_COMMANDS = (
    'hf download ali-vilab/text-to-video-ms-1.7b --include "*.json" --include "*.txt" '
    '--include "*fp16.safetensors"',
    "hf download xswu/HPSv2 HPS_v2_compressed.pt",
)
"""Shell commands that put a complete fp16 ModelScopeT2V and HPSv2 (v2.0) in the hub cache."""


def aliases(name: str) -> tuple[str, ...]:
    """``name`` and its other published names (ModelScopeT2V's two), ``name`` first."""
    if name in MODELSCOPE_NAMES:
        return (name,) + tuple(n for n in MODELSCOPE_NAMES if n != name)
    return (name,)


def _exists(name_or_path: str, filename: str) -> bool:
    """Whether a local folder, or else the hub cache (no network), holds ``filename``."""
    folder = Path(name_or_path)
    if folder.is_dir():
        return (folder / filename).is_file()
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name_or_path, filename), str)
    except ValueError:  # not a valid repository id
        return False


def complete_variants(name_or_path: str) -> list[str]:
    """The variants (``"fp16"``, ``"fp32"``) of which a local folder or the hub cache holds a
    complete copy of ``name_or_path`` (all of :data:`CONFIG_FILES` and one weight file of each
    component); empty when a config or a weight is missing. No network."""
    if not all(_exists(name_or_path, f) for f in CONFIG_FILES):
        return []
    return [variant for variant, suffix in VARIANTS.items()
            if all(any(_exists(name_or_path, f"{folder}/{name.format(suffix)}") for name in names)
                   for folder, names in WEIGHT_FILES.items())]


def find_cached(name: str, prefer: str = "fp16") -> tuple[str, str] | None:
    """``(name or alias, variant)`` of the first of ``name``'s published names with a complete
    copy in the hub cache (``prefer``-ed variant first), else None. No network."""
    for candidate in aliases(name):
        variants = complete_variants(candidate)
        if variants:
            return candidate, (prefer if prefer in variants else variants[0])
    return None


def resolve_weights(name_or_path: str, dtype: torch.dtype, variant: str | None = "auto",
                    revision: str | None = None) -> tuple[str, str | None, bool]:
    """Where :func:`ivlite.load_video_model` reads a model from: ``(name or folder, variant,
    local_only)``.

    ``variant="auto"`` picks a variant of which the folder or the hub cache (under any published
    name) holds a complete copy, fp16 first for half-precision ``dtype``, fp32 first for float32;
    ``local_only`` is then True, so that a cached model loads without network. With nothing
    complete it is ``None`` (the repository's default files, downloaded as needed). An explicit
    ``variant`` or ``revision`` only switches to another published name whose cache holds that
    variant completely.
    """
    if Path(name_or_path).is_dir():
        found = complete_variants(name_or_path)
        if variant == "auto":
            half = dtype in (torch.float16, torch.bfloat16)
            variant = ("fp16" if half and "fp16" in found else "fp32" if "fp32" in found
                       else found[0] if found else "fp32")
        return name_or_path, (None if variant == "fp32" else variant), False
    if revision is not None:
        return name_or_path, (None if variant in ("auto", "fp32") else variant), False
    half = dtype in (torch.float16, torch.bfloat16)
    if variant == "auto":
        found = find_cached(name_or_path, prefer="fp16" if half else "fp32")
        if found is None:
            return name_or_path, None, False
        name, chosen = found
        return name, (None if chosen == "fp32" else chosen), True
    wanted = "fp32" if variant is None else variant
    for candidate in aliases(name_or_path):
        if wanted in complete_variants(candidate):
            return candidate, variant, True
    return name_or_path, variant, False
