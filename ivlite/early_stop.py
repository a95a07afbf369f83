"""Early stopping on held-out prompts, judged by something other than the training reward.

Reward fine-tuning over-optimises: trained long enough, the model learns what the reward model
likes rather than what people like (the paper's Fig. 5b: past about 20k steps HPSv2 keeps rising
while the videos get worse). The training reward cannot tell, by construction. So every
``early_stop_every`` optimizer steps the trainer generates clips for held-out prompts (prompts and
categories the fine-tuning never sees, with fixed noise) and scores them with a *judge* the model
was not trained on (``early_stop_judge``: PickScore at full scale; on the tiny world the oracle's
frame quality or score, see :func:`ivlite.registry.build_judge`). When the judge has not improved
by more than ``min_delta`` for ``early_stop_patience`` evaluations in a row, training stops and the
LoRA weights of the best evaluation (step 0, the base model, included) are put back, so the run's
``adapter/`` is the best one. Every evaluation is written to ``out_dir/early_stop.json``.

Config::

    early_stop_judge: oracle-quality   # null (default) = off
    early_stop_every: 50               # optimizer steps between evaluations
    early_stop_patience: 3             # evaluations without improvement before stopping
    early_stop_prompts: null           # null = 4 prompts of the tiny world's held-out split

The trainer calls the stopper through a small protocol (``begin``, ``__call__``, ``finish``), so
any callable ``stop_when(step, record, unet) -> bool`` (for example :class:`TimeBudget`) can be
passed to :func:`ivlite.trainer.finetune` instead. Resuming a run restarts the stopper's history.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from peft import set_peft_model_state_dict

from . import registry
from .evaluation import evaluate_splits
from .method.lora import ADAPTER_NAME, lora_state_dict


@dataclass
class PatienceRule:
    """The stopping rule alone: feed judge scores (higher is better), get True when to stop.

    A score counts as an improvement when it beats the best so far by more than ``min_delta``.
    ``patience`` scores in a row without improvement stop the run.
    """

    patience: int = 3
    min_delta: float = 0.0
    best: float = -math.inf
    best_index: int = -1
    bad: int = 0
    count: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"patience={self.patience!r} must be an integer >= 1")
        if not (isinstance(self.min_delta, (int, float)) and self.min_delta >= 0):
            raise ValueError(f"min_delta={self.min_delta!r} must be a number >= 0")

    def update(self, score: float) -> bool:
        """Record one score; True when the run should stop now. A NaN score never improves."""
        improved = math.isfinite(score) and score > self.best + self.min_delta
        if improved:
            self.best, self.best_index, self.bad = float(score), self.count, 0
        else:
            self.bad += 1
        self.count += 1
        return self.bad >= self.patience


def stop_index(scores: Sequence[float], patience: int, min_delta: float = 0.0) -> int | None:
    """Index of the score at which :class:`PatienceRule` stops, or None if it never does."""
    rule = PatienceRule(patience, min_delta)
    for i, score in enumerate(scores):
        if rule.update(score):
            return i
    return None


class TimeBudget:
    """``stop_when`` for a budget of seconds: stop at the first step that reaches ``seconds``.

    ``clock="cpu"`` (default) counts this process's CPU time from :meth:`begin` (the trainer
    calls it before the first step) to each step's end: robust to other processes sharing the
    machine, and a fair measure of compute with one thread. ``clock="wall"`` adds up the
    ``seconds`` each step reports. Either way the steps alone are counted when checkpoints are
    not written in between. The step's CPU seconds go into its log record (``cpu_seconds``).
    """

    def __init__(self, seconds: float, clock: str = "cpu"):
        if clock not in ("cpu", "wall"):
            raise ValueError(f"clock={clock!r}; allowed: 'cpu' or 'wall'")
        self.seconds, self.clock, self.used = float(seconds), clock, 0.0
        self._last: float | None = None

    def begin(self, unet: torch.nn.Module, step: int) -> None:
        self._last = time.process_time()

    def __call__(self, step: int, record: dict, unet: torch.nn.Module) -> bool:
        now = time.process_time()
        cpu = now - (self._last if self._last is not None else now)
        self._last = now
        record["cpu_seconds"] = round(cpu, 4)
        self.used += cpu if self.clock == "cpu" else float(record.get("seconds", 0.0))
        return self.used >= self.seconds


@dataclass
class EarlyStopping:
    """Evaluate a judge on held-out prompts every ``every`` steps; stop on lost patience.

    ``score_fn(unet) -> dict`` must return at least ``{"judge": float}`` (more keys, such as the
    training reward on the same clips, are logged too). ``out`` (a folder) receives
    ``early_stop.json`` after every evaluation.
    """

    score_fn: Callable[[torch.nn.Module], dict]
    every: int = 50
    patience: int = 3
    min_delta: float = 0.0
    restore_best: bool = True
    out: Path | None = None
    history: list[dict] = field(default_factory=list)
    stopped_at: int | None = None
    rule: PatienceRule = field(init=False)
    best_state: dict | None = field(default=None, init=False, repr=False)
    best_step: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every={self.every!r} must be an integer >= 1")
        self.rule = PatienceRule(self.patience, self.min_delta)

    def _evaluate(self, step: int, unet: torch.nn.Module) -> bool:
        t0 = time.perf_counter()
        scores = self.score_fn(unet)
        entry = {"step": step, **{k: float(v) for k, v in scores.items()},
                 "seconds": round(time.perf_counter() - t0, 3)}
        stop = self.rule.update(entry["judge"])
        if self.rule.best_index == self.rule.count - 1:  # this evaluation is the new best
            self.best_step = step
            self.best_state = {k: v.clone() for k, v in lora_state_dict(unet).items()}
        entry["best_step"] = self.best_step
        self.history.append(entry)
        if stop:
            self.stopped_at = step
        self._write()
        return stop

    def begin(self, unet: torch.nn.Module, step: int) -> None:
        """Score the starting point (the base model on a fresh run)."""
        self._evaluate(step, unet)

    def __call__(self, step: int, record: dict, unet: torch.nn.Module) -> bool:
        if step % self.every:
            return False
        stop = self._evaluate(step, unet)
        record["early_stop"] = {k: v for k, v in self.history[-1].items() if k != "step"}
        return stop

    def finish(self, unet: torch.nn.Module) -> None:
        """Put the best evaluation's LoRA weights back (when ``restore_best``)."""
        if self.restore_best and self.best_state is not None:
            set_peft_model_state_dict(unet, self.best_state, adapter_name=ADAPTER_NAME)
        self._write(final=True)

    def summary(self) -> dict:
        return {"every": self.every, "patience": self.patience, "min_delta": self.min_delta,
                "stopped_at": self.stopped_at, "best_step": self.best_step,
                "best_judge": self.rule.best if self.history else None,
                "restored_best": self.restore_best and self.best_state is not None,
                "history": self.history}

    def _write(self, final: bool = False) -> None:
        if self.out is not None:
            Path(self.out).mkdir(parents=True, exist_ok=True)
            (Path(self.out) / "early_stop.json").write_text(
                json.dumps({**self.summary(), "final": final}, indent=2))


def judge_score_fn(model, reward, judge: str, prompts: Sequence[str], *, num_frames: int,
                   height: int, width: int, ddim_steps: int, guidance_scale: float,
                   segments: int, seed: int = 0, reward_name: str | None = None
                   ) -> Callable[[torch.nn.Module], dict]:
    """``score_fn`` for :class:`EarlyStopping`: judge and training reward on ``prompts``, one
    clip each from fixed noise, with the evaluation protocol of
    :func:`ivlite.evaluation.evaluate_splits`."""
    judge_fn = registry.build_judge(judge, segments=segments, device=model.device)

    def score(unet: torch.nn.Module) -> dict:
        result = evaluate_splits(model, reward, {"held_out": list(prompts)}, judge=judge_fn,
                                 oracle=False, num_frames=num_frames, height=height, width=width,
                                 ddim_steps=ddim_steps, guidance_scale=guidance_scale,
                                 segments=segments, seed=seed, reward_name=reward_name)
        split = result["splits"]["held_out"]
        return {"judge": split["judge"]["mean"], "reward": split["reward"]["mean"]}

    return score


def early_stopping_from_config(cfg, model, reward, *, write: bool = True) -> EarlyStopping | None:
    """The stopper ``cfg`` asks for (``early_stop_judge`` set), or None. ``write``: keep
    ``out_dir/early_stop.json`` (the main process only, under several processes)."""
    judge = getattr(cfg, "early_stop_judge", None)
    if not judge:
        return None
    prompts = getattr(cfg, "early_stop_prompts", None)
    if not prompts:
        prompts = registry.held_out_prompts(cfg)
        if prompts is None:
            raise ValueError(f"early_stop_judge={judge!r} needs early_stop_prompts (held-out "
                             f"prompts); only the tiny world has a default set")
    score = judge_score_fn(model, reward, judge, prompts, num_frames=cfg.num_frames,
                           height=cfg.height, width=cfg.width, ddim_steps=cfg.ddim_steps,
                           guidance_scale=cfg.guidance_scale, segments=cfg.segments,
                           seed=cfg.seed, reward_name=cfg.reward)
    return EarlyStopping(score, every=cfg.early_stop_every, patience=cfg.early_stop_patience,
                         out=Path(cfg.out_dir) if write else None)
