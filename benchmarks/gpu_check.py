"""One GPU command: ivlite's full-size checks, unattended and offline, within a time budget.

    bash benchmarks/gpu_check.sh OUT            # a bare CUDA machine, no network: about 8 minutes
    bash benchmarks/gpu_check.sh --smoke OUT    # the same phases on the CPU, scaled down: < 60 s
    bash benchmarks/gpu_check.sh wheels         # where PyPI is reachable: the wheels to carry

(the shell wrapper installs carried wheels first, then runs this file). Phases, each under its
own time limit, each writing its files into OUT as it goes, so a phase that fails or runs out of
time loses nothing the others measured:

1. ``environment.json``: versions, the GPU, whether real weights are in the hub cache (written
   by phase 4's process, so that this one imports no torch).
2. ``full_scale.json`` (+ ``.log``): ``python -m benchmarks.full_scale`` for every setting
   (InstructVideo, DRaFT-1 at D = 20 and 50, full backpropagation) at full size with random
   weights: seconds per step, peak allocated and reserved GPU memory, loss and reward of every
   step.
3. ``gpu_tests.xml`` (+ ``.log``): ``pytest -m gpu tests/test_fullscale_gpu.py`` with its own
   options (no notebooks; the tests that need real weights skip without them).
4. ``real_finetune.json``: with ModelScopeT2V and HPSv2 in the hub cache, HPSv2 of clips sampled
   for a few prompts before, a short fine-tuning of the ``modelscope`` preset, and the same
   prompts and seeds after. Without the weights it records why it did not run.
5. ``summary.json`` and ``summary.md``: every phase's status, time and main numbers.

``--smoke`` runs every phase on the CPU with small settings, and phase 4 against a tiny copy of
the published repositories (:mod:`ivlite.fake_hub`): CI checks the command this way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Seconds per phase: together under 8 minutes on the GPU with the start-up of each process.
LIMITS = {"benchmark": 240, "gpu_tests": 100, "real": 110}
# Smoke: about 45 s of CPU time in all on one thread; the limits only stop a hung phase on a
# shared, busy machine.
SMOKE_LIMITS = {"benchmark": 300, "gpu_tests": 300, "real": 300}
REAL = dict(prompts=["a corgi running on a beach", "a cat playing with a ball of wool",
                     "a horse galloping in a field", "a panda eating bamboo"],
            steps=8, eval_ddim_steps=20)
SMOKE_REAL = dict(prompts=["a cat walking", "a dog running"], steps=2, eval_ddim_steps=4,
                  overrides=dict(mixed_precision="no", device="cpu", height=64, width=64,
                                 num_frames=2, segments=2, ddim_steps=4, tau=0.5))


def _write(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def run_phase(name: str, cmd: list[str], out: Path, limit: float, env: dict | None = None
              ) -> dict:
    """Run ``cmd`` with its output in ``out/<name>.log``; stopped after ``limit`` seconds."""
    t0 = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        try:
            code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                  timeout=limit, env=env).returncode
            status = "ok" if code == 0 else f"exit {code}"
        except subprocess.TimeoutExpired:
            status = f"stopped after the {limit:.0f} s limit"
    return dict(phase=name, status=status, seconds=round(time.perf_counter() - t0, 1),
                command=" ".join(cmd), log=f"{name}.log")


def environment(smoke: bool) -> dict:
    """Versions (read from the installed metadata: no heavy imports), the GPU, cached weights."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from ivlite.book import hpsv2_cached
    from ivlite.hub import find_cached
    from ivlite.models import MODELSCOPE_REPO

    info = dict(python=platform.python_version(), torch=torch.__version__,
                cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(), smoke=smoke,
                modelscope_cached=find_cached(MODELSCOPE_REPO), hpsv2_cached=hpsv2_cached(),
                offline=os.environ.get("HF_HUB_OFFLINE"))
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
    for dist in ("diffusers", "transformers", "peft", "accelerate", "open_clip_torch",
                 "huggingface_hub", "safetensors"):
        try:
            info[dist] = version(dist)
        except PackageNotFoundError:  # recorded, not fatal: the phases say what fails
            info[dist] = "missing"
    return info


def real_finetune(out: Path, smoke: bool) -> dict:
    """HPSv2 before and after a short fine-tuning of ModelScopeT2V (the ``modelscope`` preset)."""
    import torch

    from ivlite.book import hpsv2_cached
    from ivlite.config import Config
    from ivlite.evaluation import evaluate
    from ivlite.hub import find_cached
    from ivlite.models import MODELSCOPE_REPO
    from ivlite.registry import build_reward, load_model
    from ivlite.trainer import finetune

    spec = SMOKE_REAL if smoke else REAL
    found = find_cached(MODELSCOPE_REPO)
    if found is None or not hpsv2_cached():
        return dict(status="skipped: ModelScopeT2V or HPS_v2_compressed.pt is not in the hub "
                           "cache (fetch them with the hf download lines of README.md)",
                    modelscope_cached=found, hpsv2_cached=hpsv2_cached())
    cfg = Config.preset("modelscope", out_dir=str(out / "real_run"), max_steps=spec["steps"],
                        grad_accum=1, save_every=spec["steps"], warmup_steps=0,
                        prompts=spec["prompts"], **spec.get("overrides", {})).validate()
    device = "cpu" if smoke else "cuda"
    dtype = torch.float32 if smoke else torch.float16
    t0 = time.perf_counter()
    model = load_model(cfg.model, dtype=dtype).to(device, dtype)
    reward = build_reward(cfg.reward).to(device, dtype)
    loaded = time.perf_counter() - t0
    settings = dict(num_frames=cfg.num_frames, height=cfg.height, width=cfg.width,
                    ddim_steps=spec["eval_ddim_steps"], segments=cfg.segments, seed=0)
    model.unet.eval()
    before = evaluate(model, reward, cfg.prompts, **settings)
    t1 = time.perf_counter()
    result = finetune(cfg, model=model, reward=reward, progress=False)
    trained = time.perf_counter() - t1
    model.unet.eval()
    after = evaluate(model, reward, cfg.prompts, **settings)
    report = dict(status="ok", model=found, reward=cfg.reward, steps=result.steps,
                  learning_rate=cfg.learning_rate, load_seconds=round(loaded, 1),
                  train_seconds=round(trained, 1),
                  loss_per_step=[r["loss"] for r in result.log],
                  reward_per_step=[r["reward"] for r in result.log],
                  seconds_per_step=[r["seconds"] for r in result.log],
                  hpsv2_before=before, hpsv2_after=after,
                  change=after["mean"] - before["mean"], adapter=str(result.adapter_dir))
    if torch.cuda.is_available() and not smoke:
        report["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return report


def summary_markdown(summary: dict, bench: dict | None, real: dict | None) -> str:
    lines = ["# ivlite GPU check", "", f"device: {summary['environment'].get('gpu', 'cpu')}"
             f"{' (smoke)' if summary['smoke'] else ''}", "",
             "| phase | status | seconds |", "|---|---|---|"]
    lines += [f"| {p['phase']} | {p['status']} | {p['seconds']} |" for p in summary["phases"]]
    if bench and bench.get("results"):
        lines += ["", "| setting | s/step | peak GiB | reserved GiB | loss per step | "
                      "reward per step |", "|---|---|---|---|---|---|"]
        for r in bench["results"]:
            if "error" in r:
                lines.append(f"| {r['mode']} | {r['error'][:60]} | | | | |")
                continue
            fmt = lambda xs: ", ".join(f"{x:.4g}" for x in xs)  # noqa: E731
            lines.append(f"| {r['mode']} | {r['seconds_per_step']:.2f} | "
                         f"{r.get('peak_gib', 'n/a')} | {r.get('peak_reserved_gib', 'n/a')} | "
                         f"{fmt(r.get('loss_per_step', []))} | "
                         f"{fmt(r.get('reward_per_step', []))} |")
    if real:
        if real.get("status") == "ok":
            lines += ["", f"real fine-tuning: {real['steps']} steps, HPSv2 "
                          f"{real['hpsv2_before']['mean']:.4f} -> "
                          f"{real['hpsv2_after']['mean']:.4f}"]
        else:
            lines += ["", f"real fine-tuning: {real.get('status')}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output folder (created; files in it are replaced)")
    parser.add_argument("--smoke", action="store_true", help="CPU, small settings, fake hub")
    parser.add_argument("--phase", choices=("real",), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if args.phase == "real":  # a child process: phases 1 and 4 (the parent imports no torch)
        _write(out / "environment.json", environment(args.smoke))
        if args.smoke:
            from ivlite import fake_hub

            hub = out / "hub"
            with fake_hub.offline_hub(hub):
                fake_hub.write_modelscope(hub, formats=("safetensors",))
                fake_hub.write_hps(hub)
                report = real_finetune(out, smoke=True)
        else:
            report = real_finetune(out, smoke=False)
        _write(out / "real_finetune.json", report)
        return report

    limits = SMOKE_LIMITS if args.smoke else LIMITS
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        "PYTHONUNBUFFERED": "1"}
    if args.smoke:
        env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    t0 = time.perf_counter()
    phases = []
    bench_cmd = [sys.executable, "-m", "benchmarks.full_scale",
                 "--out", str(out / "full_scale.json")]
    bench_cmd += (["--smoke", "--modes", "instructvideo", "draft1-d20"] if args.smoke
                  else ["--steps", "2", "--warmup", "1"])
    phases.append(run_phase("full_scale", bench_cmd, out, limits["benchmark"], env))
    phases.append(run_phase("gpu_tests", [
        sys.executable, "-m", "pytest", "-m", "gpu", "tests/test_fullscale_gpu.py",
        "-o", "addopts=", "-p", "no:cacheprovider", "-q", "-rs",
        "--junitxml", str(out / "gpu_tests.xml")], out, limits["gpu_tests"], env))
    real_cmd = [sys.executable, "-m", "benchmarks.gpu_check", str(out), "--phase", "real"]
    phases.append(run_phase("real_finetune", real_cmd + (["--smoke"] if args.smoke else []),
                            out, limits["real"], env))

    def read(name):
        path = out / name
        return json.loads(path.read_text()) if path.is_file() else None

    bench, real = read("full_scale.json"), read("real_finetune.json")
    summary = dict(smoke=args.smoke, seconds=round(time.perf_counter() - t0, 1),
                   environment=read("environment.json") or {}, phases=phases,
                   ok=all(p["status"].startswith("ok") for p in phases))
    _write(out / "summary.json", summary)
    (out / "summary.md").write_text(summary_markdown(summary, bench, real))
    print((out / "summary.md").read_text(), end="")
    return summary


if __name__ == "__main__":
    sys.exit(0 if main().get("ok", True) else 1)
