"""The torch thread count every command picks (ivlite.threads), and how it says so."""

import subprocess
import sys

import pytest
import torch

from ivlite.cli import build_parser, main
from ivlite.config import ConfigError
from ivlite.threads import choose_threads, usable_cores, use_threads


@pytest.fixture
def idle(monkeypatch):
    """A machine whose load average is 0: no warning about busy cores."""
    monkeypatch.setattr("os.getloadavg", lambda: (0.0, 0.0, 0.0))


def test_default_is_one_thread_whatever_the_cores(idle):
    n, why = choose_threads(None, environ={}, cores=64)
    assert n == 1 and "default" in why and "8x" in why


def test_the_flag_wins_over_the_environment(idle):
    assert choose_threads("3", environ={"OMP_NUM_THREADS": "2"}, cores=4) == (3, "--threads 3")
    assert choose_threads(None, environ={"OMP_NUM_THREADS": "2"}, cores=4) == (
        2, "OMP_NUM_THREADS=2")
    # OpenMP's nested form: the outer level's count
    assert choose_threads(None, environ={"OMP_NUM_THREADS": "4,2"}, cores=8)[0] == 4
    assert choose_threads(None, environ={"OMP_NUM_THREADS": " "}, cores=8)[0] == 1


@pytest.mark.parametrize("flag, match", [
    ("0", r"^--threads='0' is below 1; allowed: an integer from 1 to 4 "),
    ("-2", r"^--threads='-2' is below 1"),
    ("two", r"^--threads='two' is not an integer; allowed: an integer from 1 to 4 "),
    ("1.5", r"^--threads='1.5' is not an integer"),
    ("5", r"^--threads='5' is more than the 4 cores this process may use; allowed"),
])
def test_bad_flag_values_are_named(flag, match):
    with pytest.raises(ConfigError, match=match):
        choose_threads(flag, environ={}, cores=4)


def test_bad_environment_value_is_named():
    with pytest.raises(ConfigError, match=r"^OMP_NUM_THREADS='x' is not an integer; allowed"):
        choose_threads(None, environ={"OMP_NUM_THREADS": "x"}, cores=4)


def test_more_threads_than_idle_cores_are_flagged(monkeypatch):
    monkeypatch.setattr("os.getloadavg", lambda: (1.6, 1.0, 1.0))
    n, why = choose_threads("2", environ={}, cores=2)
    assert n == 2 and "about 0.4 of 2 cores idle, so expect slow steps" in why
    assert "idle" not in choose_threads("1", environ={}, cores=2)[1]  # one thread cannot spin


def test_use_threads_sets_torch_and_says_why(idle):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        line = use_threads(None, environ={})
        assert torch.get_num_threads() == 1
        assert line.startswith("torch threads: 1 (the default: ")
        assert line.endswith("; override with --threads / OMP_NUM_THREADS)")
    finally:
        torch.set_num_threads(before)


def test_every_verb_takes_threads_and_rejects_bad_values(capsys):
    parser = build_parser()
    verbs = sorted(parser._subparsers._group_actions[0].choices)
    assert verbs == ["demo", "evaluate", "finetune", "sample"]
    for verb in verbs:
        assert main([verb, "--threads", "0"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"ivlite {verb}: error: --threads='0' is below 1; allowed: an integer "
                       f"from 1 to {usable_cores()} (the cores this "
                       f"process may use)"]


def test_a_bad_value_is_reported_before_torch_loads():
    code = ("import sys; from ivlite.cli import main; status = main(['finetune', '--threads', "
            "'many']); print(status, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert "--threads='many' is not an integer" in done.stderr


def test_a_verb_prints_the_line_and_runs_with_that_count(monkeypatch, capsys, tmp_path):
    import ivlite.trainer as trainer

    seen = []
    monkeypatch.setattr(trainer, "finetune", lambda cfg, **_: seen.append(torch.get_num_threads())
                        or trainer.RunResult(tmp_path, 0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["finetune", "--out-dir", str(tmp_path / "r")]) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == [1]
    err = capsys.readouterr().err
    assert "torch threads: 1 (OMP_NUM_THREADS=1; override with --threads / OMP_NUM_THREADS)" \
        in err.splitlines()
