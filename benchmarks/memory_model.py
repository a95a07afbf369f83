"""Peak GPU memory of one full-size training step, traced on the CPU: no GPU, no download.

Builds ModelScopeT2V's architecture (1.41B-parameter UNet3DConditionModel, SD VAE, OpenCLIP-H text
encoder) and HPSv2's (open_clip ViT-H-14) with weights in float16, as the ``modelscope`` preset
loads them, on the meta device (shapes and dtypes, no data). It then runs one
micro-step as ``ivlite.finetune`` does -- LoRA added and kept in float32, the UNet checkpointed and
in train mode, ``ivlite.memory.reduce_step_memory``, ``instructvideo_objective`` under float16
autocast, backward -- while :class:`ivlite.memtrace.LiveBytes` counts the bytes of live tensors,
per phase. CUDA's autocast op lists and the attention kernel a GPU generation runs are emulated by
:class:`ivlite.memtrace.CudaAutocast` (default ``--gpu sm75``: a T4 or V100, the 16 GB GPUs).

Settings (overrides of the ``modelscope`` preset: 16 frames, 256x256, batch 1, S = 4, fp16):
``instructvideo``, ``draft1-d20`` (full chain from noise, gradient in the last of 20 steps),
``full-backprop-d20`` (gradient through all 20), ``no-segvr`` (all 16 frames decoded and scored),
``no-checkpointing``, ``batch-2``. Each is traced as ivlite's code stood before the memory savings
(UNet checkpointed per block, the decoder as one checkpoint, text towers and stock attention on
the GPU) and with them; the preset's step also with each saving added in turn.

    python -m benchmarks.memory_model               # all settings, full size (~20 traces of ~1 min)
    python -m benchmarks.memory_model --check       # + the trace against a real fp32 CPU run
    python -m benchmarks.memory_model --smoke       # scaled-down models

``--check`` runs one step for real on the CPU in float32 (full widths and UNet, 2 frames, a short
chain, shallow text towers and ViT) with the same counter on real tensors, and traces the same step
on the meta device: the two peaks should agree. Results: benchmarks/results/memory_model.json
and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROMPT = "a cat walking slowly across a sunny living room"
GIB = 2 ** 30

SETTINGS: dict[str, dict] = {
    "instructvideo": {},
    "draft1-d20": dict(chain="full", grad_steps=1),
    "full-backprop-d20": dict(chain="full", grad_steps=20),
    "no-segvr": dict(segments=16, frame_sampling="first"),
    "no-checkpointing": dict(gradient_checkpointing=False),
    "batch-2": dict(batch_size=2),
}
# The savings, in the order the ladder adds them; BEFORE is ivlite's step without any of them.
SAVINGS = ("layer_checkpointing", "vae_checkpointing", "offload_text")
BEFORE: dict[str, bool] = {k: False for k in SAVINGS}
AFTER: dict[str, bool] = {k: True for k in SAVINGS}
PHASES = ("text encoders", "no-grad chain", "grad step forward", "VAE decode forward",
          "reward forward", "reward backward", "VAE decode backward", "grad step backward")
# The preset's step with a 2-step chain (1 no-grad step + the gradient step) instead of 12: the
# no-grad steps free everything they make, so their number changes no phase's peak (the full
# trace records both); tests/test_memory_model.py traces this one, in a third of the time.
PRESET_SHORT_CHAIN = dict(tau=0.1)
SMOKE = dict(num_frames=4, height=64, width=64, ddim_steps=5, segments=2)
# --check: a real fp32 CPU step small enough for a few GB and a few minutes.
CHECK = dict(num_frames=2, ddim_steps=5, tau=0.4, segments=2, mixed_precision="no")


def config(size: str, overrides: dict):
    from ivlite.config import Config

    cfg = Config.preset("modelscope", prompts=[PROMPT], **overrides)
    if size == "small":
        cfg = cfg.override({**SMOKE, "mixed_precision": "no",
                            "grad_steps": min(cfg.grad_steps, SMOKE["ddim_steps"])})
        if overrides.get("grad_steps", 1) > 1:  # full backprop: through every step
            cfg = cfg.override({"grad_steps": SMOKE["ddim_steps"]})
        if "segments" in overrides:
            cfg = cfg.override({"segments": SMOKE["num_frames"]})
    return cfg.validate()


def build(size: str, device: str, *, check: bool = False):
    """VideoModel and HPSv2-shaped ClipReward with random weights on ``device``, frozen, float32.

    ``check``: the --check run's models (full UNet, VAE and widths; 2-layer text towers and a
    4-layer ViT-H-14), the UNet filled with small random numbers instead of its slow init.
    """
    import open_clip
    from diffusers import UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ivlite.models import MODELSCOPE_TEXT, MODELSCOPE_UNET, VideoModel, \
        random_modelscope_model
    from ivlite.rewards.clip import ClipReward, clip_tokenizer_fn
    from ivlite.rewards.hps import HPS_ARCH, SMALL_ARCH, SMALL_VIT_H_14, VIT_H_14, \
        register_open_clip_config

    torch.manual_seed(0)
    if check:
        from diffusers import AutoencoderKL

        from ivlite.models import MODELSCOPE_VAE

        with torch.device("meta"):
            unet = UNet3DConditionModel(**MODELSCOPE_UNET)
        if device != "meta":
            unet.to_empty(device=device)
            with torch.no_grad():
                for p in unet.parameters():
                    p.uniform_(-0.02, 0.02)
        base = random_modelscope_model("small")  # for its tokenizer and scheduler
        with torch.device(device):
            vae = AutoencoderKL(**MODELSCOPE_VAE)
            text = CLIPTextModel(CLIPTextConfig(**{**MODELSCOPE_TEXT, "num_hidden_layers": 2}))
        model = VideoModel(unet, vae, text, base.tokenizer, base.scheduler).freeze()
        arch = register_open_clip_config("ViT-H-14-ivlite-check", {
            **VIT_H_14, "vision_cfg": {**VIT_H_14["vision_cfg"], "layers": 4},
            "text_cfg": {**VIT_H_14["text_cfg"], "layers": 2}})
    else:
        model = random_modelscope_model(size, device=device)
        arch = HPS_ARCH if size == "full" else register_open_clip_config(SMALL_ARCH,
                                                                         SMALL_VIT_H_14)
    clip = open_clip.create_model(arch, pretrained=None, device=device)
    return model, ClipReward(clip, clip_tokenizer_fn()).to(device)


def prepare(cfg, model, reward, savings: dict, *, device: str, cuda: bool = True) -> list:
    """What ``ivlite.finetune`` does between loading and the first step, on ``device``; ``cuda``
    (a GPU run) enables the CUDA-only savings. Returns the tensors that stay on the device: the
    offloaded text towers' weights are not among them (the meta device stands in for the GPU, so
    "offloading" them there moves nothing but drops them from the count)."""
    from ivlite import memory
    from ivlite.grad_checkpointing import enable_unet_checkpointing, enable_vae_checkpointing
    from ivlite.method.lora import add_lora, lora_config
    from ivlite.rewards.clip import TEXT_TOWER

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision,
                                                               torch.float32)
    model.freeze().to(device, dtype)
    reward.requires_grad_(False).eval().to(device, dtype)
    params = add_lora(model.unet, lora_config(cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets))
    for p in params:  # trainable weights stay fp32 under mixed precision
        p.data = p.data.float()
    if cfg.gradient_checkpointing:
        enable_unet_checkpointing(model.unet,
                                  "layer" if savings["layer_checkpointing"] else "block")
    model.unet.train()
    if savings["vae_checkpointing"] and cfg.gradient_checkpointing:
        enable_vae_checkpointing(model.vae)
    offloaded = set()
    if savings["offload_text"] and cuda:
        memory.offload_text_towers(model, reward, [PROMPT], device=device)
        towers = [model.text_encoder] + [getattr(reward.model, n) for n in TEXT_TOWER
                                         if getattr(reward.model, n, None) is not None]
        offloaded = {id(t) for m in towers for t in
                     ((*m.parameters(), *m.buffers()) if isinstance(m, torch.nn.Module) else (m,))}
    modules = (model.unet, model.vae, model.text_encoder, reward)
    return [t for m in modules for t in (*m.parameters(), *m.buffers()) if id(t) not in offloaded]


def run_step(cfg, model, reward, tracker, *, gpu: str | None):
    """One micro-step (objective + backward) under ``tracker``; ``gpu`` emulates CUDA autocast
    and attention kernels of that generation (None: run as the CPU does)."""
    from contextlib import nullcontext

    from ivlite.memtrace import CudaAutocast, instrument
    from ivlite.method.objective import instructvideo_objective

    instrument(tracker, model.unet, model.vae, reward,
               (model.text_encoder, getattr(reward.model, "transformer", reward.model)))
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(model.latent_shape(cfg.batch_size, cfg.num_frames, cfg.height, cfg.width),
                     device=tracker.device)
    fp16 = cfg.mixed_precision == "fp16"
    if gpu:
        emulation = CudaAutocast(torch.float16 if fp16 else None, sdpa=gpu)
    else:  # a CPU run: on real tensors as it is; on meta tensors with the CPU's attention kernel
        emulation = CudaAutocast(None, sdpa="cpu") if tracker.device == "meta" else nullcontext()
    with tracker, emulation:
        tracker.track([x0])
        tracker.phase("weights")
        out = instructvideo_objective(model, reward, x0, [PROMPT] * cfg.batch_size, cfg.method(),
                                      generator=gen)
        tracker.phase("reward backward")
        (out.loss / cfg.grad_accum).backward()
        tracker.phase("end")
    return out.unet_calls


def trace(size: str, overrides: dict, savings: dict, *, gpu: str | None = "sm75",
          fake: bool = True, check: bool = False) -> dict:
    """Trace (``fake``: tensors on the meta device, no data) or run one step on the CPU; returns
    peaks in GiB per phase and overall."""
    from ivlite.memtrace import LiveBytes

    cfg = config(size, {**overrides, **(CHECK if check else {})})
    t0 = time.perf_counter()
    device = "meta" if fake else "cpu"
    tracker = LiveBytes(device)
    model, reward = build(size, device, check=check)
    weights = prepare(cfg, model, reward, savings, device=device, cuda=gpu is not None)
    tracker.track(weights)
    weight_bytes = tracker.live
    del weights
    calls = run_step(cfg, model, reward, tracker, gpu=gpu)
    report = tracker.report()
    phases = {k: report["phases_gib"][k] for k in PHASES if k in report["phases_gib"]}
    return dict(peak_gib=report["peak_gib"], peak_phase=report["peak_phase"],
                weights_gib=round(weight_bytes / GIB, 3), phases_gib=phases, unet_calls=calls,
                seconds=round(time.perf_counter() - t0, 1),
                frames=cfg.num_frames, height=cfg.height, batch=cfg.batch_size,
                precision=cfg.mixed_precision, checkpointing=cfg.gradient_checkpointing)


def max_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def check_against_real(gpu_savings: dict) -> dict:
    """The same reduced step traced on the meta device and run for real (fp32, CPU)."""
    savings = {**gpu_savings, "offload_text": False}
    fake = trace("full", {}, savings, gpu=None, fake=True, check=True)
    rss0 = max_rss_gib()
    real = trace("full", {}, savings, gpu=None, fake=False, check=True)
    return {"setting": "instructvideo, fp32 on the CPU, 2 frames at 256x256, D = 5, tau = 0.4 "
                       "(2 chain steps, K = 1), S = 2; full UNet and VAE; 2-layer text towers, "
                       "4-layer ViT-H-14",
            "fake_trace": fake, "real_run": real,
            "real_process_max_rss_gib": round(max_rss_gib(), 3),
            "process_max_rss_before_real_gib": round(rss0, 3),
            "difference_gib": round(real["peak_gib"] - fake["peak_gib"], 4)}


def provenance() -> dict:
    import diffusers
    import open_clip
    import peft
    import transformers

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"],
                                    capture_output=True, text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {"commit": commit, "uncommitted_changes": dirty, "torch": torch.__version__,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "open_clip": open_clip.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}


def markdown(report: dict) -> str:
    lines = [f"# Memory model: peak live GiB of one training step ({report['size']} size)", "",
             f"Traced on meta tensors; GPU emulated: `{report['gpu']}` (autocast fp16 op lists, "
             f"attention kernel choice). Weights in fp16. Budget for a 16 GB GPU: "
             f"{report['budget_gib']} GiB.", ""]
    short = {"text encoders": "text", "no-grad chain": "no-grad chain",
             "grad step forward": "grad fwd", "VAE decode forward": "VAE fwd",
             "reward forward": "reward fwd", "reward backward": "reward bwd",
             "VAE decode backward": "VAE bwd", "grad step backward": "grad bwd"}
    lines.append("| setting | savings | weights | " + " | ".join(short.values())
                 + " | peak | trace s |")
    lines.append("|---" * (len(short) + 5) + "|")
    for row in report["rows"]:
        r = row["result"]
        cells = [f"{r['phases_gib'][k]:.2f}" if k in r["phases_gib"] else "-" for k in short]
        lines.append(f"| {row['setting']} | {row['savings']} | {r['weights_gib']:.2f} | "
                     + " | ".join(cells) + f" | **{r['peak_gib']:.2f}** | {r['seconds']} |")
    check = report.get("check")
    if check:
        lines += ["", "## The trace against a real run", "", check["setting"] + ".", "",
                  f"- meta-device trace: peak {check['fake_trace']['peak_gib']} GiB "
                  f"({check['fake_trace']['peak_phase']})",
                  f"- real fp32 CPU run, same counter on real tensors: peak "
                  f"{check['real_run']['peak_gib']} GiB ({check['real_run']['peak_phase']}); "
                  f"{check['real_run']['seconds']} s",
                  f"- difference: {check['difference_gib']} GiB; process max RSS "
                  f"{check['real_process_max_rss_gib']} GiB"]
    lines += ["", f"Provenance: {json.dumps(report['provenance'])}", ""]
    return "\n".join(lines)


LADDER = [("before", BEFORE)] + [("+ " + SAVINGS[i], {k: j <= i for j, k in enumerate(SAVINGS)})
                                 for i in range(len(SAVINGS))]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="scaled-down models; seconds")
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--gpu", choices=("sm75", "sm80"), default="sm75",
                        help="GPU generation to emulate: sm75 = T4/V100 (default), sm80 = A100+")
    parser.add_argument("--check", action="store_true",
                        help="also run the fp32 CPU check against a real step (minutes, ~8 GB)")
    parser.add_argument("--no-ladder", action="store_true",
                        help="skip the one-saving-at-a-time rows of the preset's step")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/"
                        "memory_model.json; --smoke: nothing written unless given)")
    args = parser.parse_args(argv)
    size = "small" if args.smoke else "full"
    rows = []

    def add(setting, label, savings):
        result = trace(size, SETTINGS[setting], savings, gpu=args.gpu)
        rows.append(dict(setting=setting, savings=label, result=result))
        print(f"{setting:18s} {label:26s} peak {result['peak_gib']:7.3f} GiB "
              f"({result['peak_phase']}), {result['seconds']} s", flush=True)

    for setting in args.settings:
        steps = LADDER if setting == "instructvideo" and not args.no_ladder else \
            [("before", BEFORE), ("after", AFTER)]
        for label, savings in steps:
            add(setting, "after" if savings == AFTER else label, savings)
    if "instructvideo" in args.settings and not args.smoke:
        result = trace(size, PRESET_SHORT_CHAIN, AFTER, gpu=args.gpu)
        rows.append(dict(setting="instructvideo, 2-step chain (the test's trace)",
                         savings="after", result=result))
        print(f"instructvideo 2-step chain, after: peak {result['peak_gib']:.3f} GiB, "
              f"{result['seconds']} s", flush=True)
    report = {"size": size, "gpu": args.gpu, "budget_gib": 10.0,
              "savings": list(SAVINGS), "settings": SETTINGS, "rows": rows,
              "provenance": provenance()}
    if args.check:
        report["check"] = check_against_real(AFTER)
        c = report["check"]
        print(f"check: fake {c['fake_trace']['peak_gib']} GiB, real {c['real_run']['peak_gib']} "
              f"GiB", flush=True)
    out = args.out or (None if args.smoke else str(RESULTS / "memory_model.json"))
    if out:
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
        Path(out).with_suffix(".md").write_text(markdown(report))
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
