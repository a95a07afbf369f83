"""Shipped weights of the tiny world: compact safetensors files with checksums.

The tiny models use the real CLIP tokenizer (49,408 tokens) but the world's captions use a few
dozen of them. Shipping every row of a 49,408 x D token table would cost more than the rest of a
model, so :func:`trim_token_table` keeps only the rows of tokens the world uses (plus the special
tokens) and :func:`untrim_token_table` rebuilds the full table at load time with zeros elsewhere.
The architecture and the tokenizer stay exactly the real ones; a prompt with words outside the
world's vocabulary still runs, it just maps those words to zero vectors, as an untrained model
would map them to noise.

Every file listed in an asset folder's ``manifest.json`` is checked against its SHA-256 before use,
and the shipped folder must hold every file of :data:`SHIPPED_WORLD_FILES` (a missing scheduler
config would otherwise sample on another noise schedule without a word).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..common import save_safetensors

from ..common import sha256

MANIFEST = "manifest.json"
ASSET_ROOT = Path(__file__).resolve().parent.parent / "assets"


def world_token_ids(extra_prompts: tuple[str, ...] = ()) -> list[int]:
    """Token ids of every word the world's captions use, the empty prompt and special tokens."""
    from ..tokenizer import clip_tokenizer
    from .captions import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, Scene

    words = []
    for colour in COLOURS:
        for shape in SHAPES:
            for motion in MOTIONS:
                for background in BACKGROUNDS:
                    words.append(Scene(colour, shape, motion, background).caption)
    tok = clip_tokenizer()
    ids = {0, tok.bos_token_id, tok.eos_token_id}
    for text in words + list(extra_prompts) + [""]:
        ids.update(tok(text).input_ids)
    return sorted(ids)


def trim_token_table(state: dict[str, torch.Tensor], key: str, keep_ids: list[int]
                     ) -> dict[str, torch.Tensor]:
    """Replace ``state[key]`` (V, D) by its rows ``keep_ids`` (``key.rows``) and ``key.ids``."""
    state = dict(state)
    table = state.pop(key)
    ids = torch.tensor(keep_ids, dtype=torch.int64)
    state[key + ".rows"] = table[ids].contiguous()
    state[key + ".ids"] = ids
    state[key + ".vocab_size"] = torch.tensor(table.shape[0], dtype=torch.int64)
    return state


def untrim_token_table(state: dict[str, torch.Tensor], key: str) -> dict[str, torch.Tensor]:
    """Inverse of :func:`trim_token_table`: the full (V, D) table, zeros where rows were dropped."""
    state = dict(state)
    rows, ids = state.pop(key + ".rows"), state.pop(key + ".ids")
    vocab = int(state.pop(key + ".vocab_size"))
    table = torch.zeros((vocab, rows.shape[1]), dtype=rows.dtype)
    table[ids] = rows
    state[key] = table
    return state


SHIPPED_PATTERNS = ("*/config.json", "*/model.safetensors", "*/scheduler_config.json",
                    "*/metrics.json")
SHIPPED_WORLD_FILES = (
    "reward/config.json", "reward/metrics.json", "reward/model.safetensors",
    "scheduler/scheduler_config.json", "text_encoder/config.json",
    "text_encoder/model.safetensors", "unet/config.json", "unet/model.safetensors",
    "vae/config.json", "vae/model.safetensors")
"""Every file of ``ivlite/assets/tiny_world/`` besides manifest.json: each must be present, listed
in the manifest and match its SHA-256 (:func:`verify_shipped`)."""


def write_manifest(folder: str | Path) -> dict[str, str]:
    """Record the SHA-256 of every shipped file (``*/config.json``, ``*/model.safetensors``,
    ``*/scheduler_config.json``, ``*/metrics.json``) under ``folder`` in manifest.json; training
    leftovers beside them are not shipped."""
    folder = Path(folder)
    sums = {str(p.relative_to(folder)): sha256(p)
            for pattern in SHIPPED_PATTERNS for p in sorted(folder.glob(pattern))}
    (folder / MANIFEST).write_text(json.dumps(sums, indent=2, sort_keys=True) + "\n")
    return sums


def verify_manifest(folder: str | Path, files: list[str] | None = None) -> None:
    """Raise ValueError if a listed file is missing or its SHA-256 differs from the manifest."""
    folder = Path(folder)
    sums = read_manifest(folder)
    if sums is None:
        raise ValueError(f"asset folder {str(folder)!r} has no {MANIFEST}")
    for name in files or sorted(sums):
        path = folder / name
        if name not in sums:
            raise ValueError(f"{path} is not listed in {folder / MANIFEST}")
        if not path.is_file():
            raise ValueError(f"shipped asset {path} is missing; reinstall ivlite")
        if sha256(path) != sums[name]:
            raise ValueError(f"shipped asset {path} does not match its checksum (corrupt or "
                             f"modified); reinstall ivlite")


def read_manifest(folder: str | Path) -> dict[str, str] | None:
    """``folder/manifest.json`` as {relative path: SHA-256}, None if there is none; ValueError
    naming the file if it is not such a mapping."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        sums = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError alike
        raise ValueError(f"{path} is unreadable ({err}); reinstall ivlite") from None
    if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
        raise ValueError(f"{path} must map file names to SHA-256 digests; reinstall ivlite")
    return sums


def is_shipped(folder: str | Path) -> bool:
    """Whether ``folder`` is the installed ``assets/tiny_world`` folder."""
    return Path(folder).resolve() == (ASSET_ROOT / "tiny_world").resolve()


def verify_shipped(folder: str | Path | None = None) -> None:
    """ValueError unless the shipped tiny-world folder holds every file of
    :data:`SHIPPED_WORLD_FILES`, each listed in its manifest with the SHA-256 it has."""
    folder = Path(folder or ASSET_ROOT / "tiny_world")
    if read_manifest(folder) is None:
        raise ValueError(f"shipped asset {folder / MANIFEST} is missing; reinstall ivlite")
    verify_manifest(folder, list(SHIPPED_WORLD_FILES))


def save_weights(state: dict[str, torch.Tensor], path: str | Path, *, dtype=torch.float16,
                 token_tables: tuple[str, ...] = (), keep_ids: list[int] | None = None) -> Path:
    """Save a state dict compactly: floats cast to ``dtype``, token tables trimmed.

    ``token_tables`` are key suffixes (``token_embedding.weight`` matches the table of an open_clip
    CLIP and of a transformers CLIPTextModel, whatever prefix the library version uses).
    """
    for suffix in token_tables:
        keys = [k for k in state if k == suffix or k.endswith("." + suffix)]
        if not keys:
            raise KeyError(f"no token table named *{suffix} in the state dict")
        for key in keys:
            state = trim_token_table(state, key, keep_ids or world_token_ids())
    state = {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(state, path)
    path.chmod(0o644)  # safetensors writes owner-only files; shipped assets are read by anyone
    return path


def load_weights(path: str | Path, *, dtype=torch.float32, token_tables: tuple[str, ...] = ()
                 ) -> dict[str, torch.Tensor]:
    """Inverse of :func:`save_weights` (floats cast to ``dtype``, trimmed tables restored).

    Trimmed tables are found by their ``.rows`` keys; ``token_tables`` is accepted for symmetry
    with :func:`save_weights` and needs not be given.
    """
    state = load_file(path)
    for key in [k[:-len(".rows")] for k in state if k.endswith(".rows")]:
        state = untrim_token_table(state, key)
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
