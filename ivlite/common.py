"""Small shared helpers: the cache folder, device names, seeded generators, JSONL logs,
reproducible safetensors files, and running modules in eval mode."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import torch

from .config import DEVICE_NAMES, is_device_name


def cache_dir(name: str) -> Path:
    """``$IVLITE_CACHE/name``, else ``$XDG_CACHE_HOME/ivlite/name`` (default ``~/.cache``)."""
    root = os.environ.get("IVLITE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ivlite")
    return Path(root) / name


def resolve_device(name: str, what: str = "device") -> torch.device:
    """The device ``name`` stands for on this machine: ``auto`` is CUDA when available, else the
    CPU. Raises ValueError, its message starting with ``{what}={name!r}``, for a misspelt name, a
    CUDA name without CUDA, or a ``cuda:N`` past the last device, so every entry point (config,
    CLI, training scripts) reports the same thing before any work starts."""
    if not is_device_name(name):
        raise ValueError(f"{what}={name!r} is not a device; allowed: {DEVICE_NAMES}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"{what}={name!r} but no CUDA device is available; use "
                             f"{what}='cpu' or 'auto'")
        count = torch.cuda.device_count()
        if ":" in name and int(name[5:]) >= count:
            raise ValueError(f"{what}={name!r} but only {count} CUDA device(s) exist "
                             f"(cuda:0 .. cuda:{count - 1})")
    return torch.device(name)


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


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path,
                     metadata: dict[str, str] | None = None) -> Path:
    """``safetensors.torch.save_file`` with reproducible bytes: the same tensors and metadata give
    the same file, byte for byte, in every process.

    safetensors writes the header's ``__metadata__`` in the order of a Rust hash map, which is
    seeded afresh for each map, so two saves of the same adapter differ in their bytes about half
    the time. Here the header is rewritten with the metadata keys sorted; the tensors' entries and
    data are untouched.
    """
    from safetensors.torch import save_file

    path = Path(path)
    save_file(tensors, path, metadata=metadata)
    if metadata and len(metadata) > 1:
        _sort_metadata(path)
    return path


def _sort_metadata(path: Path) -> None:
    """Rewrite the JSON header of the safetensors file ``path`` with its metadata keys sorted."""
    with open(path, "r+b") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(size))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) <= size:  # the same entries in another order: the same length
            fh.seek(8)
            fh.write(text + b" " * (size - len(text)))
            return
        data = fh.read()  # escaped differently: a longer header, padded to 8 bytes as required
        text += b" " * (-len(text) % 8)
        fh.seek(0)
        fh.write(len(text).to_bytes(8, "little") + text + data)
        fh.truncate()


@contextlib.contextmanager
def modes_kept(*modules: torch.nn.Module) -> Iterator[None]:
    """On exit (an error included), give every submodule of ``modules`` back the train/eval mode
    it had on entry, whatever the body switched."""
    modes = [(m, m.training) for module in modules for m in module.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    """Run ``modules`` in eval mode, then restore each submodule's own mode (:func:`modes_kept`).

    Sampling must run the UNet in eval mode: ModelScopeT2V's temporal convolutions carry dropout
    0.1, which in train mode makes the same seed give other clips at every call.
    """
    with modes_kept(*modules):
        for module in modules:
            module.eval()
        yield


_Func = TypeVar("_Func", bound=Callable)


def unet_in_eval_mode(func: _Func) -> _Func:
    """Decorator for a sampling or evaluation function whose first argument is a
    :class:`~ivlite.models.VideoModel`: its UNet runs in eval mode during the call and gets its
    caller's mode back after (:func:`eval_mode`)."""
    @functools.wraps(func)
    def wrapper(model, *args, **kwargs):
        with eval_mode(model.unet):
            return func(model, *args, **kwargs)
    return wrapper  # type: ignore[return-value]
