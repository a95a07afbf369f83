"""Baselines and ablations of InstructVideo as data: setting name -> config overrides.

One codebase, one reward, one adapter, one budget: every setting is the ``tiny-world`` (or any)
preset with a few fields changed, run by the same :func:`ivlite.trainer.finetune` and scored by
the same :func:`ivlite.evaluation.evaluate_splits`. ``benchmarks/ablations.py`` trains and scores
them; ``benchmarks/cost.py`` measures what a step of each costs.

Baselines:

- ``base``: the model before fine-tuning (no training).
- ``draft1``: DRaFT-1 (Clark et al. 2023): the full chain from pure noise, gradient through the
  last step only, on InstructVideo's D = 20 grid; ``draft1-d50``: the same over a 50-step chain
  (DRaFT's own setting, and the comparison the paper's cost argument is about).
- ``full-backprop``: the full 20-step chain with gradients through every step, each UNet block
  gradient-checkpointed (memory grows with the number of steps, not with activations).
- ``instructvideo``: the paper's method (tau 0.6, D 20, K 1, S 4 TSN frames, lambda_tar 1).

Ablations of InstructVideo (one field changed each):

- SegVR: ``no-segvr-all`` (all 16 frames, still TAR-weighted), ``no-segvr-one`` (one random frame);
- TAR: ``no-tar`` (lambda_tar = 0: uniform weights), ``lambda-0.5``, ``lambda-2`` (lambda 1 is
  ``instructvideo``);
- editing strength: ``tau-0.2`` .. ``tau-1.0`` (0.6 is ``instructvideo``);
- DDIM grid: ``D-10``, ``D-50`` (20 is ``instructvideo``).

The rows that equal ``instructvideo`` (``lambda-1``, ``tau-0.6``, ``D-20``) are :data:`ALIASES`
of it rather than separate runs. :func:`expected_unet_calls` is how many guided UNet evaluations a
step makes per micro-batch: ``int(tau * D)`` (or D for the full chain), of which the last K carry
gradients; each is one batched call of 2B clips (conditional and unconditional together).
"""

from __future__ import annotations

from typing import Any

from ivlite.config import Config

SETTINGS: dict[str, dict[str, Any]] = {
    # --- baselines ---
    "base": {},
    "instructvideo": {},
    "draft1": {"chain": "full", "ddim_steps": 20, "grad_steps": 1},
    "draft1-d50": {"chain": "full", "ddim_steps": 50, "grad_steps": 1},
    "full-backprop": {"chain": "full", "ddim_steps": 20, "grad_steps": 20,
                      "gradient_checkpointing": True},
    # --- SegVR ---
    "no-segvr-all": {"segments": 16, "frame_sampling": "first"},
    "no-segvr-one": {"segments": 1, "frame_sampling": "tsn"},
    # --- TAR ---
    "no-tar": {"lambda_tar": 0.0},
    "lambda-0.5": {"lambda_tar": 0.5},
    "lambda-2": {"lambda_tar": 2.0},
    # --- editing strength tau ---
    "tau-0.2": {"tau": 0.2},
    "tau-0.4": {"tau": 0.4},
    "tau-0.8": {"tau": 0.8},
    "tau-1.0": {"tau": 1.0},
    # --- DDIM grid D ---
    "D-10": {"ddim_steps": 10},
    "D-50": {"ddim_steps": 50},
}

UNTRAINED = ("base",)
"""Settings that are evaluated without fine-tuning."""

ALIASES: dict[str, str] = {"lambda-1": "instructvideo", "tau-0.6": "instructvideo",
                           "D-20": "instructvideo"}
"""Rows of the ablation groups that are the default setting itself."""

GROUPS: dict[str, list[str]] = {
    "baselines": ["base", "draft1", "draft1-d50", "full-backprop", "instructvideo"],
    "SegVR": ["instructvideo", "no-segvr-all", "no-segvr-one"],
    "TAR": ["instructvideo", "no-tar"],
    "lambda_tar": ["lambda-0.5", "lambda-1", "lambda-2"],
    "tau": ["tau-0.2", "tau-0.4", "tau-0.6", "tau-0.8", "tau-1.0"],
    "D": ["D-10", "D-20", "D-50"],
}

DESCRIPTIONS: dict[str, str] = {
    "base": "base model, no fine-tuning",
    "instructvideo": "InstructVideo: edit tau 0.6, D 20, K 1, SegVR S 4 (TSN), TAR lambda 1",
    "draft1": "DRaFT-1: full 20-step chain from noise, gradient through the last step",
    "draft1-d50": "DRaFT-1 over a 50-step chain",
    "full-backprop": "full 20-step chain, gradient through every step (checkpointed)",
    "no-segvr-all": "no SegVR: all 16 frames decoded and scored (TAR still on)",
    "no-segvr-one": "no SegVR: one random frame",
    "no-tar": "no TAR: uniform frame weights (lambda_tar 0)",
    "lambda-0.5": "TAR lambda 0.5",
    "lambda-2": "TAR lambda 2",
    "tau-0.2": "editing strength tau 0.2",
    "tau-0.4": "editing strength tau 0.4",
    "tau-0.8": "editing strength tau 0.8",
    "tau-1.0": "editing strength tau 1.0 (noised to the top of the grid, still edited)",
    "D-10": "DDIM grid of 10 steps",
    "D-50": "DDIM grid of 50 steps",
}


def resolve(name: str) -> str:
    """The setting a row name stands for (an alias resolves to ``instructvideo``)."""
    name = ALIASES.get(name, name)
    if name not in SETTINGS:
        raise ValueError(f"unknown setting {name!r}; known: {sorted(SETTINGS) + sorted(ALIASES)}")
    return name


def setting_config(name: str, base: Config | None = None, **extra: Any) -> Config:
    """The validated config of a setting: ``base`` (default the ``tiny-world`` preset) with the
    setting's overrides, then ``extra`` (out_dir, max_steps, ...)."""
    base = base if base is not None else Config.preset("tiny-world")
    return base.override({**SETTINGS[resolve(name)], **extra}).validate()


def expected_unet_calls(cfg: Config) -> dict[str, int]:
    """Guided UNet evaluations of one micro-batch: without gradient, with gradient, total."""
    total = cfg.edit_steps
    return {"no_grad": total - cfg.grad_steps, "grad": cfg.grad_steps, "total": total}


def decoded_frames(cfg: Config) -> int:
    """Frames decoded (and scored by the reward) per clip."""
    return cfg.segments


def parse_settings(text: str | None) -> list[str]:
    """``"a,b,c"`` or ``all`` (None) -> setting names, validated, aliases resolved, no repeats."""
    if not text or text == "all":
        return list(SETTINGS)
    names = [resolve(n.strip()) for n in text.split(",") if n.strip()]
    return list(dict.fromkeys(names))


def check_json_out(parser, out: str, force: bool) -> None:
    """The result-file rule of the benchmark scripts: ``--out`` ends in .json and an existing
    file is replaced only with ``--force`` (``parser.error`` otherwise)."""
    from pathlib import Path

    if not out.endswith(".json"):
        parser.error(f"--out={out!r}: must end in .json")
    if Path(out).exists() and not force:
        parser.error(f"--out={out!r} exists; pass --force to replace it")


def machine_info(note: str | None = None) -> dict[str, Any]:
    """What a benchmark ran on: CPU model, cores, threads, load, versions, git commit."""
    import os
    import platform
    import subprocess

    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, check=False).stdout.strip())
    except OSError:
        commit, dirty = "", False
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {"cpu": cpu, "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "git_commit": commit + ("-dirty" if dirty else "")}
    if note:
        info["note"] = note
    return info
