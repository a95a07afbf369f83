"""Full-scale cost of InstructVideo against full-chain reward fine-tuning, on one GPU.

Builds ModelScopeT2V's architecture (1.41B-parameter UNet3DConditionModel, SD VAE, OpenCLIP-H text
encoder) and an HPSv2-sized reward (open_clip ViT-H-14) with RANDOM weights -- nothing is
downloaded -- and runs real training steps of ivlite's own trainer (``ivlite.finetune``: the
objective of ``ivlite.method.objective``, LoRA rank 4, AdamW, fp16 autocast with loss scaling, gradient
checkpointing) at 256x256, 16 frames, batch 1 for each mode:

- ``instructvideo``: editing, tau = 0.6 of a D = 20 grid (12 chain steps), gradient in the last 1;
- ``draft1-d20`` / ``draft1-d50``: DRaFT-1, the full chain from noise (20 / 50 steps), gradient in
  the last 1;
- ``full-backprop-d20``: the full 20-step chain with gradients through every step (checkpointed).

For each: seconds per optimizer step (mean over the measured steps, after warm-up), guided UNet
evaluations per step (each a batch of 2 clips for classifier-free guidance; checkpointing adds one
recomputation per gradient step in the backward pass), and peak GPU memory. Results go to
``benchmarks/results/full_scale_<gpu>.json`` and a table is printed.

    python -m benchmarks.full_scale                       # on a GPU: all modes, 3 measured steps
    python -m benchmarks.full_scale --modes instructvideo draft1-d20 --steps 5
    python -m benchmarks.full_scale --smoke               # CPU, scaled-down models, seconds

``--smoke`` runs the same code on scaled-down models of the same families (ModelScope's block types
with narrow channels and one layer per block, a small ViT-H-14-shaped CLIP), 2 frames at 64x64 and
shorter chains
(D = 20 -> 4, D = 50 -> 6), in float32: it checks that the benchmark works, not how fast anything
is.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

from ivlite.common import weight_dtype

MODES: dict[str, dict] = {
    "instructvideo": dict(chain="edit", tau=0.6, ddim_steps=20, grad_steps=1),
    "draft1-d20": dict(chain="full", ddim_steps=20, grad_steps=1),
    "draft1-d50": dict(chain="full", ddim_steps=50, grad_steps=1),
    "full-backprop-d20": dict(chain="full", ddim_steps=20, grad_steps=20),
}
SMOKE_STEPS = {20: 4, 50: 6}  # --smoke shortens the chains
PROMPT = "a cat walking slowly across a sunny living room"
RESULTS = Path(__file__).resolve().parent / "results"


def _mode_settings(name: str, smoke: bool) -> dict:
    mode = dict(MODES[name])
    if smoke:
        full_grad = mode["grad_steps"] == mode["ddim_steps"]
        mode["ddim_steps"] = SMOKE_STEPS[mode["ddim_steps"]]
        if full_grad:
            mode["grad_steps"] = mode["ddim_steps"]
    return mode


def build_shared(smoke: bool, device: str, dtype: torch.dtype):
    """VAE, text encoder, tokenizer, scheduler and the reward: shared by every mode (frozen)."""
    import open_clip
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    from ivlite.models import (
        MODELSCOPE_TEXT,
        MODELSCOPE_VAE,
        SMALL_MODELSCOPE_TEXT,
        SMALL_MODELSCOPE_VAE,
        modelscope_scheduler,
    )
    from ivlite.rewards.clip import ClipReward, clip_tokenizer_fn
    from ivlite.rewards.hps import (
        HPS_ARCH,
        SMALL_ARCH,
        SMALL_VIT_H_14,
        register_open_clip_config,
    )
    from ivlite.tokenizer import clip_tokenizer

    torch.manual_seed(1)
    arch = register_open_clip_config(SMALL_ARCH, SMALL_VIT_H_14) if smoke else HPS_ARCH
    with torch.device(device):
        vae = AutoencoderKL(**(SMALL_MODELSCOPE_VAE if smoke else MODELSCOPE_VAE))
        text_encoder = CLIPTextModel(CLIPTextConfig(
            **(SMALL_MODELSCOPE_TEXT if smoke else MODELSCOPE_TEXT)))
        clip = open_clip.create_model(arch, pretrained=None, device=device)
    for module in (vae, text_encoder, clip):
        module.to(dtype=dtype).requires_grad_(False).eval()
    reward = ClipReward(clip, clip_tokenizer_fn())
    return dict(vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(),
                scheduler=modelscope_scheduler()), reward


def unet_config(smoke: bool) -> dict:
    """ModelScope's UNet3D config; for --smoke its narrow copy with one layer per block."""
    from ivlite.models import MODELSCOPE_UNET, SMALL_MODELSCOPE_UNET

    return {**SMALL_MODELSCOPE_UNET, "layers_per_block": 1} if smoke else MODELSCOPE_UNET


def fresh_unet(smoke: bool, device: str, dtype: torch.dtype):
    """A new UNet (same seed, same random weights) for each mode: finetune adds LoRA to it."""
    from diffusers import UNet3DConditionModel

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet3DConditionModel(**unet_config(smoke))
    return unet.to(dtype=dtype).requires_grad_(False).eval()


def _non_finite_error() -> type:
    import ivlite.trainer

    return getattr(ivlite.trainer, "NonFiniteError", ())  # absent from older trainers


def run_mode(name: str, base, reward, *, smoke: bool, device: str, steps: int, warmup: int,
             num_frames: int, size: int, precision: str, work: Path) -> dict:
    from ivlite.config import Config
    from ivlite.data import LatentClips
    from ivlite.models import VideoModel
    from ivlite.trainer import finetune

    _NonFinite = _non_finite_error()
    mode = _mode_settings(name, smoke)
    dtype = weight_dtype(precision)
    cuda = device.startswith("cuda")
    unet = fresh_unet(smoke, device, dtype)
    unet_parameters = sum(p.numel() for p in unet.parameters())
    model = VideoModel(unet, **base)
    del unet
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(model.latent_shape(1, num_frames, size, size), generator=gen)
    clips = LatentClips(latents, [PROMPT])
    cfg = Config(model=f"random-{'small' if smoke else 'full'}-modelscope", prompts=[PROMPT],
                 num_frames=num_frames, height=size, width=size, batch_size=1, grad_accum=1,
                 mixed_precision=precision, gradient_checkpointing=True, device=device,
                 segments=min(4, num_frames), max_steps=warmup + steps, save_every=10**6,
                 warmup_steps=0, out_dir=str(work / name), **mode).validate()
    record = dict(mode=name, **mode, frames=num_frames, height=size, width=size, batch=1,
                  precision=precision, gradient_checkpointing=True,
                  unet_parameters=unet_parameters)
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.synchronize()
        weights = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    try:
        t0 = time.perf_counter()
        result = finetune(cfg, model=model, reward=reward, clips=clips, progress=False)
        total = time.perf_counter() - t0
    except torch.cuda.OutOfMemoryError as err:
        record.update(error=f"out of memory: {str(err).splitlines()[0]}")
        return record
    except _NonFinite as err:  # random fp16 weights can overflow; say so instead of a timing
        record.update(error=f"non-finite: {str(err).splitlines()[0]}")
        return record
    finally:
        del model
    measured = result.log[warmup:] or result.log
    seconds = [r["seconds"] for r in measured]
    calls = measured[0]["unet_calls"]
    record.update(
        seconds_per_step=sum(seconds) / len(seconds),
        seconds_all=[r["seconds"] for r in result.log],
        run_seconds=round(total, 2), steps_measured=len(measured),
        unet_calls=calls,  # guided evaluations in the chain (each a batch of 2B with guidance)
        unet_forward_passes=calls + mode["grad_steps"],  # + checkpoint recomputation in backward
        unet_backward_passes=mode["grad_steps"],
        loss_finite=all(r["loss"] == r["loss"] for r in result.log),
        loss_per_step=[r["loss"] for r in result.log],  # warm-up steps included
        reward_per_step=[r["reward"] for r in result.log],
    )
    if cuda:
        record.update(weights_gib=round(weights / 2**30, 3),
                      peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 3),
                      peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 3))
    return record


def device_name(device: str, smoke: bool) -> str:
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = "cpu"
    if smoke:
        name += "-smoke"
    return re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-").lower()


def table(results: list[dict]) -> str:
    lines = ["| mode | chain | D | K | s/step | UNet calls/step | fwd+recompute | peak GiB | "
             "reserved GiB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['mode']} | {r['chain']} | {r['ddim_steps']} | {r['grad_steps']} | "
                         f"{r['error'][:40]} | | | | |")
            continue
        peak = f"{r['peak_gib']:.2f}" if "peak_gib" in r else "n/a"
        reserved = f"{r['peak_reserved_gib']:.2f}" if "peak_reserved_gib" in r else "n/a"
        lines.append(f"| {r['mode']} | {r['chain']} | {r['ddim_steps']} | {r['grad_steps']} | "
                     f"{r['seconds_per_step']:.2f} | {r['unet_calls']} | "
                     f"{r['unet_forward_passes']} | {peak} | {reserved} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="CPU, scaled-down models, 2 frames at 64x64, short chains")
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=list(MODES))
    parser.add_argument("--steps", type=int, default=None,
                        help="measured optimizer steps per mode (default 3; smoke 1)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="unmeasured first steps per mode (default 1; smoke 0)")
    parser.add_argument("--frames", type=int, default=None, help="default 16 (smoke 2)")
    parser.add_argument("--size", type=int, default=None, help="frame height = width; default 256 "
                        "(smoke 64)")
    parser.add_argument("--precision", choices=("fp16", "bf16", "no"), default=None,
                        help="default fp16 (smoke: no)")
    parser.add_argument("--device", default=None, help="default cuda (smoke: cpu)")
    parser.add_argument("--out", default=None, help="JSON file (default "
                        "benchmarks/results/full_scale_<device>.json)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    device = args.device or ("cpu" if smoke else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or pass --smoke for the CPU check")
    steps = args.steps if args.steps is not None else (1 if smoke else 3)
    warmup = args.warmup if args.warmup is not None else (0 if smoke else 1)
    frames = args.frames or (2 if smoke else 16)
    size = args.size or (64 if smoke else 256)
    precision = args.precision or ("no" if smoke else "fp16")
    dtype = weight_dtype(precision)
    if steps < 1 or warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")

    base, reward = build_shared(smoke, device, dtype)
    import diffusers
    import peft

    results = []
    report = {
        "device": device_name(device, smoke),
        "smoke": smoke,
        "weights": "random (architecture only; no download)",
        "settings": dict(frames=frames, height=size, width=size, batch=1, precision=precision,
                         steps=steps, warmup=warmup, lora_rank=4),
        "parameters": {"vae": sum(p.numel() for p in base["vae"].parameters()),
                       "text_encoder": sum(p.numel() for p in base["text_encoder"].parameters()),
                       "reward": sum(p.numel() for p in reward.model.parameters())},
        "unet_config": unet_config(smoke),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "cuda": torch.version.cuda, "diffusers": diffusers.__version__,
                     "peft": peft.__version__},
        "results": results,
    }
    out = Path(args.out) if args.out else RESULTS / f"full_scale_{report['device']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ivlite-bench-") as tmp:
        for name in args.modes:
            results.append(run_mode(name, base, reward, smoke=smoke, device=device, steps=steps,
                                    warmup=warmup, num_frames=frames, size=size,
                                    precision=precision, work=Path(tmp)))
            report["parameters"]["unet"] = results[0]["unet_parameters"]
            # after every mode, so that a run stopped by a time limit keeps what it measured
            out.write_text(json.dumps(report, indent=2) + "\n")
            print(table(results[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(results), end="")
    print(f"results: {out}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
