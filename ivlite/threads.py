"""How many threads torch uses for a command's CPU work, and the one line that says why.

torch's default is one OpenMP thread per core. Its threads spin-wait for each other at the end
of every parallel region, so when another job holds one of the cores, every region waits for the
thread that is not running: on a 2-core machine with another job busy, a fine-tuning step of the
tiny world took 114 s with two threads and 13.6 s with one (8x), and ``ivlite demo`` ran at
78-91 s per step with the default where one thread finished the whole demo in 19 minutes. The
tiny models are too small for more threads to win much even on an idle machine, while the
collapse costs hours, so the rule is:

1. ``--threads N`` when given (1 <= N <= the cores this process may use);
2. else ``OMP_NUM_THREADS`` when set (its first, outermost level), as OpenMP itself reads it;
3. else 1.

:func:`choose_threads` applies the rule without importing torch (a bad value is reported before
the seconds torch takes to load); :func:`use_threads` sets torch and returns the line to print.
"""

from __future__ import annotations

import os
from typing import Mapping

from .config import ConfigError

ENV = "OMP_NUM_THREADS"
OVERRIDE = f"override with --threads / {ENV}"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _idle_cores(cores: int) -> float | None:
    """Cores minus the 1-minute load average (other jobs' runnable threads), or None."""
    try:
        return cores - os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return None


def choose_threads(flag: str | int | None, environ: Mapping[str, str] | None = None,
                   cores: int | None = None) -> tuple[int, str]:
    """The thread count for ``--threads flag`` (None: not given) and the reason, as
    ``(n, "why")``. Raises ConfigError naming the flag or variable for a value that is not an
    integer from 1 to ``cores``."""
    environ = os.environ if environ is None else environ
    cores = usable_cores() if cores is None else cores
    allowed = f"allowed: an integer from 1 to {cores} (the cores this process may use)"
    if flag is not None:
        n, why = _parse(flag, f"--threads={flag!r}", allowed), f"--threads {flag}"
        if n > cores:
            raise ConfigError(f"--threads={flag!r} is more than the {cores} cores this process "
                              f"may use; {allowed}")
    elif environ.get(ENV, "").strip():
        value = environ[ENV].strip()
        # OpenMP reads "4,2" as 4 threads at the outer level (2 in nested regions).
        n, why = _parse(value.split(",")[0], f"{ENV}={value!r}", allowed), f"{ENV}={value}"
    else:
        n, why = 1, ("the default: with more threads than idle cores each step can run 8x "
                     "slower")
    idle = _idle_cores(cores)
    if n > 1 and idle is not None and n > round(idle):
        why += (f"; the load average leaves about {max(idle, 0):.1f} of {cores} cores idle, "
                f"so expect slow steps")
    return n, why


def _parse(text: str | int, name: str, allowed: str) -> int:
    try:
        n = int(str(text).strip())
    except ValueError:
        raise ConfigError(f"{name} is not an integer; {allowed}") from None
    if n < 1:
        raise ConfigError(f"{name} is below 1; {allowed}")
    return n


def use_threads(flag: str | int | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Apply :func:`choose_threads` to torch; returns the line a command prints,
    ``torch threads: N (why; override with --threads / OMP_NUM_THREADS)``."""
    n, why = choose_threads(flag, environ)
    import torch

    torch.set_num_threads(n)
    return f"torch threads: {n} ({why}; {OVERRIDE})"
