"""The fine-tuning loop: LoRA + AdamW on accelerate, logged, checkpointed, resumable.

One optimizer step = ``grad_accum`` micro-batches of :func:`instructvideo_objective` per process.
Multi-process data parallelism is done by averaging the LoRA gradients across processes with
``accelerator.reduce`` after the backward passes, rather than by wrapping the UNet in DDP: a step
calls the UNet many times (the chain's no-grad steps, then K checkpointed steps with gradients),
which DDP's reducer does not expect, and the LoRA gradients are small (1.6M numbers at full
scale), so one all-reduce per step costs little.

The run folder (``out_dir``, :mod:`ivlite.run_folder`) holds ``config.json`` (and the same as
``config.yaml``), ``run_info.json`` (package versions, device, SHA-256 of the files read),
``log.jsonl`` (one line per step: loss, reward, gradient norm, learning rate, seconds, whether the
step was skipped), ``checkpoints/`` and, at the end, ``adapter/`` (peft format): safetensors and
JSON only. The process writing it holds ``.lock`` (:class:`ivlite.folders.FolderLock`) for the
whole run; a folder holding another run's files is never written over without ``force``, and a
resumed run must read the same files (same SHA-256) as the run it continues. Every input a user
can get wrong is checked before the work it would spoil: the config and files before any model
loads (:func:`check_environment`), what needs the model right after it loads
(:func:`check_model_fits`). A step whose loss, reward or gradient is not finite is skipped
and never checkpointed; ``max_bad_steps`` of them in a row stop the run (:class:`NonFiniteGuard`,
:class:`NonFiniteError`).
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import broadcast
from diffusers.optimization import get_constant_schedule_with_warmup
from peft import set_peft_model_state_dict

from . import registry
from .adapters import save_adapter
from .common import modes_kept, resolve_device, seeded_generator, weight_dtype
from .config import Config, ConfigError, first_line
from .data import LatentClips, caption_table, check_prompt_lengths, check_video_folder, \
    folder_clips, read_captions
from .early_stop import early_stopping_from_config
from .folders import FolderLock
from .grad_checkpointing import enable_unet_checkpointing
from .memory import reduce_step_memory
from .method.lora import ADAPTER_NAME, add_lora, check_adapter_state, lora_config
from .method.objective import instructvideo_objective
from .models import VideoModel
from .rewards import Reward, RewardGradientError, check_reward_gradients
from .run_folder import RunLog, prepare_out_dir, write_run_info
from .run_state import latest_checkpoint, load_checkpoint, save_checkpoint

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


class NonFiniteError(RuntimeError):
    """Training stopped: too many steps in a row had a NaN or infinite loss, reward or gradient."""


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
    try:
        resolve_device(cfg.device)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    sharded = [name for name in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED")
               if os.environ.get(name, "").lower() in ("1", "true")]
    if sharded:
        # A step calls the UNet a dozen times, so ivlite all-reduces the LoRA gradients itself
        # instead of wrapping the model (DDP/FSDP/DeepSpeed); a sharding config would be ignored.
        raise ConfigError(f"{sharded[0]} is set: ivlite finetune is data-parallel only; use an "
                          f"accelerate config with distributed_type MULTI_GPU (no FSDP/DeepSpeed)")
    on_cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    if cfg.mixed_precision == "fp16" and on_cpu:
        raise ConfigError("mixed_precision='fp16' needs a CUDA device; use 'bf16' or 'no' on "
                          "the CPU")
    try:
        registry.parse_reward_spec(cfg.reward)
        registry.check_reward_checkpoint(cfg.reward, cfg.reward_checkpoint)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if cfg.data not in registry.DATA and not caption_table(cfg.data).is_file():
        data = Path(cfg.data)
        kind = "does not exist" if not data.exists() else "has no captions.csv" \
            if data.is_dir() else "is a file but not a .csv"
        names = ", ".join(repr(name) for name in registry.DATA)
        raise ConfigError(f"data={cfg.data!r} {kind}: expected {names}, a folder "
                          f"containing captions.csv or a .csv file")
    if cfg.model not in registry.MODELS and Path(cfg.model).exists() \
            and not (Path(cfg.model) / "unet").is_dir():
        kind = "is a file" if Path(cfg.model).is_file() else "has no unet/"
        raise ConfigError(f"model={cfg.model!r} {kind}: a local model folder must contain "
                          f"unet/, vae/, text_encoder/, tokenizer/ and scheduler/")
    if cfg.model not in registry.MODELS and _missing_path(cfg.model):
        raise ConfigError(f"model={cfg.model!r}: no such folder, and not a hub id (org/name); "
                          f"allowed: {list(registry.MODELS)}, a local diffusers folder or a hub id")
    if cfg.reward_checkpoint is not None and _missing_path(cfg.reward_checkpoint):
        raise ConfigError(f"reward_checkpoint={cfg.reward_checkpoint!r} does not exist")
    unfit = registry.DATA[cfg.data].check(cfg) if cfg.data in registry.DATA else None
    if unfit:
        raise ConfigError(unfit)
    _check_texts(cfg)


def _missing_path(name: str) -> bool:
    """True for a name that can only be a local path (not a hub id) and does not exist."""
    return not Path(name).exists() and not _HUB_ID.match(name)


def _check_texts(cfg: Config) -> None:
    """Prompts and a caption table's rows and videos, checked before any model loads."""
    from .tokenizer import clip_tokenizer

    # ModelScopeT2V and the tiny models share OpenCLIP's BPE and its 77 positions; a model with
    # another tokenizer is checked again once loaded (check_model_fits).
    tokenizer = clip_tokenizer()
    try:
        check_prompt_lengths(tokenizer, cfg.prompts, "prompts")
        check_prompt_lengths(tokenizer, cfg.early_stop_prompts or [], "early_stop_prompts")
        if cfg.data not in registry.DATA:
            check_prompt_lengths(tokenizer, [c for _, c in read_captions(cfg.data)],
                                 f"{caption_table(cfg.data)} caption")
            check_video_folder(cfg.data, cfg.num_frames)  # opens every video's header
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from None


def check_model_fits(cfg: Config, model: VideoModel, clips: LatentClips | None = None) -> None:
    """Errors that need the loaded model (its VAE's downsampling, its tokenizer) or the clips,
    raised before any clip is generated or any step runs."""
    factor = model.vae_scale_factor
    for name in ("height", "width"):
        value = getattr(cfg, name)
        if value % factor:
            raise ConfigError(f"{name}={value} does not fit model={cfg.model!r}: its VAE "
                              f"downsamples by {factor}, so {name} must be a multiple of {factor}")
    names = [n for n, _ in model.unet.named_modules()]
    unknown = [t for t in cfg.lora_targets if not any(n == t or n.endswith("." + t) for n in names)]
    if unknown:  # peft names a target by the end of a module's path, as here
        raise ConfigError(f"lora_targets={cfg.lora_targets!r}: {unknown} match no module of this "
                          f"UNet; allowed: ends of module paths such as 'to_q', 'to_k', 'to_v', "
                          f"'to_out.0'")
    try:
        check_prompt_lengths(model.tokenizer, cfg.prompts, "prompts")
        check_prompt_lengths(model.tokenizer, cfg.early_stop_prompts or [], "early_stop_prompts")
        if clips is not None:
            check_prompt_lengths(model.tokenizer, clips.captions, "clip captions")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if clips is not None:
        want = model.latent_shape(1, cfg.num_frames, cfg.height, cfg.width)[1:]
        have = tuple(clips.latents.shape[1:])
        if have != want:
            raise ConfigError(
                f"num_frames={cfg.num_frames}, height={cfg.height}, width={cfg.width}: the clips' "
                f"latents are (C, F, h, w) = {have}, this model expects {want}; set num_frames, "
                f"height and width to the clips' size")


def load_clips(cfg: Config, model: VideoModel) -> LatentClips:
    """The training clips ``cfg.data`` names: a source of :data:`ivlite.registry.DATA`, else the
    videos of a caption table."""
    if cfg.data in registry.DATA:
        return registry.DATA[cfg.data].load(cfg, model)
    return folder_clips(model, cfg.data, num_frames=cfg.num_frames, height=cfg.height,
                        width=cfg.width, seed=cfg.seed)


def _check_finite_weights(params: list[torch.nn.Parameter], step: int) -> None:
    """Never write a checkpoint or an adapter holding NaN or infinite weights."""
    if not all(bool(torch.isfinite(p).all()) for p in params):
        raise NonFiniteError(f"step {step}: the LoRA weights hold NaN or infinite values; nothing "
                             f"was saved from this step, the last checkpoint is intact")


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
             clips: LatentClips | None = None, progress: bool | str = True,
             stop_when=None, force: bool = False) -> RunResult:
    """Run (or resume) InstructVideo fine-tuning as ``cfg`` says. Returns the run's result.

    ``model``, ``reward`` and ``clips`` replace what ``cfg.model``, ``cfg.reward`` and ``cfg.data``
    would load (tests and notebooks pass objects they built). ``stop_when(step, record, unet)``,
    called after every step, ends the run early when it returns True (see
    :mod:`ivlite.early_stop`: ``TimeBudget``; ``EarlyStopping``, which ``cfg.early_stop_judge``
    sets up when ``stop_when`` is None). ``progress``: show a progress bar (a string labels it).
    ``force``: remove the files of a run already in ``out_dir``
    (:data:`ivlite.run_folder.RUN_FILES` only) and start a new one.

    The run switches the UNet to train mode (dropout on, as the official code trains); a given
    ``model``'s components and a given ``reward`` get back the train/eval modes they came with
    when it ends.
    """
    given = [model.unet, model.vae, model.text_encoder] if model is not None else []
    given += [reward] if isinstance(reward, torch.nn.Module) else []
    with modes_kept(*given):
        return _finetune(cfg, model=model, reward=reward, clips=clips, progress=progress,
                         stop_when=stop_when, force=force)


def _finetune(cfg: Config, *, model: VideoModel | None, reward: Reward | None,
              clips: LatentClips | None, progress: bool | str, stop_when,
              force: bool) -> RunResult:
    cfg.validate()
    check_environment(cfg)
    if force and cfg.resume:
        raise ConfigError("force=True with resume=true: give one (force replaces the run in "
                          "out_dir, resume continues it)")
    if Path(cfg.out_dir).exists() and not Path(cfg.out_dir).is_dir():
        raise ConfigError(f"out_dir={cfg.out_dir!r} is a file; choose a folder path")
    if cfg.device.startswith("cuda:"):
        torch.cuda.set_device(int(cfg.device[5:]))
    # accelerate keeps one AcceleratorState per process and refuses a second Accelerator with
    # another precision; a notebook or an ablation calls finetune many times with different
    # settings. Forget the previous run's state but keep PartialState (the process group).
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=cfg.device == "cpu")
    # One process writes the folder: the main process holds its lock for the whole run.
    lock = FolderLock(cfg.out_dir, "out_dir") if accelerator.is_main_process else None
    try:
        if lock is not None:
            lock.acquire()
        out = prepare_out_dir(cfg, accelerator.is_main_process, force,
                              barrier=accelerator.wait_for_everyone)
        return _run(cfg, accelerator, out, model, reward, clips, progress, stop_when)
    finally:
        if lock is not None:
            lock.release()


def _run(cfg: Config, accelerator: Accelerator, out: Path, model: VideoModel | None,
         reward: Reward | None, clips: LatentClips | None, progress: bool | str,
         stop_when) -> RunResult:
    """The body of :func:`finetune`, with ``out`` prepared and locked."""
    saved = _saved_checkpoint(cfg, out)  # a corrupt checkpoint is reported before the model loads
    model, reward, clips = _load_inputs(cfg, accelerator, out, model, reward, clips)
    params, optimizer, lr_schedule = _prepare_training(cfg, model, reward, clips, accelerator)
    start = _restore(*saved, model, optimizer, lr_schedule, accelerator) if saved else 0
    log = RunLog(out / "log.jsonl", start, write=accelerator.is_main_process)
    stop_when = _stopper(cfg, model, reward, accelerator, stop_when, start)
    guard = NonFiniteGuard(cfg.max_bad_steps, out / "checkpoints")
    result = RunResult(out, start)
    with _progress(cfg, start, progress if accelerator.is_main_process else False) as bar:
        for step in range(start, cfg.max_steps):
            record = _train_step(cfg, step, model, reward, clips, params, optimizer, lr_schedule,
                                 accelerator)
            stop = stop_when is not None and bool(stop_when(step + 1, record, model.unet))
            result.steps = step + 1
            result.log.append(record)
            log.append(record)
            bar.show(record)
            guard.check(step + 1, record)
            # A skipped step writes no checkpoint: resuming from the previous one replays it.
            if _checkpoint_due(cfg, step + 1, stop) and not record["non_finite"]:
                _save_checkpoint(cfg, out, step + 1, model, params, optimizer, lr_schedule,
                                 accelerator)
            if stop:
                break
        if hasattr(stop_when, "finish"):
            stop_when.finish(model.unet)  # early stopping: the best evaluation's weights go back
    _save_final_adapter(out, result.steps, model, params, accelerator)
    return result


def _saved_checkpoint(cfg: Config, out: Path) -> tuple[Path, tuple] | None:
    """On resume, the latest checkpoint's folder and contents (:func:`load_checkpoint`)."""
    folder = latest_checkpoint(out) if cfg.resume else None
    return (folder, load_checkpoint(folder)) if folder is not None else None


def _load_inputs(cfg: Config, accelerator: Accelerator, out: Path, model: VideoModel | None,
                 reward: Reward | None, clips: LatentClips | None
                 ) -> tuple[VideoModel, Reward, LatentClips]:
    """The model (frozen, in the run's precision), the reward (frozen) and the clips, each
    checked as soon as it is there; then run_info.json and the reward's gradient check."""
    dtype = weight_dtype(cfg.mixed_precision)
    torch.manual_seed(cfg.seed)  # LoRA's A matrices: the same on every process
    model = model if model is not None else registry.load_model(cfg.model, dtype=dtype)
    check_model_fits(cfg, model)  # before clips are generated or encoded
    model.freeze().to(accelerator.device, dtype)
    reward = reward if reward is not None else registry.build_reward(cfg.reward,
                                                                     cfg.reward_checkpoint)
    if isinstance(reward, torch.nn.Module):
        reward.requires_grad_(False).eval().to(accelerator.device, dtype)
    clips = clips if clips is not None else load_clips(cfg, model)
    check_model_fits(cfg, model, clips)
    if accelerator.is_main_process:
        write_run_info(cfg, out, accelerator.num_processes, str(accelerator.device))
    try:  # hours of training against a reward that cuts the gradient would train nothing
        check_reward_gradients(reward, clips.captions[:1], cfg.height, cfg.width,
                               device=accelerator.device)
    except RewardGradientError as err:
        raise ConfigError(f"reward={cfg.reward!r}: {err}") from None
    return model, reward, clips


def _prepare_training(cfg: Config, model: VideoModel, reward: Reward, clips: LatentClips,
                      accelerator: Accelerator):
    """LoRA on the UNet (float32, the same on every process), gradient checkpointing and the
    other memory savings (:func:`ivlite.memory.reduce_step_memory`), AdamW with its warm-up
    schedule. Returns (LoRA parameters, optimizer, schedule)."""
    params = add_lora(model.unet, lora_config(cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets,
                                              cfg.lora_init))
    for p in params:  # trainable weights stay fp32 under mixed precision
        p.data = broadcast(p.data.float(), from_process=0) if accelerator.num_processes > 1 \
            else p.data.float()
    if cfg.gradient_checkpointing:
        enable_unet_checkpointing(model.unet)
    reduce_step_memory(cfg, model, reward, clips.captions, accelerator.device)
    model.unet.train()  # as the official code: dropout (where the model has any) stays active
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    lr_schedule = get_constant_schedule_with_warmup(optimizer, cfg.warmup_steps)
    optimizer = accelerator.prepare(optimizer)  # loss scaling for fp16; the UNet is not wrapped
    return params, optimizer, lr_schedule


def _stopper(cfg: Config, model: VideoModel, reward: Reward, accelerator: Accelerator,
             stop_when, start: int):
    """``stop_when`` as given, else the early stopping ``cfg`` asks for (or None); a stopper
    with ``begin`` scores the starting point."""
    if stop_when is None:
        try:
            stop_when = early_stopping_from_config(cfg, model, reward,
                                                   write=accelerator.is_main_process)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if hasattr(stop_when, "begin"):
        stop_when.begin(model.unet, start)
    return stop_when


class _Progress:
    """A tqdm bar of the run's steps (or nothing), showing the last reward and loss."""

    def __init__(self, bar, segments: int = 0):
        self.bar, self.segments = bar, segments

    def show(self, record: dict) -> None:
        if self.bar is not None:
            # R is TAR-weighted and not normalised (Eq. 8): far below a frame's score.
            self.bar.set_postfix({f"train R (TAR, {self.segments} frames)":
                                  f"{record['reward']:.4f}", "loss": f"{record['loss']:.4f}"})
            self.bar.update(1)

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress(cfg: Config, start: int, progress: bool | str) -> _Progress:
    """A bar when ``progress`` (a string labels it), else a stand-in that shows nothing."""
    if not progress:
        return _Progress(None)
    from tqdm.auto import tqdm

    return _Progress(tqdm(total=cfg.max_steps, initial=start, unit="step",
                          desc=progress if isinstance(progress, str) else "instructvideo"),
                     cfg.segments)


class NonFiniteGuard:
    """The non-finite-step policy: :func:`_train_step` skips a step whose loss, reward or
    gradient is NaN or infinite (no update, and no checkpoint follows it); ``max_bad_steps`` such
    steps in a row stop the run with :class:`NonFiniteError`."""

    def __init__(self, max_bad_steps: int, checkpoints: Path):
        self.max_bad_steps, self.checkpoints, self.in_a_row = max_bad_steps, checkpoints, 0

    def check(self, step: int, record: dict) -> None:
        """Count step ``step`` (1-based); raise once ``max_bad_steps`` in a row were bad."""
        self.in_a_row = self.in_a_row + 1 if record["non_finite"] else 0
        if self.in_a_row < self.max_bad_steps:
            return
        n = self.in_a_row
        span = f"step {step} had" if n == 1 else \
            f"steps {step + 1 - n}-{step}: {n} steps in a row had"
        raise NonFiniteError(
            f"{span} a non-finite {', '.join(record['non_finite'])} (max_bad_steps="
            f"{self.max_bad_steps}); stopped. The last checkpoint (if any) in "
            f"{self.checkpoints} holds the last good weights. Check the reward for "
            f"NaN/inf, or lower learning_rate or set max_grad_norm")


def _checkpoint_due(cfg: Config, step: int, stop: bool) -> bool:
    """Every ``save_every`` steps, at the last step and when the run stops early."""
    return step % cfg.save_every == 0 or step == cfg.max_steps or stop


def _save_checkpoint(cfg: Config, out: Path, step: int, model: VideoModel,
                     params: list[torch.nn.Parameter], optimizer, lr_schedule,
                     accelerator: Accelerator) -> None:
    accelerator.wait_for_everyone()
    _check_finite_weights(params, step)
    if accelerator.is_main_process:
        extra = {"lr_schedule": lr_schedule.state_dict(), "config": cfg.to_dict(),
                 "scaler": accelerator.scaler.state_dict() if accelerator.scaler else None}
        save_checkpoint(out, step, model.unet, optimizer, extra)


def _save_final_adapter(out: Path, steps: int, model: VideoModel,
                        params: list[torch.nn.Parameter], accelerator: Accelerator) -> None:
    accelerator.wait_for_everyone()
    _check_finite_weights(params, steps)
    if accelerator.is_main_process:
        save_adapter(model.unet, out / "adapter", metadata={"steps": str(steps)})


def _restore(folder: Path, saved: tuple, model: VideoModel, optimizer, lr_schedule,
             accelerator: Accelerator) -> int:
    """Load a checkpoint (``load_checkpoint(folder)``) into the run; returns its step. One that
    does not fit this model or optimizer gives a ValueError naming its folder."""
    lora_state, opt_state, info = saved
    check_adapter_state(model.unet, lora_state, f"checkpoint {str(folder)!r}")
    try:
        set_peft_model_state_dict(model.unet, lora_state, adapter_name=ADAPTER_NAME)
        optimizer.load_state_dict(opt_state)
        lr_schedule.load_state_dict(info["lr_schedule"])
        if accelerator.scaler is not None and info.get("scaler"):
            accelerator.scaler.load_state_dict(info["scaler"])
    except (ValueError, KeyError, TypeError, RuntimeError) as err:
        raise ValueError(f"checkpoint {str(folder)!r} does not fit this run: "
                         f"{first_line(err)}") from None
    return info["step"]


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
            out = instructvideo_objective(model, reward, x0.to(accelerator.device), prompts,
                                          cfg.method(), generator=gen)
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
    # A non-finite loss, reward or gradient would poison the weights: skip the update. Under
    # fp16 an overflowing gradient alone is the loss scaler's business (it skips the update and
    # lowers its scale), not an error.
    non_finite = [name for name, value in (("loss", loss), ("reward", mean_reward),
                                           ("gradient", grad_norm)) if not math.isfinite(value)]
    if accelerator.scaler is not None and non_finite == ["gradient"]:
        non_finite = []
    lr = lr_schedule.get_last_lr()[0]
    if not non_finite:
        optimizer.step()
        lr_schedule.step()
    elif accelerator.scaler is not None:
        accelerator.scaler.update()  # close this step's unscale_ without applying it
    skipped = bool(non_finite) or bool(getattr(optimizer, "step_was_skipped", False))
    optimizer.zero_grad(set_to_none=True)
    return {"step": step + 1, "loss": loss, "reward": mean_reward, "grad_norm": grad_norm,
            "lr": lr, "unet_calls": calls, "skipped": skipped, "non_finite": non_finite,
            "seconds": round(time.perf_counter() - t0, 4)}
