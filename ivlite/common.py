"""Small shared helpers: the cache folder, seeded generators, JSONL logs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch


def cache_dir(name: str) -> Path:
    """``$IVLITE_CACHE/name``, else ``$XDG_CACHE_HOME/ivlite/name`` (default ``~/.cache``)."""
    root = os.environ.get("IVLITE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ivlite")
    return Path(root) / name


def seeded_generator(*parts: object) -> torch.Generator:
    """A CPU generator seeded by a hash of ``parts`` (e.g. seed, step, micro-batch, process).

    Drawing every random number of a training step from such a generator makes the step a pure
    function of its position: a resumed run replays exactly what an uninterrupted run drew.
    """
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def truncate_jsonl(path: Path, step: int) -> None:
    """Keep the log lines with ``"step" <= step``; drop later ones and lines cut by a crash."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    path.write_text("".join(line + "\n" for line in kept))
