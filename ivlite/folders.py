"""Output folders: checked before any work, never overwritten without ``--force``, one writer.

- :func:`check_output_folder`: an output folder (``sample --out``, ``evaluate --out``,
  ``demo --out``) can be written and holds none of the files the command would write, unless
  ``force``; checked before any model loads, so a typo does not cost minutes of sampling.
- :class:`FolderLock`: an exclusive ``fcntl.flock`` on ``folder/.lock``, held by the process
  writing a run folder for as long as it writes it. A second process on the same folder gets one
  line naming the folder and the holder's pid instead of interleaving its log and checkpoints.
  The kernel drops the lock when its holder dies, so a killed run leaves no stale lock behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .config import ConfigError

LOCK_FILE = ".lock"


def check_output_folder(out: str | Path, flag: str, files: Iterable[str], force: bool) -> Path:
    """Raise ConfigError (naming ``flag``, the path and the fix) unless ``out`` is a folder, or
    can be created as one in a writable folder, and none of ``files`` (names inside ``out``)
    exists there unless ``force``. Returns ``Path(out)``; creates nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {str(out)!r} is a file; choose a folder path")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{flag} {str(out)!r}: {str(existing)!r} is a file, so the folder "
                          f"cannot be created; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {str(out)!r}: {str(existing)!r} is not writable; choose "
                          f"another {flag}")
    taken = [name for name in files if (out / name).exists()]
    if taken and not force:
        more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
        raise ConfigError(f"{flag} {str(out)!r} already holds {taken[0]}{more}; pass --force "
                          f"to replace them or choose another {flag}")
    return out


class FolderLock:
    """Exclusive lock on ``folder/.lock`` (created with ``folder``), or ConfigError naming
    ``what`` (the flag or field) and the folder when another live process holds it.

    Usable as a context manager. Where ``fcntl`` does not exist (Windows) it locks nothing.
    """

    def __init__(self, folder: str | Path, what: str = "out_dir"):
        self.folder, self.what = Path(folder), what
        self._fh = None

    def acquire(self) -> "FolderLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory locks to take
            return self
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"{self.what}={str(self.folder)!r} cannot be created: "
                              f"{err.strerror or err}") from None
        path = self.folder / LOCK_FILE
        fh = open(path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: another open file description holds it
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise ConfigError(f"{self.what}={str(self.folder)!r} is in use by another live "
                              f"process (pid {holder}, lock {str(path)!r}); wait for it to "
                              f"finish or choose another {self.what}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Unlock (the file stays: removing it would race with a process opening it)."""
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
