"""Runs that go wrong midway: killed with SIGKILL (at random points and in the middle of writing a
checkpoint), then resumed to the very same adapter; and steps whose reward, loss or gradient is
NaN or infinite, which are skipped, never checkpointed, and stop the run when they persist."""

import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ivlite.cli import main
from ivlite.config import Config
from ivlite.method.lora import add_lora, lora_config
from ivlite.models import tiny_random_model
from ivlite.run_state import latest_checkpoint, load_checkpoint, save_checkpoint
from ivlite.trainer import NonFiniteError, finetune

# Small enough for seconds-long runs: 4 frames, a 5-step grid (3 editing steps), one prompt.
FAST = dict(num_frames=4, segments=2, ddim_steps=5, prompts=["a red circle moving left"])
STEPS, SAVE_EVERY = 6, 2
CLI_ARGS = ["finetune", "--preset", "tiny-random", "--num-frames", "4", "--segments", "2",
            "--ddim-steps", "5", "--prompts", "[a red circle moving left]",
            "--max-steps", str(STEPS), "--save-every", str(SAVE_EVERY)]


def _adapter(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter" / "adapter_model.safetensors")


def _log(folder: Path) -> list[dict]:
    path = folder / "log.jsonl"
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:  # a line cut by the kill; resume drops it
            pass
    return lines


def _fork_cli(argv: list[str], before=None) -> int:
    """Run ``ivlite <argv>`` in a forked child process (the package is already imported, so no
    half-minute start-up per kill point); ``before()`` runs in the child first."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            if before is not None:
                before()
            status = main(argv)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)
    return pid


def _kill_after(pid: int, run: Path, step: int, fraction: float) -> None:
    """SIGKILL ``pid`` once its log shows ``step``, ``fraction`` of a step's time later: inside
    the next step's computation or its checkpoint write, wherever that lands."""
    deadline = time.monotonic() + 300
    while not any(line["step"] >= step for line in _log(run)):
        done, status = os.waitpid(pid, os.WNOHANG)
        assert done == 0, f"the run ended (status {status}) before step {step}; log {_log(run)}"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.01)
    time.sleep(fraction * _log(run)[-1]["seconds"])
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _assert_latest_is_complete(run: Path) -> int:
    """latest.json (if any) points at a checkpoint that loads; returns its step (0 if none)."""
    folder = latest_checkpoint(run)
    if folder is None:
        return 0
    _, _, info = load_checkpoint(folder)
    return info["step"]


def _die_while_writing(step: int):
    """For the child: write half of checkpoint ``step``'s optimizer file, then SIGKILL itself,
    exactly as if the kill had arrived in the middle of that write."""
    def patch():
        import ivlite.run_state as state

        real = state.save_safetensors

        def save_file(tensors, path, *args, **kwargs):
            real(tensors, path, *args, **kwargs)
            if Path(path).parent.name.startswith(f".step-{step:06d}.") and \
                    Path(path).parent.name.endswith(".tmp"):
                data = Path(path).read_bytes()
                Path(path).write_bytes(data[:len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)

        state.save_safetensors = save_file
    return patch


def _hold_after(step: int):
    """For the child: pause before computing step ``step + 2``, so that a kill aimed at a random
    moment of step ``step + 1`` always finds the run alive and short of its end, however fast this
    machine runs (on a fast one the kill lands in the pause: still a valid kill point)."""
    def patch():
        import ivlite.trainer as trainer

        real = trainer._train_step

        def train_step(cfg, index, *args, **kwargs):  # index 0 computes step 1
            if index == step + 1:
                time.sleep(3600)
            return real(cfg, index, *args, **kwargs)

        trainer._train_step = train_step
    return patch


def test_sigkill_at_random_points_then_resume_gives_the_same_adapter(tmp_path):
    reference = finetune(Config.preset("tiny-random", out_dir=str(tmp_path / "straight"),
                                       max_steps=STEPS, save_every=SAVE_EVERY, **FAST),
                         progress=False)
    run = tmp_path / "killed"
    args = CLI_ARGS + ["--out-dir", str(run)]
    rng = random.Random(7)
    points = []

    # Kills 1 and 2: at a random moment of the step after a random logged step. Stale log lines
    # of the killed run reach max_logged at most, so waiting for a later step sees this run's.
    for _ in range(2):
        max_logged = max([line["step"] for line in _log(run)], default=0)
        step = min(max_logged + rng.choice([1, 2]), STEPS - 2)  # leave the run steps to do
        assert step > max_logged, f"kill points {points}: the run got too far"
        fraction = rng.uniform(0.0, 1.0)
        points.append((step, round(fraction, 2)))
        pid = _fork_cli(args + ["--resume", "true"], before=_hold_after(step))
        _kill_after(pid, run, step, fraction)
        _assert_latest_is_complete(run)

    # Kill 3: in the middle of writing the next checkpoint.
    done = _assert_latest_is_complete(run)
    target = min(done - done % SAVE_EVERY + SAVE_EVERY, STEPS)
    pid = _fork_cli(args + ["--resume", "true"], before=_die_while_writing(target))
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), f"kill points {points}, then during the save of step {target}"
    partials = list((run / "checkpoints").glob(f".step-{target:06d}.*.tmp"))  # .NAME.PID.tmp
    assert len(partials) == 1 and (partials[0] / "optimizer.safetensors").is_file()  # begun...
    assert not (run / "checkpoints" / f"step-{target:06d}").exists()
    assert _assert_latest_is_complete(run) == done  # ...and latest.json still names the last one

    # The real command finishes the run.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    finish = subprocess.run([sys.executable, "-m", "ivlite.cli", *args, "--resume", "true"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert finish.returncode == 0, finish.stderr[-3000:]
    assert f"done: {STEPS} steps" in finish.stdout

    a, b = _adapter(reference.out_dir), _adapter(run)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), f"kill points {points}"
    assert any(a[k].abs().sum() > 0 for k in a if "lora_B" in k)  # it did train
    log = _log(run)
    assert [l["step"] for l in log] == list(range(1, STEPS + 1))
    assert [l["loss"] for l in log] == [l["loss"] for l in reference.log]
    assert not list((run / "checkpoints").glob(".tmp-*"))  # leftovers of the kill are gone


# --- the checkpoint protocol, with faults injected ------------------------------------------

@pytest.fixture
def unet_and_optimizer():
    unet = tiny_random_model().unet
    params = add_lora(unet, lora_config())
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    return unet, optimizer


def test_a_failed_checkpoint_write_never_replaces_the_last_good_one(tmp_path, monkeypatch,
                                                                    unet_and_optimizer):
    import ivlite.run_state as state

    unet, optimizer = unet_and_optimizer
    save_checkpoint(tmp_path, 2, unet, optimizer, {"note": "good"})
    real_save, real_json = state.save_safetensors, state.atomic_write_json

    def half_written(tensors, path, *args, **kwargs):
        real_save(tensors, path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:100])
        raise OSError("disk full")

    monkeypatch.setattr(state, "save_safetensors", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 4, unet, optimizer, {"note": "bad"})
    assert latest_checkpoint(tmp_path).name == "step-000002"
    assert load_checkpoint(latest_checkpoint(tmp_path))[2]["note"] == "good"
    assert not (tmp_path / "checkpoints" / "step-000004").exists()

    # Killed after the folder got its name but before latest.json moved: still step 2.
    monkeypatch.setattr(state, "save_safetensors", real_save)

    def no_pointer(path, data, **kwargs):
        if path.name == state.LATEST:
            raise OSError("killed")
        real_json(path, data, **kwargs)

    monkeypatch.setattr(state, "atomic_write_json", no_pointer)
    with pytest.raises(OSError, match="killed"):
        save_checkpoint(tmp_path, 4, unet, optimizer, {"note": "orphan"})
    assert latest_checkpoint(tmp_path).name == "step-000002"

    # The resumed run writes step 4 again over the orphan; leftovers go.
    monkeypatch.setattr(state, "atomic_write_json", real_json)
    save_checkpoint(tmp_path, 4, unet, optimizer, {"note": "resumed"})
    assert load_checkpoint(latest_checkpoint(tmp_path))[2]["note"] == "resumed"
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest.json", "step-000002", "step-000004"]


def test_checkpoints_of_an_abandoned_future_are_dropped(tmp_path, unet_and_optimizer):
    """A run killed after step 6 was saved but resumed from 4 (say latest.json was restored by
    hand) must not keep step 6 around: pruning would otherwise delete the live step 4."""
    unet, optimizer = unet_and_optimizer
    for step in (2, 4, 6):
        save_checkpoint(tmp_path, step, unet, optimizer, {})
    (tmp_path / "checkpoints" / "latest.json").write_text(
        json.dumps({"step": 4, "folder": "step-000004"}))
    save_checkpoint(tmp_path, 5, unet, optimizer, {})
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert names == ["step-000004", "step-000005"]


def test_corrupt_latest_pointer_is_named(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest.json").write_text('{"step": 4, "fol')
    with pytest.raises(ValueError, match=r"latest.json is corrupt"):
        latest_checkpoint(tmp_path)
    (tmp_path / "checkpoints" / "latest.json").write_text('{"step": 4, "folder": "../../etc"}')
    with pytest.raises(ValueError, match=r"latest.json is corrupt"):
        latest_checkpoint(tmp_path)
    (tmp_path / "checkpoints" / "latest.json").write_text('{"step": 4, "folder": "step-000004"}')
    with pytest.raises(ValueError, match=r"points at .*step-000004, which is incomplete"):
        latest_checkpoint(tmp_path)


# --- non-finite numbers ---------------------------------------------------------------------

def _flaky_reward(reward, bad_steps, value=float("nan"), grad_only=False):
    """``reward`` with NaN (or ``value``) scores on ``bad_steps``. Call 1 is the trainer's
    up-front gradient check; with one clip per step, call n + 1 is step n."""
    calls = []

    class NanGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * float("nan")

    def flaky(frames, prompts):
        calls.append(1)
        step = len(calls) - 1
        if step in bad_steps and grad_only:
            return reward(NanGradient.apply(frames), prompts)
        scores = reward(frames, prompts)
        return scores * value if step in bad_steps else scores
    return flaky


def test_nan_reward_steps_are_skipped_and_never_checkpointed(tmp_path, monkeypatch, tiny_model,
                                                             tiny_reward):
    import ivlite.trainer as trainer

    saved = []
    real = trainer.save_checkpoint
    monkeypatch.setattr(trainer, "save_checkpoint",
                        lambda out, step, *a, **k: saved.append(step) or real(out, step, *a, **k))
    cfg = Config.preset("tiny-random", out_dir=str(tmp_path / "run"), max_steps=4, save_every=1,
                        **FAST)
    result = finetune(cfg, model=tiny_model, reward=_flaky_reward(tiny_reward, {2, 3}),
                      progress=False)
    assert [l["skipped"] for l in result.log] == [False, True, True, False]
    assert {"loss", "reward"} <= set(result.log[1]["non_finite"])
    assert saved == [1, 4]  # nothing written from steps 2 and 3
    written = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert written[1]["reward"] is None and written[1]["loss"] is None  # NaN is not JSON
    weights = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_nan_gradient_with_a_finite_reward_is_skipped(tmp_path, tiny_model, tiny_reward):
    cfg = Config.preset("tiny-random", out_dir=str(tmp_path / "run"), max_steps=2, **FAST)
    result = finetune(cfg, model=tiny_model, progress=False,
                      reward=_flaky_reward(tiny_reward, {2}, grad_only=True))
    assert [l["non_finite"] for l in result.log] == [[], ["gradient"]]
    weights = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_persistent_inf_reward_stops_the_run(tmp_path, monkeypatch, tiny_reward, capsys):
    """From the command line: a reward that turns infinite for good ends the run after
    max_bad_steps steps with one line, exit status 3, and no checkpoint or adapter from it."""
    import ivlite.registry as registry

    flaky = _flaky_reward(tiny_reward, set(range(2, 100)), value=float("inf"))
    monkeypatch.setitem(registry.REWARDS, "flaky", lambda checkpoint: flaky)
    run = tmp_path / "run"
    status = main(CLI_ARGS[:-4] + ["--reward", "flaky", "--out-dir", str(run), "--max-steps",
                                   "20", "--save-every", "1", "--max-bad-steps", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 3
    assert err[-1].startswith("ivlite finetune: stopped: steps 2-3: 2 steps in a row had a "
                              "non-finite loss, reward")
    assert "(max_bad_steps=2); stopped" in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert _assert_latest_is_complete(run) == 1 and not (run / "adapter").exists()

    with pytest.raises(NonFiniteError, match="step 1 had a non-finite loss"):  # from Python
        finetune(Config.preset("tiny-random", out_dir=str(tmp_path / "again"), max_steps=20,
                               max_bad_steps=1, reward="flaky", **FAST), progress=False,
                 reward=_flaky_reward(tiny_reward, set(range(1, 100)), value=float("inf")))
    assert not (tmp_path / "again" / "checkpoints").exists()
