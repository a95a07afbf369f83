"""A run's folder (``out_dir``): what it records beside the checkpoints, and the checks that
keep it from being overwritten by accident or resumed with another method or other inputs.

- ``config.json`` (and the same values as ``config.yaml``): the run's
  :class:`~ivlite.config.Config`; resume reads it back (:func:`prepare_out_dir`);
- ``run_info.json``: package versions, device, processes and the SHA-256 of every file read
  (:func:`provenance`), one entry per session of a resumed run (:func:`write_run_info`);
- ``log.jsonl``: one line per optimizer step (:class:`RunLog`);
- ``checkpoints/`` (:mod:`ivlite.run_state`) and, at the end, ``adapter/`` (:mod:`ivlite.adapters`).
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path
from typing import Callable

import torch

from . import registry
from .common import atomic_write_json, sha256, truncate_jsonl
from .config import Config, ConfigError
from .data import caption_table, read_captions

RESUMABLE_CHANGES = {"max_steps", "resume", "save_every", "device", "out_dir", "max_bad_steps"}
"""Fields that may change between an interrupted run and its resumption."""
RUN_FILES = ("config.json", "config.yaml", "run_info.json", "log.jsonl", "early_stop.json",
             "checkpoints", "adapter")
"""What finetune writes into out_dir; ``force`` removes these (and nothing else) before a new
run."""
MISSING_FIELD_VALUES = {"lora_init": "peft"}
"""What a run whose config.json lacks a field did, where that is not the field's default: runs
without lora_init drew A with peft's default."""


def versions() -> dict[str, str]:
    """Versions of Python and of every package whose code shapes a run's numbers."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("ivlite", "diffusers", "transformers", "peft", "accelerate", "open_clip_torch",
                 "safetensors", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def provenance(cfg: Config) -> dict:
    """SHA-256 of the files a run reads (shipped assets, local weights, captions.csv), so a
    result can be traced to exactly these bytes. Hub models are recorded by id and revision."""
    def files(folder: Path, patterns: tuple[str, ...] | None = None) -> dict[str, str]:
        patterns = patterns or ("**/*.json", "**/*.safetensors", "**/*.bin", "**/*.txt", "**/*.pt")
        paths = sorted({p for pat in patterns for p in folder.glob(pat) if p.is_file()})
        return {str(p): sha256(p) for p in paths}

    record: dict = {"model": cfg.model, "reward": cfg.reward, "data": cfg.data, "sha256": {}}
    sums = record["sha256"]
    if cfg.model in registry.ASSETS:
        sums.update(files(*registry.ASSETS[cfg.model]))
    elif cfg.model not in registry.MODELS and Path(cfg.model).is_dir():
        sums.update(files(Path(cfg.model)))
    elif cfg.model not in registry.MODELS:
        record["model_revision"] = _hub_revision(cfg.model)
    if cfg.reward_checkpoint is not None and Path(cfg.reward_checkpoint).exists():
        ckpt = Path(cfg.reward_checkpoint)
        sums.update(files(ckpt) if ckpt.is_dir() else {str(ckpt): sha256(ckpt)})
    else:
        for name in registry.parse_reward_spec(cfg.reward):
            if name in registry.ASSETS:
                sums.update(files(*registry.ASSETS[name]))
    if cfg.data not in registry.DATA:
        table = caption_table(cfg.data)
        sums[str(table)] = sha256(table)
        sums.update({str(path): sha256(path) for path, _ in read_captions(cfg.data)})
    return record


def check_same_inputs(recorded: dict, now: dict) -> None:
    """ConfigError naming the first file a resumed run would read with other bytes than the run
    it continues (``recorded``: run_info.json's ``inputs``; ``now``: :func:`provenance`)."""
    old, new = recorded.get("sha256") or {}, now["sha256"]
    for path, digest in old.items():
        if path in new and new[path] != digest:
            raise ConfigError(f"resume: {path} changed since the run started (SHA-256 "
                              f"{digest[:12]}... now {new[path][:12]}...); resume with the files "
                              f"the run read, or start a new run in another out_dir")
        if path not in new and not Path(path).exists():
            raise ConfigError(f"resume: {path}, read by the run, no longer exists; restore it, "
                              f"or start a new run in another out_dir")
    before, after = recorded.get("model_revision"), now.get("model_revision")
    if before and after and before != after:
        raise ConfigError(f"resume: model={now['model']!r} is at revision {after}, the run "
                          f"started from {before}; resume with the same revision")


def _hub_revision(repo: str) -> str | None:
    """The commit of ``repo`` in the local hub cache (what from_pretrained loads), if cached."""
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(repo, "model_index.json")
        return Path(path).parent.name if isinstance(path, str) else None
    except Exception:  # no cache, an odd layout: provenance must not stop a run
        return None


def read_run_config(out: Path) -> dict:
    """The interrupted run's config: config.json (older runs: config.yaml)."""
    import yaml

    for name, parse in (("config.json", json.loads), ("config.yaml", yaml.safe_load)):
        path = out / name
        if path.is_file():
            try:
                data = parse(path.read_text())
            except (ValueError, yaml.YAMLError) as err:
                raise ConfigError(f"resume: {path} is corrupt ({err}); restore it or start a "
                                  f"new run in another out_dir") from None
            if isinstance(data, dict):
                return data
    raise ConfigError(f"resume: out_dir={str(out)!r} has checkpoints but no config.json; "
                      f"it was not written by ivlite finetune")


def prepare_out_dir(cfg: Config, main_process: bool = True, force: bool = False,
                    barrier: Callable[[], None] | None = None) -> Path:
    """Refuse to overwrite a run by accident (``force``: remove its files first); on resume,
    refuse a changed method or changed input files. Call with the folder's lock held.

    With several processes every process calls this, and ``barrier`` (e.g. accelerate's
    ``wait_for_everyone``) runs after the checks and before the main process changes the
    folder, so that no process takes the main process's fresh config.json for an earlier
    run's."""
    out = Path(cfg.out_dir)
    has_run = (out / "checkpoints" / "latest.json").is_file()
    previous = [name for name in RUN_FILES if (out / name).exists()]
    if has_run and not cfg.resume and not force:
        raise ConfigError(f"out_dir={cfg.out_dir!r} already holds a run; pass resume=true to "
                          f"continue it, force (--force) to replace it, or choose another "
                          f"out_dir")
    if previous and not has_run and not force and (not cfg.resume or "adapter" in previous):
        # A finished run whose checkpoints were deleted, or files of another program's run.
        raise ConfigError(f"out_dir={cfg.out_dir!r} already holds {', '.join(previous)} of a "
                          f"run and no checkpoint to resume from; pass force (--force) to "
                          f"replace them, or choose another out_dir")
    if force:
        has_run = False
    if has_run:
        old, defaults = read_run_config(out), {**Config().to_dict(), **MISSING_FIELD_VALUES}
        # A field missing from the run's config.json counts as what such a run did.
        changed = {k: (old.get(k, defaults[k]), v) for k, v in cfg.to_dict().items()
                   if k not in RESUMABLE_CHANGES and old.get(k, defaults[k]) != v}
        if changed:
            k, (a, b) = next(iter(changed.items()))
            raise ConfigError(f"resume: {k}={b!r} differs from the interrupted run's {k}={a!r}; "
                              f"only {sorted(RESUMABLE_CHANGES)} may change on resume")
        done = checkpoint_step(out)
        if done is not None and done > cfg.max_steps:
            raise ConfigError(f"max_steps={cfg.max_steps} is below the {done} steps out_dir="
                              f"{cfg.out_dir!r} has done; give max_steps >= {done}")
        recorded = recorded_inputs(out)
        if recorded is not None:
            check_same_inputs(recorded, provenance(cfg))
    if barrier is not None:
        barrier()   # every process has read the folder; from here on the main one changes it
    if main_process and force:
        import shutil

        for name in previous:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if main_process:
        try:
            out.mkdir(parents=True, exist_ok=True)
            # config.json is the record (resume reads it); config.yaml is the same values for
            # people and for `ivlite finetune --config`.
            atomic_write_json(out / "config.json", cfg.to_dict())
            (out / "config.yaml").write_text(cfg.to_yaml())
        except OSError as err:
            raise ConfigError(f"out_dir={cfg.out_dir!r} cannot be written: "
                              f"{err.strerror or err}") from None
    return out


def recorded_inputs(out: Path) -> dict | None:
    """run_info.json's ``inputs`` (what the run read), or None for a run that has none."""
    path = out / "run_info.json"
    if not path.is_file():
        return None
    try:
        inputs = json.loads(path.read_text())["inputs"]
        if not isinstance(inputs, dict) or not isinstance(inputs.get("sha256", {}), dict):
            raise TypeError("inputs is not a mapping of files to SHA-256")
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"resume: {path} is corrupt ({err}); it records the files the run "
                          f"read, so resume cannot check them: restore it or start a new run in "
                          f"another out_dir") from None
    return inputs


def checkpoint_step(out: Path) -> int | None:
    try:
        return int(json.loads((out / "checkpoints" / "latest.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a corrupt pointer is reported, with its path, when it is loaded


def write_run_info(cfg: Config, out: Path, processes: int, device: str) -> None:
    """run_info.json: versions, device, processes and input checksums of this session; those of
    earlier sessions of a resumed run are kept under ``earlier_sessions``."""
    path = out / "run_info.json"
    earlier = []
    if path.is_file():
        try:
            old = json.loads(path.read_text())
            earlier = old.pop("earlier_sessions", []) + [old]
        except ValueError:
            earlier = []
    info = {"versions": versions(), "processes": processes, "device": device,
            "inputs": provenance(cfg),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_json(path, {**info, "earlier_sessions": earlier})


class RunLog:
    """``log.jsonl``: one JSON line per optimizer step. Opening it for a run that starts (or
    resumes) at ``start`` drops later lines and lines cut by a crash; only the main process
    (``write``) writes."""

    def __init__(self, path: Path, start: int, write: bool = True):
        self.path, self.write = path, write
        if write:
            truncate_jsonl(path, start)

    def append(self, record: dict) -> None:
        if self.write:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(json_safe(record), allow_nan=False) + "\n")


def json_safe(record: dict) -> dict:
    """NaN and infinity are not JSON: the log writes them as null (``non_finite`` says which)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in record.items()}
