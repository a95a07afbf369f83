"""The README's two set-up commands stay true: CI runs exactly its test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", quick, flags=re.S)]


def test_ci_runs_the_readme_test_command():
    main_job, tests = _bash_blocks()[:2]
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1].strip()
    assert ci == tests
    assert tests.endswith(".venv/bin/python -m pytest")
    assert main_job.startswith("python3 -m venv .venv && .venv/bin/pip install -e . && ")


def test_the_main_job_is_a_real_cli_command():
    from ivlite.cli import build_parser

    main_job = _bash_blocks()[0]
    argv = main_job.split(".venv/bin/ivlite ", 1)[1].split()
    build_parser().parse_args(argv)  # an unknown command or flag exits with status 2


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_the_results_section_is_what_benchmarks_summary_prints():
    """Every number of the README's results section comes from the committed result files."""
    from benchmarks.summary import readme

    section = (ROOT / "README.md").read_text().split("## What the measurements show", 1)[1]
    assert readme() in section.split("\n## ", 1)[0]
