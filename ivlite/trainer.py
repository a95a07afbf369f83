"""The fine-tuning loop: LoRA + AdamW on accelerate, logged, checkpointed, resumable.

One optimizer step = ``grad_accum`` micro-batches of :func:`instructvideo_objective` per process.
Multi-process data parallelism is done by averaging the LoRA gradients across processes with
``accelerator.reduce`` after the backward passes, rather than by wrapping the UNet in DDP: a step
calls the UNet many times (the chain's no-grad steps, then K checkpointed steps with gradients),
which DDP's reducer does not expect, and the LoRA gradients are small (1.6M numbers at full
scale), so one all-reduce per step costs little.

The run folder (``out_dir``) holds ``config.yaml``, ``run_info.json`` (versions), ``log.jsonl``
(one line per step: loss, reward, gradient norm, learning rate, seconds), ``checkpoints/`` and,
at the end, ``adapter/`` (peft format).
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import broadcast
from diffusers.optimization import get_constant_schedule_with_warmup
from peft import set_peft_model_state_dict

from .checkpointing import enable_unet_checkpointing
from .common import seeded_generator, truncate_jsonl
from .config import Config, ConfigError
from .data import LatentClips, folder_clips, generated_clips
from .lora import ADAPTER_NAME, add_lora, lora_config, save_adapter
from .models import VideoModel, load_video_model
from .objective import instructvideo_objective
from .rewards import Reward, RewardGradientError, build_reward, check_reward_gradients, \
    parse_reward_spec
from .state import latest_checkpoint, load_checkpoint, save_checkpoint

# Fields that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = {"max_steps", "resume", "save_every", "device", "out_dir"}


@dataclass
class RunResult:
    out_dir: Path
    steps: int
    """Optimizer steps completed (including those of earlier, resumed sessions)."""
    log: list[dict] = field(default_factory=list)
    """The log lines written by this call."""

    @property
    def adapter_dir(self) -> Path:
        return self.out_dir / "adapter"


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """The generator for one micro-batch: a pure function of (seed, step, micro, rank)."""
    return seeded_generator(seed, step, micro, rank)


def check_environment(cfg: Config) -> None:
    """Errors a user can fix, raised before any model loads."""
    wants_cuda = cfg.device.startswith("cuda")
    if wants_cuda and not torch.cuda.is_available():
        raise ConfigError(f"device={cfg.device!r} but no CUDA device is available; "
                          f"use device='cpu' or 'auto'")
    if wants_cuda and ":" in cfg.device and int(cfg.device[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"device={cfg.device!r} but only {torch.cuda.device_count()} CUDA "
                          f"device(s) exist (cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    on_cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    if cfg.mixed_precision == "fp16" and on_cpu:
        raise ConfigError("mixed_precision='fp16' needs a CUDA device; use 'bf16' or 'no' on "
                          "the CPU")
    try:
        parse_reward_spec(cfg.reward)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if cfg.data not in ("generated", "world") and not (Path(cfg.data) / "captions.csv").is_file():
        raise ConfigError(f"data={cfg.data!r}: expected 'generated', 'world' or a folder "
                          f"containing captions.csv")
    if cfg.model != "tiny-random" and Path(cfg.model).exists() \
            and not (Path(cfg.model) / "unet").is_dir():
        raise ConfigError(f"model={cfg.model!r}: a local model folder must contain unet/, vae/, "
                          f"text_encoder/, tokenizer/ and scheduler/")


def load_clips(cfg: Config, model: VideoModel) -> LatentClips:
    if cfg.data == "world":
        from .world.data import world_clips

        return world_clips(model, "in_domain", seed=cfg.seed, num_frames=cfg.num_frames)
    if cfg.data == "generated":
        return generated_clips(model, cfg.prompts, model_name=cfg.model, num_frames=cfg.num_frames,
                               height=cfg.height, width=cfg.width, ddim_steps=cfg.ddim_steps,
                               guidance_scale=cfg.guidance_scale, seed=cfg.seed)
    return folder_clips(model, cfg.data, num_frames=cfg.num_frames, height=cfg.height,
                        width=cfg.width, seed=cfg.seed)


def _versions() -> dict:
    import accelerate
    import diffusers
    import peft

    return {"python": platform.python_version(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "peft": peft.__version__,
            "accelerate": accelerate.__version__}


def _prepare_out_dir(cfg: Config, accelerator: Accelerator) -> Path:
    """Refuse to overwrite a run by accident; on resume, refuse a changed method."""
    out = Path(cfg.out_dir)
    has_run = (out / "checkpoints" / "latest.json").is_file()
    if has_run and not cfg.resume:
        raise ConfigError(f"out_dir={cfg.out_dir!r} already holds a run; pass resume=true to "
                          f"continue it, or choose another out_dir")
    if has_run:
        import yaml

        old = yaml.safe_load((out / "config.yaml").read_text())
        changed = {k: (old.get(k), v) for k, v in cfg.to_dict().items()
                   if k not in RESUMABLE_CHANGES and old.get(k) != v}
        if changed:
            k, (a, b) = next(iter(changed.items()))
            raise ConfigError(f"resume: {k}={b!r} differs from the interrupted run's {k}={a!r}; "
                              f"only {sorted(RESUMABLE_CHANGES)} may change on resume")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(cfg.to_yaml())
        (out / "run_info.json").write_text(json.dumps(
            {"versions": _versions(), "processes": accelerator.num_processes,
             "device": str(accelerator.device)}, indent=2))
    return out


def _mean_gradients(params: list[torch.nn.Parameter], accelerator: Accelerator) -> None:
    """Average LoRA gradients over processes (one flat all-reduce)."""
    if accelerator.num_processes == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = accelerator.reduce(torch.cat([g.flatten() for g in grads]), reduction="mean")
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).to(p.dtype)
        offset += n


def finetune(cfg: Config, *, model: VideoModel | None = None, reward: Reward | None = None,
             clips: LatentClips | None = None, progress: bool = True) -> RunResult:
    """Run (or resume) InstructVideo fine-tuning as ``cfg`` says. Returns the run's result.

    ``model``, ``reward`` and ``clips`` replace what ``cfg.model``, ``cfg.reward`` and ``cfg.data``
    would load (tests and notebooks pass objects they built).
    """
    cfg.validate()
    check_environment(cfg)
    if cfg.device.startswith("cuda:"):
        torch.cuda.set_device(int(cfg.device[5:]))
    # accelerate keeps one AcceleratorState per process and refuses a second Accelerator with
    # another precision; a notebook or an ablation calls finetune many times with different
    # settings. Forget the previous run's state but keep PartialState (the process group).
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.device == "cpu")
    out = _prepare_out_dir(cfg, accelerator)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision,
                                                                      torch.float32)

    torch.manual_seed(cfg.seed)  # LoRA's A matrices: the same on every process
    model = model if model is not None else load_video_model(cfg.model, dtype=weight_dtype)
    model.freeze().to(accelerator.device, weight_dtype)
    reward = reward if reward is not None else build_reward(cfg.reward, cfg.reward_checkpoint)
    if isinstance(reward, torch.nn.Module):
        reward.requires_grad_(False).eval().to(accelerator.device, weight_dtype)
    clips = clips if clips is not None else load_clips(cfg, model)
    try:  # hours of training against a reward that cuts the gradient would train nothing
        check_reward_gradients(reward, clips.captions[:1], cfg.height, cfg.width,
                               device=accelerator.device)
    except RewardGradientError as err:
        raise ConfigError(f"reward={cfg.reward!r}: {err}") from None

    params = add_lora(model.unet, lora_config(cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets))
    for p in params:  # trainable weights stay fp32 under mixed precision
        p.data = broadcast(p.data.float(), from_process=0) if accelerator.num_processes > 1 \
            else p.data.float()
    if cfg.gradient_checkpointing:
        enable_unet_checkpointing(model.unet)
    model.unet.train()  # as the official code: dropout (where the model has any) stays active

    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    lr_schedule = get_constant_schedule_with_warmup(optimizer, cfg.warmup_steps)
    optimizer = accelerator.prepare(optimizer)  # loss scaling for fp16; the UNet is not wrapped

    start = 0
    folder = latest_checkpoint(out) if cfg.resume else None
    if folder is not None:
        lora_state, opt_state, info = load_checkpoint(folder)
        set_peft_model_state_dict(model.unet, lora_state, adapter_name=ADAPTER_NAME)
        optimizer.load_state_dict(opt_state)
        lr_schedule.load_state_dict(info["lr_schedule"])
        if accelerator.scaler is not None and info.get("scaler"):
            accelerator.scaler.load_state_dict(info["scaler"])
        start = info["step"]
    log_path = out / "log.jsonl"
    if accelerator.is_main_process:
        truncate_jsonl(log_path, start)

    bar = None
    if progress and accelerator.is_main_process:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=start, desc="instructvideo", unit="step")
    result = RunResult(out, start)
    for step in range(start, cfg.max_steps):
        record = _train_step(cfg, step, model, reward, clips, params, optimizer, lr_schedule,
                             accelerator)
        result.steps = step + 1
        result.log.append(record)
        if accelerator.is_main_process:
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            if bar is not None:
                bar.set_postfix(reward=f"{record['reward']:.4f}", loss=f"{record['loss']:.4f}")
                bar.update(1)
        if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.max_steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                extra = {"lr_schedule": lr_schedule.state_dict(), "config": cfg.to_dict(),
                         "scaler": accelerator.scaler.state_dict() if accelerator.scaler else None}
                save_checkpoint(out, step + 1, model.unet, optimizer, extra)
    if bar is not None:
        bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_adapter(model.unet, out / "adapter", metadata={"steps": str(result.steps)})
    return result


def _train_step(cfg: Config, step: int, model: VideoModel, reward: Reward, clips: LatentClips,
                params: list[torch.nn.Parameter], optimizer, lr_schedule,
                accelerator: Accelerator) -> dict:
    t0 = time.perf_counter()
    losses, rewards, calls = [], [], 0
    for micro in range(cfg.grad_accum):
        gen = step_generator(cfg.seed, step, micro, accelerator.process_index)
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=gen)))  # dropout masks
        x0, prompts = clips.sample(cfg.batch_size, gen)
        with accelerator.autocast():
            out = instructvideo_objective(model, reward, x0.to(accelerator.device), prompts, cfg,
                                          generator=gen)
        accelerator.backward(out.loss / cfg.grad_accum)
        losses.append(float(out.loss.detach()))
        rewards.append(float(out.reward.mean()))
        calls += out.unet_calls
    _mean_gradients(params, accelerator)
    max_norm = cfg.max_grad_norm if cfg.max_grad_norm is not None else math.inf
    grad_norm = float(accelerator.clip_grad_norm_(params, max_norm))
    loss = float(accelerator.reduce(torch.tensor(sum(losses) / len(losses),
                                                 device=accelerator.device), "mean"))
    mean_reward = float(accelerator.reduce(torch.tensor(sum(rewards) / len(rewards),
                                                        device=accelerator.device), "mean"))
    # fp16's loss scaler skips steps with overflowing gradients by itself; otherwise a
    # non-finite loss or gradient means this update would poison the weights: skip it.
    skipped = accelerator.scaler is None and not (math.isfinite(loss) and math.isfinite(grad_norm))
    lr = lr_schedule.get_last_lr()[0]
    if not skipped:
        optimizer.step()
        lr_schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return {"step": step + 1, "loss": loss, "reward": mean_reward, "grad_norm": grad_norm,
            "lr": lr, "unet_calls": calls, "skipped": skipped,
            "seconds": round(time.perf_counter() - t0, 4)}
