"""Small shared helpers: the cache folder, device names, weight precision, seeded generators,
file checksums, atomic writes of files and folders, reproducible safetensors files, JSONL logs,
and running modules in eval mode."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

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


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_dtype(precision: str) -> torch.dtype:
    """The dtype of the frozen weights under a ``mixed_precision`` setting: float16 for ``fp16``,
    bfloat16 for ``bf16``, float32 for ``no`` (the trainable LoRA weights stay float32)."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)


def seeded_generator(*parts: object) -> torch.Generator:
    """A CPU generator seeded by a hash of ``parts`` (e.g. seed, step, micro-batch, process).

    Drawing every random number of a training step from such a generator makes the step a pure
    function of its position: a resumed run replays exactly what an uninterrupted run drew.
    """
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


# ----------------------------------------------------------------------------- atomic writes
#
# A file or folder a user (or a resumed run) reads is never written in place: it is written under
# a temporary name in the same folder, flushed to disk and renamed over the old one (atomic on
# POSIX and Windows), so a crash mid-write leaves the previous version (or none), never half.


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` writes the file at the temporary path ``tmp``; it is then made durable and
    renamed to ``path``. A failure removes the temporary file and leaves ``path`` as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def is_temporary(name: str) -> bool:
    """Whether a file or folder name is the temporary of an atomic write (``.NAME.PID.tmp``), as
    a process killed mid-write leaves it."""
    head, _, pid = name.removesuffix(".tmp").rpartition(".")
    return name.startswith(".") and name.endswith(".tmp") and pid.isdigit() and len(head) > 1


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = 2,
                      newline: bool = True, **dumps: Any) -> Path:
    """``json.dumps(data, indent=indent, **dumps)`` (and a final newline) written atomically."""
    return atomic_write_text(path, json.dumps(data, indent=indent, **dumps)
                             + ("\n" if newline else ""))


def atomic_write_dir(path: str | Path, fill: Callable[[Path], Any], *,
                     replace: bool = True) -> bool:
    """Build the folder ``path`` atomically: ``fill(tmp)`` writes its files into an empty
    temporary sibling folder (``.NAME.PID.tmp``); they are made durable and the folder is renamed
    into place. An existing ``path`` is replaced (``replace=True``: it is renamed to ``.NAME.old``
    first and removed once the new folder is in place) or kept (``replace=False``: a cache that
    another process finished first; this call's folder is dropped). Returns whether this call's
    folder is the one in place. On failure the temporary folder is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
        for file in tmp.rglob("*"):
            if file.is_file():
                with open(file, "rb") as fh:
                    os.fsync(fh.fileno())
        if path.exists() and not replace:
            return False
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            if replace or not path.exists():
                raise
            return False  # another process renamed its folder into place first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)
    return True


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
