"""How long each page of the book takes to execute in tiny mode, against the book's limits.

Executes the intro and every chapter (``book/*.ipynb``, or ``--pages``) the way ``pytest
--nbval`` does: a fresh kernel per page, working directory ``book/``, tiny mode
(``IVLITE_BOOK_MODE=tiny``) and one torch thread (``OMP_NUM_THREADS=1``, as ``book/conftest.py``
sets for the kernels). Per page it records the wall time and the kernel's CPU time (user +
system of the kernel process, read when the kernel has exited). With one thread, the CPU time
is what the page costs a quiet core; the wall time also counts kernel start-up and any other
load on the machine, which is recorded with it.

The limits are the book's: each page at most 3 minutes, the whole book at most 20 minutes on
2 CPU cores. A page is judged by its CPU time (the wall time's share that load cannot inflate)
and the verdict names the measure.

Writes ``benchmarks/results/book_time_tiny.json`` (``--out``) and a table beside it (``.md``),
and prints the table. ``--executed DIR`` also writes each executed notebook into ``DIR``
(which must not exist), e.g. to commit a page's fresh outputs after checking them.

    python -m benchmarks.book_time                        # every page, about 10 minutes
    python -m benchmarks.book_time --pages 05_tar,07_putting_it_together --out /tmp/t.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
OUT = ROOT / "benchmarks" / "results" / "book_time_tiny.json"
PAGE_LIMIT_S = 180.0
BOOK_LIMIT_S = 1200.0


def pages() -> list[Path]:
    """The book's pages in reading order: the intro, then the chapters by number."""
    return [BOOK / "intro.ipynb", *sorted(BOOK.glob("0*.ipynb"))]


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's exited and waited-for children."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def execute(path: Path, timeout: int) -> tuple[object, float, float]:
    """Run one notebook in a fresh kernel: (the executed notebook, wall s, kernel CPU s)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(BOOK)}})
    cpu0, t0 = children_cpu(), time.perf_counter()
    client.execute()   # starts the kernel, runs every cell, shuts the kernel down and reaps it
    wall = time.perf_counter() - t0
    return nb, wall, children_cpu() - cpu0


def table(results: dict) -> str:
    lines = ["| page | wall s | kernel CPU s | within 3 min |", "|---|---:|---:|---|"]
    for name, r in results["pages"].items():
        lines.append(f"| {name} | {r['wall_seconds']:.0f} | {r['cpu_seconds']:.0f} | "
                     f"{'yes' if r['within_limit'] else 'NO'} |")
    t = results["total"]
    lines.append(f"| **all pages** | {t['wall_seconds']:.0f} | {t['cpu_seconds']:.0f} | "
                 f"{'yes' if t['within_limit'] else 'NO'} (limit 20 min) |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    from benchmarks.settings import check_json_out

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", default=None,
                   help="comma-separated page names without .ipynb (default: every page)")
    p.add_argument("--timeout", type=int, default=900, help="seconds one cell may run")
    p.add_argument("--out", default=str(OUT), help="the result file (.json; the .md beside it)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--executed", default=None,
                   help="a new folder to write each executed notebook into")
    p.add_argument("--note", default=None, help="a note stored with the results")
    args = p.parse_args(argv)
    known = {path.stem: path for path in pages()}
    names = args.pages.split(",") if args.pages else list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"--pages={args.pages!r}: {', '.join(unknown)} not in book/; pages are "
                f"{', '.join(known)}")
    args.paths = [known[n] for n in names]
    if args.timeout < 1:
        p.error(f"--timeout={args.timeout}: must be >= 1")
    check_json_out(p, args.out, args.force)
    if args.executed is not None and Path(args.executed).exists():
        p.error(f"--executed={args.executed!r} exists; give a new folder")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    # What nbval's kernels get from book/conftest.py; the kernels inherit this environment.
    os.environ["IVLITE_BOOK_MODE"] = "tiny"
    os.environ["OMP_NUM_THREADS"] = "1"
    from benchmarks.settings import machine_info

    info = machine_info(args.note)
    executed = Path(args.executed) if args.executed else None
    if executed:
        executed.mkdir(parents=True)
    rows: dict[str, dict] = {}
    for path in args.paths:
        nb, wall, cpu = execute(path, args.timeout)
        rows[path.stem] = {"wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
                           "within_limit": cpu <= PAGE_LIMIT_S}
        print(f"{path.stem}: {wall:.0f} s wall, {cpu:.0f} s kernel CPU", flush=True)
        if executed:
            import nbformat

            nbformat.write(nb, executed / path.name)
    cpu_total = sum(r["cpu_seconds"] for r in rows.values())
    results = {
        "benchmark": "the book's pages executed in tiny mode, one torch thread",
        "limits": {"page_seconds": PAGE_LIMIT_S, "book_seconds": BOOK_LIMIT_S,
                   "judged_by": "kernel CPU seconds (one thread)"},
        "pages": rows,
        "total": {"wall_seconds": round(sum(r["wall_seconds"] for r in rows.values()), 1),
                  "cpu_seconds": round(cpu_total, 1),
                  "within_limit": cpu_total <= BOOK_LIMIT_S,
                  "complete": len(rows) == len(pages())},
        "args": {k: v for k, v in vars(args).items() if k != "paths"},
        "machine": {**info, "load_average_end": machine_info()["load_average_1_5_15"]}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    md = table(results)
    out.with_suffix(".md").write_text(
        "# The book's pages in tiny mode, one torch thread\n\n" + md + "\n")
    print(md)
    return results


if __name__ == "__main__":
    main()
