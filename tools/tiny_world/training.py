"""Shared plumbing of the tiny world's training scripts: resumable state, logs, seeding.

Each script writes into its run folder ``state/`` (model, EMA and optimizer tensors as safetensors,
the step and settings as JSON), replaced atomically every ``--save-every`` steps, and appends one
JSON line per logged step to ``log.jsonl``. ``--resume`` reloads the state and continues; every
random draw of step n comes from a generator seeded with (seed, n), so a resumed run follows the
same trajectory as an uninterrupted one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from ivlite.common import atomic_write_dir, save_safetensors, seeded_generator, truncate_jsonl
from ivlite.run_state import optimizer_from_files, optimizer_to_files


def step_rng(seed: int, step: int, stream: str = "") -> torch.Generator:
    return seeded_generator(seed, step, stream)


def save_state(run_dir: Path, step: int, modules: dict[str, torch.nn.Module],
               optimizer: torch.optim.Optimizer, info: dict) -> None:
    """Atomically replace ``run_dir/state`` with the current modules, optimizer and ``info``
    (the previous state is ``.state.old`` until the new one is in place)."""
    def fill(tmp: Path) -> None:
        for name, module in modules.items():
            save_safetensors({k: v.detach().cpu().contiguous()
                              for k, v in module.state_dict().items()}, tmp / f"{name}.safetensors")
        tensors, rest = optimizer_to_files(optimizer)
        save_safetensors(tensors, tmp / "optimizer.safetensors")
        (tmp / "state.json").write_text(json.dumps({"step": step, "optimizer": rest, **info}))

    atomic_write_dir(run_dir / "state", fill)


def load_state(run_dir: Path, modules: dict[str, torch.nn.Module],
               optimizer: torch.optim.Optimizer) -> dict:
    """Load ``run_dir/state`` (or the previous one if a crash hit between two renames)."""
    folder = run_dir / "state"
    if not (folder / "state.json").is_file():
        folder = run_dir / ".state.old"
    info = json.loads((folder / "state.json").read_text())
    for name, module in modules.items():
        module.load_state_dict(load_file(folder / f"{name}.safetensors"))
    optimizer.load_state_dict(optimizer_from_files(load_file(folder / "optimizer.safetensors"),
                                                   info["optimizer"]))
    return info


def has_state(run_dir: Path) -> bool:
    return (run_dir / "state" / "state.json").is_file() or \
        (run_dir / ".state.old" / "state.json").is_file()


def remove_state(run_dir: Path) -> None:
    """Delete the resumable state (a finished run ships only its exported weights)."""
    for folder in [run_dir / "state", run_dir / ".state.old", *run_dir.glob(".state.*.tmp")]:
        shutil.rmtree(folder, ignore_errors=True)


def append_log(run_dir: Path, record: dict) -> None:
    with open(run_dir / "log.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")


def truncate_log(run_dir: Path, step: int) -> None:
    """Forget log lines past ``step`` (a resumed run recomputes them)."""
    truncate_jsonl(run_dir / "log.jsonl", step)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()],
                         1 - decay)
