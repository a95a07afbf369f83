"""Resumable training state, written atomically as safetensors + JSON (never pickle).

A checkpoint is a folder ``checkpoints/step-000010/`` holding the adapter (peft format), the
optimizer's tensors (``optimizer.safetensors``) and everything else as JSON
(``training_state.json``: step, optimizer hyper-parameters, LR-scheduler and loss-scaler state).
It is written into a temporary folder and renamed into place, then ``latest.json`` is replaced
atomically (:mod:`ivlite.common`'s atomic writes): a crash at any moment leaves the previous
checkpoint intact and ``latest.json`` pointing at a complete folder.

There is no random-number state to save: every random draw of step ``n`` comes from a generator
seeded with (seed, n, micro-batch, process), so resuming at step ``n`` replays exactly what an
uninterrupted run would have drawn.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from .adapters import read_adapter, save_adapter
from .common import atomic_write_dir, atomic_write_json, save_safetensors
from .config import first_line

LATEST = "latest.json"


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON-able rest."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_files(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    """Inverse of :func:`optimizer_to_files`: a state dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict] = {}
    for name, value in list(tensors.items()) + list(rest["scalars"].items()):
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(run_dir: str | Path, step: int, unet: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, extra: dict, keep: int = 2) -> Path:
    """Write checkpoint ``step`` atomically, point ``latest.json`` at it, keep the newest ``keep``.

    Order matters: the folder is complete and on disk before it gets its final name
    (:func:`ivlite.common.atomic_write_dir`), and it is complete under that name before
    ``latest.json`` points at it. A kill at any moment leaves ``latest.json`` pointing at a
    complete checkpoint (or absent if none was finished). A folder of the same step left by a run
    killed before it updated ``latest.json`` is not the latest, and is replaced.
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"

    def fill(tmp: Path) -> None:
        save_adapter(unet, tmp)
        tensors, rest = optimizer_to_files(optimizer)
        save_safetensors(tensors, tmp / "optimizer.safetensors")
        (tmp / "training_state.json").write_text(
            json.dumps({"step": step, "optimizer": rest, **extra}, indent=2))

    atomic_write_dir(final, fill)
    atomic_write_json(root / LATEST, {"step": step, "folder": final.name}, newline=False)
    _prune(root, step, keep)
    return final


def _prune(root: Path, step: int, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints up to ``step``; drop older ones, leftover temporary
    folders, and later ones (a killed run's future, which this run is replaying)."""
    folders = sorted(root.glob("step-*"))
    current = [f for f in folders if _step_of(f) is not None and _step_of(f) <= step]
    doomed = current[:-keep] + [f for f in folders if f not in current]
    doomed += list(root.glob(".step-*.tmp")) + list(root.glob(".step-*.old"))
    for old in doomed:
        shutil.rmtree(old, ignore_errors=True)


def _step_of(folder: Path) -> int | None:
    try:
        return int(folder.name.split("-", 1)[1])
    except (IndexError, ValueError):
        return None


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The folder ``latest.json`` points at, or None if the run has no checkpoint yet."""
    pointer = Path(run_dir) / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text())["folder"]
        if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
            raise ValueError(f"folder {name!r} is not a checkpoint folder name")
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{pointer} is corrupt ({err}); delete it to restart the run, or point "
                         f"it at a complete checkpoint folder") from None
    folder = pointer.parent / name
    if not (folder / "training_state.json").is_file():
        raise ValueError(f"{pointer} points at {folder}, which is incomplete or missing")
    return folder


def load_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(LoRA state dict, optimizer state dict, training_state.json) of a checkpoint folder."""
    folder = Path(folder)
    try:
        _, lora_state = read_adapter(folder)
        info = json.loads((folder / "training_state.json").read_text())
        opt = optimizer_from_files(load_file(folder / "optimizer.safetensors"), info["optimizer"])
        if not isinstance(info["step"], int) or info["step"] < 0:
            raise ValueError(f"step={info['step']!r} is not a step count")
    except Exception as err:  # safetensors, JSON and key errors alike: name the folder
        raise ValueError(f"checkpoint {str(folder)!r} is corrupt or unreadable: "
                         f"{first_line(err)}") from None
    return lora_state, opt, info
