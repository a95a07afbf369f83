"""The fine-tuning loop: files written, resume == uninterrupted, guards, non-finite steps,
reward going up, and two processes staying in sync."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ivlite.config import Config, ConfigError
from ivlite.trainer import finetune

FAST = dict(num_frames=8, segments=4, ddim_steps=10, save_every=2)


def _cfg(tmp_path, name="run", **kw):
    return Config.preset("tiny-random", out_dir=str(tmp_path / name), **{**FAST, **kw})


def test_run_writes_log_checkpoints_and_adapter(tmp_path):
    result = finetune(_cfg(tmp_path, max_steps=3), progress=False)
    out = result.out_dir
    assert result.steps == 3 and len(result.log) == 3
    lines = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [1, 2, 3]
    assert set(lines[0]) >= {"loss", "reward", "grad_norm", "lr", "seconds", "unet_calls"}
    assert lines[0]["unet_calls"] == 6  # int(0.6 * 10) chain steps
    assert lines[0]["lr"] == 0.0 and lines[1]["lr"] == pytest.approx(1e-3)  # 1 warm-up step
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step"] == 3
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == \
        ["step-000002", "step-000003"]
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    assert weights and all(".lora_A." in k or ".lora_B." in k for k in weights)
    assert Config.from_yaml(out / "config.yaml").max_steps == 3
    assert "torch" in json.loads((out / "run_info.json").read_text())["versions"]


def test_resume_equals_uninterrupted_run(tmp_path):
    straight = finetune(_cfg(tmp_path, "straight", max_steps=4), progress=False)
    finetune(_cfg(tmp_path, "split", max_steps=2), progress=False)
    resumed = finetune(_cfg(tmp_path, "split", max_steps=4, resume=True), progress=False)
    assert [l["step"] for l in resumed.log] == [3, 4]
    a = load_file(straight.adapter_dir / "adapter_model.safetensors")
    b = load_file(resumed.adapter_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(a[k].abs().sum() > 0 for k in a if "lora_B" in k)  # it did train
    log = [json.loads(l) for l in (resumed.out_dir / "log.jsonl").read_text().splitlines()]
    assert [l["step"] for l in log] == [1, 2, 3, 4]
    assert [l["loss"] for l in log] == [l["loss"] for l in straight.log]


def test_guards_against_overwriting_and_changed_method(tmp_path):
    finetune(_cfg(tmp_path, max_steps=1), progress=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        finetune(_cfg(tmp_path, max_steps=2), progress=False)
    with pytest.raises(ConfigError, match="tau=0.5 differs"):
        finetune(_cfg(tmp_path, max_steps=2, tau=0.5, resume=True), progress=False)


@pytest.mark.parametrize("changes, fragment", [
    ({"mixed_precision": "fp16", "device": "cpu"}, "fp16' needs a CUDA device"),
    ({"reward": "no-such-reward"}, "unknown reward 'no-such-reward'"),
    ({"data": "/nonexistent/folder"}, "captions.csv"),
    ({"tau": 2.0}, "tau=2.0"),
])
def test_errors_come_before_any_model_loads(tmp_path, changes, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        finetune(_cfg(tmp_path, **changes), progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_requested_without_gpu(tmp_path):
    with pytest.raises(ConfigError, match="no CUDA device"):
        finetune(_cfg(tmp_path, device="cuda"), progress=False)


def test_reward_that_blocks_gradients_is_refused_before_training(tmp_path, tiny_model):
    def detached(frames, prompts):
        return frames.mean(dim=(1, 2, 3)).detach()

    with pytest.raises(ConfigError, match="carry no gradient"):
        finetune(_cfg(tmp_path), model=tiny_model, reward=detached, progress=False)


def test_non_finite_reward_skips_the_step(tmp_path, tiny_model):
    calls = []

    def nan_reward(frames, prompts):  # finite for the up-front check, NaN in training
        calls.append(1)
        return frames.mean(dim=(1, 2, 3)) * (1.0 if len(calls) == 1 else float("nan"))

    result = finetune(_cfg(tmp_path, max_steps=2), model=tiny_model, reward=nan_reward,
                      progress=False)
    assert all(l["skipped"] for l in result.log)
    weights = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert all(float(v.abs().sum()) == 0 for k, v in weights.items() if "lora_B" in k)


def test_every_process_checks_the_folder_before_the_main_one_changes_it(tmp_path):
    """A slow second process must not take the main one's fresh config.json for an earlier
    run's: the checks of every process come before the barrier, every change after it."""
    from ivlite.run_folder import prepare_out_dir

    cfg = _cfg(tmp_path)
    at_barrier = []
    barrier = lambda: at_barrier.append(sorted(p.name for p in tmp_path.glob("run/*")))
    prepare_out_dir(cfg, main_process=True, barrier=barrier)
    assert at_barrier == [[]] and (tmp_path / "run" / "config.json").is_file()
    (tmp_path / "run" / "log.jsonl").write_text("")   # an earlier run's file, replaced by force
    prepare_out_dir(cfg, main_process=True, force=True, barrier=barrier)
    assert at_barrier[1] == ["config.json", "config.yaml", "log.jsonl"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json", "config.yaml"]
    with pytest.raises(ConfigError, match="already holds config.json"):  # a second process
        prepare_out_dir(cfg, main_process=False, barrier=barrier)


def test_two_processes_keep_identical_lora_weights(tmp_path):
    script = Path(__file__).with_name("two_process_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29533", str(script), str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = (load_file(tmp_path / f"lora-rank{r}.safetensors") for r in (0, 1))
    assert a.keys() == b.keys() and len(a) > 0
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(a[k].abs().sum() > 0 for k in a if "lora_B" in k)
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["processes"] == 2


def test_bf16_autocast_on_cpu(tmp_path):
    result = finetune(_cfg(tmp_path, max_steps=2, mixed_precision="bf16", device="cpu"),
                      progress=False)
    assert all(torch.isfinite(torch.tensor([l["loss"], l["grad_norm"]])).all() for l in result.log)
    weights = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert all(v.dtype == torch.float32 for v in weights.values())  # trainable weights stay fp32
