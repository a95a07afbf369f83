"""One configuration for every ivlite run: presets, YAML files, command-line overrides, validation.

Every field is checked by :meth:`Config.validate` before any model is loaded, so a typo costs a
second, not a model download. Each error names the field, the value given and what is allowed.

The defaults are the paper's (arXiv 2312.12490) and the authors' training config
(``reward_webvid_ani45_20_reg_vidldm_LoRA_TSNExp16Diffreward_Partial06_Trunc1_Check_ddim20``):
tau 0.6 of a 20-step DDIM grid, gradient through the last step only, guidance 3.0, 4 segments with
TSN sampling, lambda_tar 1, LoRA rank 4, AdamW at 1e-5 with 10 warm-up steps.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

import yaml

from .method.settings import MethodSettings, edit_step_count

PAPER = MethodSettings()
"""The method's settings as the paper and the authors' training config have them."""

DEVICE_NAMES = "'auto', 'cpu', 'cuda' or 'cuda:N'"
LORA_INITS = ("official", "peft")
"""Values of ``lora_init`` (:func:`ivlite.method.lora.lora_config` maps them to peft's initialisers)."""


def is_device_name(name: object) -> bool:
    """Whether ``name`` spells one of :data:`DEVICE_NAMES` (whether CUDA is there is asked later,
    by :func:`ivlite.common.resolve_device`)."""
    return isinstance(name, str) and (name in ("auto", "cpu", "cuda") or (
        name.startswith("cuda:") and name[5:].isdigit()))


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the field, value and range."""


@dataclass
class Config:
    # --- models -------------------------------------------------------------------------------
    model: str = "tiny-random"
    """Base text-to-video model: ``tiny-random`` (built in code), a local diffusers folder or a hub id."""
    reward: str = "tiny-random-clip"
    """Training reward: a name from :func:`ivlite.registry.available_rewards`, or ``a:0.7,b:0.3``."""
    reward_checkpoint: str | None = None
    """Explicit weights for the reward (for example ``HPS_v2_compressed.pt``)."""

    # --- data -----------------------------------------------------------------------------------
    data: str = "generated"
    """Training clips: ``generated`` (one clip the base model samples per prompt, cached: the
    WebVid-free path, not real videos), ``world`` (renders of the tiny world's in-domain scenes),
    or real clips: a folder with captions.csv or a .csv file of local videos and captions (16
    frames at 8 fps from a seeded start, centre-cropped, as the paper's WebVid loader). Each
    micro-batch draws its clips uniformly with replacement, seeded by (seed, step, micro-batch,
    process); the official loader instead walks its list in file order, unshuffled, the same on
    every GPU (VGen issue #137)."""
    prompts: list[str] = field(default_factory=lambda: [
        "a red circle moving left", "a blue square moving up",
        "a green triangle moving right", "a yellow circle moving down"])
    num_frames: int = 16
    """F, frames per clip."""
    height: int = 32
    """Frame height in pixels (a multiple of the VAE's downsampling, 8)."""
    width: int = 32

    # --- the method (paper Eq. 3-8): each field is documented in MethodSettings, whose defaults
    # (the paper's) these are; Config.method() hands them to the objective.
    tau: float = PAPER.tau
    ddim_steps: int = PAPER.ddim_steps
    grad_steps: int = PAPER.grad_steps
    chain: str = PAPER.chain
    guidance_scale: float = PAPER.guidance_scale
    eta: float = PAPER.eta
    offset_noise: float = PAPER.offset_noise
    segments: int = PAPER.segments
    frame_sampling: str = PAPER.frame_sampling
    lambda_tar: float = PAPER.lambda_tar
    tar_normalize: bool = PAPER.tar_normalize

    # --- LoRA -----------------------------------------------------------------------------------
    lora_rank: int = 4
    lora_alpha: float | None = None
    """LoRA alpha; ``None`` means alpha = rank, i.e. scale 1 as in the paper."""
    lora_targets: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    lora_init: str = "official"
    """How the down matrix A starts (the up matrix B starts at zero either way, so step 0 is the
    base model): ``official``, A ~ N(0, (1/rank)^2) as the official code's LoRA (std 0.25 at rank
    4; peft's ``gaussian``); ``peft``, peft's default Kaiming-uniform A, bound 1/sqrt(d_in), whose
    spread is 8-16x smaller at ModelScope's widths (320-1280), so at the same learning rate the
    adapter's output moves that much more slowly at first."""

    # --- optimisation ---------------------------------------------------------------------------
    learning_rate: float = 1e-5
    """AdamW's learning rate, constant after the warm-up."""
    warmup_steps: int = 10
    """Optimizer steps of linear learning-rate warm-up."""
    weight_decay: float = 0.0
    max_steps: int = 20
    """Optimizer steps of the run (a resumed run counts those already done)."""
    batch_size: int = 1
    """Clips per process per micro-step."""
    grad_accum: int = 1
    mixed_precision: str = "no"
    """``no``, ``fp16`` (autocast + loss scaling) or ``bf16``."""
    gradient_checkpointing: bool = True
    max_grad_norm: float | None = None
    """Clip the gradient norm to this value; ``None`` (the paper) means no clipping."""
    max_bad_steps: int = 5
    """A step whose loss, reward or gradient is NaN or infinite is skipped (no update, no
    checkpoint); this many such steps in a row stop the run with an error."""
    seed: int = 0
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""

    # --- bookkeeping ----------------------------------------------------------------------------
    out_dir: str = "runs/finetune"
    save_every: int = 10
    """Write a resumable checkpoint every this many optimizer steps (and at the end)."""
    resume: bool = False

    # --- early stopping on held-out prompts (ivlite.early_stop) --------------------------------
    early_stop_judge: str | None = None
    """Judge for early stopping, not the training reward: ``oracle-quality``, ``oracle-score``
    (tiny world) or a reward name such as ``pickscore``; ``None`` (default) turns it off."""
    early_stop_every: int = 50
    """Optimizer steps between two judge evaluations on the held-out prompts."""
    early_stop_patience: int = 3
    """Evaluations without improvement before stopping (the best weights are then restored)."""
    early_stop_prompts: list[str] | None = None
    """Held-out prompts for the judge; ``None``: 4 prompts of the tiny world's held-out split."""

    # ------------------------------------------------------------------------------------------
    def method(self) -> MethodSettings:
        """The settings of the method (:func:`ivlite.method.objective.instructvideo_objective`)
        this run trains with: its fields of the same names, and ``gradient_checkpointing`` for the
        decoder."""
        names = {f.name for f in fields(MethodSettings)} - {"checkpoint_decoder"}
        return MethodSettings(**{name: getattr(self, name) for name in names},
                              checkpoint_decoder=self.gradient_checkpointing)

    @property
    def edit_steps(self) -> int:
        """Number of DDIM steps the chain runs: int(tau * D) when editing (computed exactly:
        :func:`ivlite.method.settings.edit_step_count`), D for the full chain."""
        return self.ddim_steps if self.chain == "full" else edit_step_count(self.tau,
                                                                            self.ddim_steps)

    def validate(self) -> "Config":
        """Check every field; raise :class:`ConfigError` on the first bad one. Returns ``self``."""
        # Every range test starts with a type test (``_finite``, ``_check_int``): a string or a
        # list typed on the command line must give this one-line error, not a TypeError.
        _check(self.tau, "tau", _finite(self.tau) and 0 < self.tau <= 1, "0 < tau <= 1")
        _check_int(self.ddim_steps, "ddim_steps", 1, 1000)
        _check(self.chain, "chain", self.chain in ("edit", "full"), "'edit' or 'full'")
        if self.chain == "edit" and edit_step_count(self.tau, self.ddim_steps) < 1:
            raise ConfigError(
                f"tau * ddim_steps = {self.tau} * {self.ddim_steps} gives int(...) = 0 editing steps; "
                f"need tau >= {1 / self.ddim_steps:.4g} for ddim_steps={self.ddim_steps}")
        _check_int(self.grad_steps, "grad_steps", 1, self.edit_steps,
                   why=f" (int(tau * ddim_steps) = {self.edit_steps} steps in the chain)")
        _check(self.guidance_scale, "guidance_scale", _finite(self.guidance_scale)
               and self.guidance_scale >= 1, "a finite number >= 1 (1 disables guidance)")
        _check(self.eta, "eta", _finite(self.eta) and 0 <= self.eta <= 1, "0 <= eta <= 1")
        _check(self.offset_noise, "offset_noise", _finite(self.offset_noise)
               and self.offset_noise >= 0, "a finite number >= 0")
        _check_int(self.num_frames, "num_frames", 1, 1024)
        _check_int(self.segments, "segments", 1, self.num_frames, why=" (num_frames)")
        _check(self.frame_sampling, "frame_sampling", self.frame_sampling in ("tsn", "first"),
               "'tsn' or 'first'")
        _check(self.lambda_tar, "lambda_tar", _finite(self.lambda_tar) and self.lambda_tar >= 0,
               "a finite number >= 0")
        for name in ("height", "width"):
            value = getattr(self, name)
            _check_int(value, name, 8, 4096)
            _check(value, name, value % 8 == 0, "a multiple of 8 (the VAE downsamples by 8)")
        _check_int(self.lora_rank, "lora_rank", 1, 1024)
        if self.lora_alpha is not None:
            _check(self.lora_alpha, "lora_alpha", _finite(self.lora_alpha) and self.lora_alpha > 0,
                   "a finite number > 0, or null for alpha = rank")
        _check(self.lora_targets, "lora_targets", isinstance(self.lora_targets, list)
               and len(self.lora_targets) > 0 and all(isinstance(t, str) and t for t in self.lora_targets),
               "a non-empty list of module names such as ['to_q', 'to_k', 'to_v', 'to_out.0']")
        _check(self.lora_init, "lora_init", isinstance(self.lora_init, str)
               and self.lora_init in LORA_INITS, " or ".join(map(repr, LORA_INITS)))
        _check(self.learning_rate, "learning_rate", _finite(self.learning_rate)
               and 0 < self.learning_rate <= 1, "0 < learning_rate <= 1")
        _check_int(self.warmup_steps, "warmup_steps", 0, 10**9)
        _check(self.weight_decay, "weight_decay", _finite(self.weight_decay)
               and self.weight_decay >= 0, "a finite number >= 0")
        _check_int(self.max_steps, "max_steps", 1, 10**9)
        _check_int(self.batch_size, "batch_size", 1, 4096)
        _check_int(self.grad_accum, "grad_accum", 1, 4096)
        _check(self.mixed_precision, "mixed_precision",
               self.mixed_precision in ("no", "fp16", "bf16"), "'no', 'fp16' or 'bf16'")
        if self.max_grad_norm is not None:
            _check(self.max_grad_norm, "max_grad_norm", _finite(self.max_grad_norm)
                   and self.max_grad_norm > 0, "a finite number > 0, or null for no clipping")
        _check_int(self.max_bad_steps, "max_bad_steps", 1, 10**9)
        _check(self.early_stop_judge, "early_stop_judge", self.early_stop_judge is None
               or (isinstance(self.early_stop_judge, str) and self.early_stop_judge != ""),
               "a judge name (ivlite.registry.JUDGES) or a reward name, or null for off")
        _check_int(self.early_stop_every, "early_stop_every", 1, 10**9)
        _check_int(self.early_stop_patience, "early_stop_patience", 1, 10**9)
        _check(self.early_stop_prompts, "early_stop_prompts", self.early_stop_prompts is None
               or (isinstance(self.early_stop_prompts, list) and len(self.early_stop_prompts) > 0
                   and all(isinstance(p, str) and p.strip() for p in self.early_stop_prompts)),
               "a non-empty list of prompts, or null for the tiny world's held-out prompts")
        _check_int(self.seed, "seed", 0, 2**63 - 1)
        _check(self.device, "device", is_device_name(self.device), DEVICE_NAMES)
        _check_int(self.save_every, "save_every", 1, 10**9)
        _check(self.prompts, "prompts", isinstance(self.prompts, list) and len(self.prompts) > 0,
               "a non-empty list of strings")
        for i, prompt in enumerate(self.prompts):
            _check(prompt, f"prompts[{i}]", isinstance(prompt, str) and prompt.strip() != "",
                   "a non-empty string")
        _check(self.model, "model", isinstance(self.model, str) and self.model != "",
               "'tiny-random', a local diffusers folder or a hub id")
        _check(self.reward, "reward", isinstance(self.reward, str) and self.reward != "",
               "a reward name or 'name:weight,name:weight'")
        _check(self.reward_checkpoint, "reward_checkpoint", self.reward_checkpoint is None
               or (isinstance(self.reward_checkpoint, str) and self.reward_checkpoint != ""),
               "a file path, or null for the reward's default weights")
        _check(self.data, "data", isinstance(self.data, str) and self.data != "",
               "'generated', 'world', a folder containing captions.csv or a .csv file")
        _check(self.out_dir, "out_dir", isinstance(self.out_dir, str) and self.out_dir != "",
               "a folder path")
        for name in ("tar_normalize", "gradient_checkpointing", "resume"):
            value = getattr(self, name)  # 'no' or 1 would otherwise read as true
            _check(value, name, isinstance(value, bool), "true or false")
        return self

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "Config":
        """A named preset (see :data:`PRESETS`) with ``overrides`` applied (not yet validated)."""
        if not isinstance(name, str) or name not in PRESETS:
            raise ConfigError(f"preset: unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls().override(PRESETS[name]).override(overrides)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Config":
        """Read a YAML mapping of field names to values; an optional ``preset:`` key is applied first."""
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"config: {str(path)!r} is a folder; expected a YAML file of "
                              f"field: value")
        if not path.is_file():
            raise ConfigError(f"config: file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise ConfigError(f"config: {str(path)!r} is not a readable YAML file: "
                              f"{first_line(err)}") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise ConfigError(f"config: {str(path)!r} must hold a mapping of field: value")
        preset = data.pop("preset", "paper")
        return cls.preset(preset, **data)

    def override(self, values: dict[str, Any]) -> "Config":
        """A copy with ``values`` set; unknown names and wrongly typed values raise ConfigError."""
        known = {f.name: f for f in fields(self)}
        changes = {}
        for name, value in values.items():
            if name not in known:
                raise ConfigError(f"{name}: unknown config field; known fields: {sorted(known)}")
            changes[name] = _coerce(name, value, getattr(self, name), known[name])
        return dataclasses.replace(self, **changes)

    def override_strings(self, assignments: Iterable[str]) -> "Config":
        """Apply ``field=value`` strings, values parsed as YAML (``tau=0.5``, ``prompts=[a, b]``)."""
        values = {}
        for item in assignments:
            if "=" not in item:
                raise ConfigError(f"override {item!r}: expected field=value, e.g. tau=0.5")
            name, text = item.split("=", 1)
            values[name.strip()] = parse_value(name.strip(), text)
        return self.override(values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


PRESETS: dict[str, dict[str, Any]] = {
    # The paper's method on whatever model is given; the field defaults are the paper's.
    "paper": {},
    # Seconds-long runs on tiny models built in code: tests and the quick start. The tiny
    # presets keep peft's LoRA init (benchmarks/lora_init.py measures both on the tiny world).
    "tiny-random": {"model": "tiny-random", "reward": "tiny-random-clip", "height": 32,
                    "width": 32, "max_steps": 4, "save_every": 2, "learning_rate": 1e-3,
                    "warmup_steps": 1, "lora_init": "peft"},
    # The tiny world: its shipped text-to-video model, its learned preference reward, its clips.
    # Learning rate 1e-3: of 1e-4, 2e-4, 5e-4 and 1e-3 it brought
    # the demo closest to its target (benchmarks/results/demo_lr_tiny.json).
    "tiny-world": {"model": "tiny-world", "reward": "tiny-hps", "data": "world", "height": 32,
                   "width": 32, "max_steps": 200, "learning_rate": 1e-3, "save_every": 50,
                   "prompts": ["a red circle moving left"], "lora_init": "peft"},
    # ModelScopeT2V + HPSv2 as in the paper (batch 8 = 2 per GPU x 4 GPUs; here 1 x accumulation).
    # Data: not the paper's 880 WebVid clips but 45 clips the base model generates, one per
    # in-domain animal caption of ivlite.prompts (data: generated); --data FOLDER_OR_CSV trains on
    # real clips instead. The in-domain evaluation prompts are then the training prompts.
    "modelscope": {"model": "damo-vilab/text-to-video-ms-1.7b", "reward": "hpsv2",
                   "prompts": "animals",
                   "height": 256, "width": 256, "max_steps": 20000, "batch_size": 1,
                   "grad_accum": 8, "mixed_precision": "fp16", "save_every": 500},
}


def parse_value(name: str, text: str) -> Any:
    """A command-line value read as YAML (``0.5``, ``[a, b]``, ``null``); ConfigError if invalid.

    A text field (``mixed_precision``, ``chain``, ...) takes the text as typed: YAML would read
    ``no``, ``off`` or ``yes`` as booleans (``null`` still clears an optional one)."""
    f = Config.__dataclass_fields__.get(name)
    if f is not None and str(f.type) in ("str", "str | None"):
        return None if str(f.type) != "str" and text.strip() in ("null", "~") else text
    if not text.strip():
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{name}={text!r} is not a valid YAML value ({first_line(err)}); "
                          f"quote text, write lists as [a, b]") from None


def first_line(err: BaseException) -> str:
    """The first line of an error's message: libraries (ffmpeg, safetensors) append pages."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(value: Any, name: str, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is out of range; allowed: {allowed}")


def _check_int(value: Any, name: str, low: int, high: int, why: str = "") -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    _check(value, name, ok, f"an integer with {low} <= {name} <= {high}{why}")


def _coerce(name: str, value: Any, current: Any, f: dataclasses.Field) -> Any:
    """Convert YAML/CLI values to the field's type where that is lossless (int -> float, str -> Path)."""
    wants_float = isinstance(current, float) or "float" in str(f.type)
    if wants_float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, int) and not isinstance(current, bool) and isinstance(value, float) \
            and value.is_integer():
        return int(value)
    if str(f.type) in ("str", "str | None") and isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} is not text: YAML reads yes/no/on/off as booleans; "
                          f"quote it ({name}: '{'yes' if value else 'no'}')")
    if isinstance(value, os.PathLike) and (isinstance(current, str) or current is None):
        return os.fspath(value)
    if name == "prompts" and isinstance(value, (str, list)):
        return _expand_prompt_sets(value)
    if isinstance(current, list) and isinstance(value, str) and value.strip():
        return [value]  # --prompts "a cat" means one prompt, not a string to reject
    return value


def _expand_prompt_sets(value: str | list) -> Any:
    """``prompts: animals`` (or a list mixing set names and prompts) -> the list of prompts, so
    that the run's config records what was trained on. A plain string is one prompt."""
    from .prompts import OFFICIAL_LISTS, PROMPT_SETS, resolve_prompts

    if isinstance(value, str):
        known = value in PROMPT_SETS or value in OFFICIAL_LISTS  # the latter: an error
        return resolve_prompts(value) if known else ([value] if value.strip() else value)
    if all(isinstance(v, str) for v in value):
        return resolve_prompts(value)
    return value
