"""The files of ``ivlite demo``'s output folder, and how an interrupted demo picks up from them.

A demo writes, in this order: ``before/<split>.safetensors`` (the base model's clips and scores,
one file per split, each written atomically as soon as its split is scored), ``run/`` (the
fine-tuning run with its checkpoints), ``after/<split>.safetensors``, the videos and figures,
and last ``metrics.json``: a folder with ``metrics.json`` holds a finished demo, one with only
the demo's own entries and no ``metrics.json`` an interrupted one, which the same command
continues: the saved scores are read back, the fine-tuning resumes from its last checkpoint and
the fine-tuned model is scored again.

This module needs neither torch nor the models until it reads or writes clips, so the command
line can check ``--out`` at once.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..common import atomic_write, is_temporary
from ..config import ConfigError

METRICS = "metrics.json"
ENTRIES = {"before", "after", "run", "videos", "adapter", "reward_curve.png",
           "before_after.png", METRICS}
"""Every name the demo writes into its output folder (and temporaries of atomic writes)."""


def check_out(out: Path, force: bool) -> bool:
    """Whether ``ivlite demo --out out`` resumes an interrupted demo there (True) or starts one
    (False; with ``force`` the folder is to be emptied first). Raises ConfigError for a folder
    that holds a finished demo or anything the demo did not write, unless ``force``."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; choose a folder path")
    if force or not out.exists():
        return False
    names = {p.name for p in out.iterdir()}
    if not names:
        return False
    if METRICS in names:
        raise ConfigError(f"--out {str(out)!r} holds a finished demo; pass --force to run it "
                          f"again from the start or choose another --out")
    unknown = sorted(n for n in names - ENTRIES if not is_temporary(n))
    if unknown:
        raise ConfigError(f"--out {str(out)!r} is not empty and not a demo's folder (it holds "
                          f"{unknown[0]!r}); pass --force to replace it or choose another --out")
    return True


def scores_path(out: Path, when: str, split: str) -> Path:
    """``out/<when>/<split>.safetensors``, ``when`` being ``before`` or ``after``."""
    return out / when / f"{split}.safetensors"


def save_scores(path: Path, clips, summary: dict, per_clip: list[dict], settings: dict) -> None:
    """Write one split's clips (N, F, 3, H, W) in [-1, 1], its summary (the split's entry of
    ``metrics.json``), per-clip scores and the settings they were made with, atomically: a kill
    leaves either the old file or the complete new one, never a part."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"summary": json.dumps(summary), "per_clip": json.dumps(per_clip),
            "settings": json.dumps(settings, sort_keys=True)}
    tensors = {"clips": clips.detach().float().cpu().contiguous()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_scores(path: Path, settings: dict | None = None):
    """``(clips, summary, per_clip, settings)`` saved by :func:`save_scores`, or None when the
    file is absent, unreadable or was made with other ``settings`` (then it is scored again)."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta, clips = fh.metadata() or {}, fh.get_tensor("clips")
        saved = json.loads(meta["settings"])
        result = clips, json.loads(meta["summary"]), json.loads(meta["per_clip"]), saved
    except Exception:  # noqa: BLE001 (a torn or foreign file: score the split again)
        return None
    if settings is not None and saved != json.loads(json.dumps(settings, sort_keys=True)):
        return None
    return result
