"""Baselines and ablations of InstructVideo on the tiny world, at one budget, scored one way.

Every setting of :data:`benchmarks.settings.SETTINGS` (base model, DRaFT-1, full-chain backprop,
InstructVideo, no SegVR, no TAR, lambda_tar, tau, D) fine-tunes a fresh copy of the shipped tiny
text-to-video model with the same reward (tiny-hps), the same LoRA, the same training clips and
the same budget (optimizer steps, or seconds of training steps), then is scored by
:func:`ivlite.evaluation.evaluate_splits` on the same prompts and the same noise: the training
reward, a second judge (the oracle's frame quality), the oracle's verdict and temporal
consistency, per split (in-domain, held-out categories, out-of-domain).

    OMP_NUM_THREADS=1 python -m benchmarks.ablations                       # CI-sized: 2 steps each
    OMP_NUM_THREADS=1 python -m benchmarks.ablations --budget-seconds 600 --per-split 6 --seeds 2
    OMP_NUM_THREADS=1 python -m benchmarks.ablations --settings base,instructvideo,draft1

Writes ``--out``.json and ``--out``.md (default ``benchmarks/results/ablations_tiny``) and prints
the tables. The JSON holds every number, the settings' configs and the machine's description.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

from benchmarks.settings import (
    DESCRIPTIONS,
    GROUPS,
    SETTINGS,
    UNTRAINED,
    expected_unet_calls,
    machine_info,
    parse_settings,
    setting_config,
)
from ivlite.config import Config

SPLIT_SHORT = {"in_domain": "in-domain", "held_out": "held-out", "out_of_domain": "out-of-domain"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget-steps", type=int, default=None,
                        help="optimizer steps per setting (default 2 unless --budget-seconds)")
    budget.add_argument("--budget-seconds", type=float, default=None,
                        help="seconds of training steps per setting (each setting stops at the "
                             "first step that reaches it); CPU seconds unless --clock wall")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                   help="what --budget-seconds counts: this process's CPU time (default: fair "
                        "when other processes share the machine) or wall time")
    p.add_argument("--settings", default="all", help="comma-separated setting names, or all")
    p.add_argument("--per-split", type=int, default=1, help="evaluation prompts per split")
    p.add_argument("--seeds", type=int, default=1, help="evaluation clips per prompt")
    p.add_argument("--eval-ddim-steps", type=int, default=20,
                   help="DDIM steps of the evaluation chain (the same for every setting)")
    p.add_argument("--judge", default="oracle-quality", help="second judge (see ivlite.registry.build_judge)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="override the tiny-world preset's learning rate")
    p.add_argument("--warmup-steps", type=int, default=0,
                   help="learning-rate warm-up steps (default 0, not the preset's 10: at a budget "
                        "of seconds a warm-up counted in steps would handicap the settings with "
                        "slower steps)")
    p.add_argument("--train-clips", type=int, default=64, help="rendered in-domain training clips")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=4, help="clips per evaluation UNet call")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ablations_tiny"),
                   help="output path without extension (.json and .md are written)")
    p.add_argument("--keep-runs", default=None, metavar="DIR",
                   help="keep each setting's run folder (log, adapter) under DIR")
    p.add_argument("--note", default=None, help="free text stored with the machine info, e.g. "
                   "'a training job was running on the other core'")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="only rewrite the .md of an earlier results JSON")
    p.add_argument("--resume", action="store_true",
                   help="keep the settings an interrupted run finished (saved after each "
                        "setting in --out.partial.json; its arguments, --settings and --out "
                        "aside, must be these) and run the rest; runs of disjoint --settings "
                        "whose partial files are merged resume into one file")
    p.add_argument("--smoke", action="store_true",
                   help="base, instructvideo and draft1 only, 1 step, 4-step evaluation chain")
    args = p.parse_args(argv)
    if args.budget_steps is None and args.budget_seconds is None:
        args.budget_steps = 2
    if args.smoke:
        args.settings, args.budget_steps, args.budget_seconds = \
            "base,instructvideo,draft1", 1, None
        args.eval_ddim_steps, args.per_split, args.seeds, args.train_clips = 4, 1, 1, 8
    return args


def _mean(values):
    return statistics.fmean(values) if values else float("nan")


def run(args: argparse.Namespace) -> dict:
    from ivlite.early_stop import TimeBudget
    from ivlite.evaluation import evaluate_splits
    from ivlite.registry import build_reward
    from ivlite.world.captions import world_splits
    from ivlite.trainer import finetune
    from ivlite.world.data import world_clips
    from ivlite.world.tiny_models import load_tiny_world

    torch.set_num_threads(1)
    info_start = machine_info(args.note)
    t_start = time.time()
    names = parse_settings(args.settings)
    extra = {"device": "cpu", "seed": args.seed}
    if args.learning_rate is not None:
        extra["learning_rate"] = args.learning_rate
    if args.warmup_steps is not None:
        extra["warmup_steps"] = args.warmup_steps
    base_cfg = Config.preset("tiny-world").override(extra)

    prompts = world_splits(args.per_split, seed=args.seed)
    eval_kw = dict(seeds=args.seeds, judge=args.judge, num_frames=base_cfg.num_frames,
                   height=base_cfg.height, width=base_cfg.width, ddim_steps=args.eval_ddim_steps,
                   guidance_scale=base_cfg.guidance_scale, segments=4, seed=1000 + args.seed,
                   batch_size=args.batch_size, reward_name=base_cfg.reward)

    partial = Path(args.out).with_suffix(".partial.json")
    # What each setting's row depends on: not which other settings ran, nor where they go.
    same_run = {k: v for k, v in vars(args).items()
                if k not in ("note", "resume", "settings", "out")}
    rows = _resumed(partial, same_run) if args.resume else {}
    resumed = [name for name in names if name in rows]
    if len(resumed) < len(names):  # something to train or score: load the model and data
        pristine = load_tiny_world()
        reward = build_reward(base_cfg.reward)
        clips = world_clips(pristine, "in_domain", clips=args.train_clips, seed=args.seed,
                            num_frames=base_cfg.num_frames)
    with tempfile.TemporaryDirectory(prefix="ivlite-ablations-") as tmp:
        tmp = args.keep_runs or tmp
        for name in names:
            if name in rows:
                print(f"[{name}] kept from {partial}", flush=True)
                continue
            t0 = time.time()
            model = copy.deepcopy(pristine)
            row = {"description": DESCRIPTIONS.get(name, name), "overrides": SETTINGS[name]}
            if name in UNTRAINED:
                row.update(steps=0, train_seconds=0.0, train_cpu_seconds=0.0)
            else:
                cfg = setting_config(name, base_cfg, out_dir=f"{tmp}/{name}",
                                     max_steps=args.budget_steps or 10**6, save_every=10**6)
                stop = TimeBudget(args.budget_seconds or float("inf"), clock=args.clock)
                result = finetune(cfg, model=model, reward=reward, clips=clips, progress=False,
                                  stop_when=stop)
                log = result.log
                tail = log[-max(1, len(log) // 4):]
                row.update(
                    steps=result.steps, train_seconds=round(sum(r["seconds"] for r in log), 2),
                    train_cpu_seconds=round(sum(r["cpu_seconds"] for r in log), 2),
                    seconds_per_step=round(_mean([r["seconds"] for r in log]), 3),
                    cpu_seconds_per_step=round(_mean([r["cpu_seconds"] for r in log]), 3),
                    unet_calls_per_step=log[0]["unet_calls"],
                    expected_unet_calls=expected_unet_calls(cfg),
                    train_reward_first=log[0]["reward"],
                    train_reward_first_quarter=_mean([r["reward"] for r in log[:len(tail)]]),
                    train_reward_last_quarter=_mean([r["reward"] for r in tail]),
                    train_log=[{k: r.get(k) for k in ("step", "reward", "loss", "seconds",
                                                      "cpu_seconds")} for r in log],
                    final_lr=log[-1]["lr"], config=cfg.to_dict())
            row["eval"] = evaluate_splits(model, reward, prompts, **eval_kw)
            row["wall_seconds"] = round(time.time() - t0, 1)
            rows[name] = row
            print(f"[{name}] {row['steps']} steps, {row['train_seconds']:.1f} s training "
                  f"({row['train_cpu_seconds']:.1f} CPU s), "
                  f"{row['wall_seconds']:.0f} s with evaluation", flush=True)
            del model
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps({"args": same_run, "settings": rows}))
    rows = {name: rows[name] for name in names}

    if "base" in rows:  # paired differences against the base model (same prompts, same noise)
        base = rows["base"]["eval"]["splits"]
        for row in rows.values():
            row["delta_vs_base"] = {
                split: {"reward": e["reward"]["mean"] - base[split]["reward"]["mean"],
                        "judge": e["judge"]["mean"] - base[split]["judge"]["mean"]
                        if "judge" in e else None,
                        "oracle_score": e["oracle"]["score"] - base[split]["oracle"]["score"]
                        if "oracle" in e else None}
                for split, e in row["eval"]["splits"].items()}
    results = {
        "benchmark": "ablations on the tiny world",
        "budget": {"steps": args.budget_steps, "seconds": args.budget_seconds},
        "args": vars(args), "prompts": prompts, "groups": GROUPS,
        "resumed_settings": resumed,
        "base_config": base_cfg.to_dict(), "settings": rows,
        "targets": targets(rows, args),
        "machine": {**info_start, "load_average_end": machine_info()["load_average_1_5_15"]},
        "total_seconds": round(time.time() - t_start, 1)}
    return results


def _resumed(partial: Path, same_run: dict) -> dict:
    """The settings an interrupted run with the same arguments saved in ``partial``."""
    if not partial.is_file():
        print(f"--resume: no {partial}; starting from the first setting", flush=True)
        return {}
    saved = json.loads(partial.read_text())
    if saved["args"] != same_run:
        diff = sorted(k for k in same_run if saved["args"].get(k) != same_run[k])
        raise SystemExit(f"--resume: {partial} was written with other arguments ({', '.join(diff)}"
                         f"); rerun without --resume to start afresh")
    return saved["settings"]


def targets(rows: dict, args) -> dict:
    """InstructVideo's in-domain reward gain against the full-chain baselines' at this budget."""
    out = {}
    iv = rows.get("instructvideo", {}).get("delta_vs_base")
    for other in ("draft1", "draft1-d50", "full-backprop"):
        d = rows.get(other, {}).get("delta_vs_base")
        if not (iv and d):
            continue
        a, b = iv["in_domain"]["reward"], d["in_domain"]["reward"]
        out[f"instructvideo_vs_{other}"] = {
            "budget": "seconds" if args.budget_seconds else "steps",
            "instructvideo_gain": a, f"{other}_gain": b,
            "ratio": a / b if b > 0 else None,
            "target": ">= 2x the full-chain gain at an equal budget of seconds",
            "met": (a >= 2 * b if b > 0 else a > 0) if args.budget_seconds else None}
    return out


def _f(x, digits=4, signed=False):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def to_markdown(results: dict) -> str:
    rows, m = results["settings"], results["machine"]
    b = results["budget"]
    a = results["args"]
    budget = f"{b['steps']} optimizer steps" if b["steps"] else \
        f"{b['seconds']:g} {a['clock']} seconds of training steps"
    lines = [
        "# Ablations on the tiny world", "",
        f"Budget per setting: {budget}. Evaluation: {a['per_split']} prompt(s) per split x "
        f"{a['seeds']} seed(s), full {a['eval_ddim_steps']}-step DDIM chain from the same noise "
        f"for every setting; reward = tiny-hps on SegVR's first frames; judge = {a['judge']}; "
        "Δ = paired difference to the base model.", "",
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable CPUs, torch threads "
        f"{m['torch_threads']}, load average at start {m['load_average_1_5_15']}, at end "
        f"{m['load_average_end']}; torch {m['torch']}; commit {m['git_commit']}."
        + (f" Note: {m['note']}" if m.get("note") else ""), "",
        "## In-domain prompts and training cost", "",
        "| setting | steps | train s (wall / CPU) | CPU s/step | UNet calls/step "
        "| train R (first -> last 25% of steps) "
        "| reward | Δ reward | judge | Δ judge | oracle score | Δ oracle | all 3 correct "
        "| temporal consistency | flicker |",
        "|" + "---|" * 15]
    for name, r in rows.items():
        e = r["eval"]["splits"]["in_domain"]
        d = r.get("delta_vs_base", {}).get("in_domain", {})
        first = r.get("train_reward_first_quarter")
        first = f"{first:.3f}" if first is not None else \
            f"(step 1) {r.get('train_reward_first', float('nan')):.3f}"  # older results
        train_r = "-" if not r["steps"] else f"{first} -> {r['train_reward_last_quarter']:.3f}"
        lines.append(
            f"| {name} | {r['steps']} | {r['train_seconds']:.1f} / {r['train_cpu_seconds']:.1f} | "
            f"{_f(r.get('cpu_seconds_per_step'), 2)} | {r.get('unet_calls_per_step', '-')} | "
            f"{train_r} | {e['reward']['mean']:.4f} ± {e['reward']['std']:.4f} | "
            f"{_f(d.get('reward'), 4, True)} | {_f(e.get('judge', {}).get('mean'), 3)} | "
            f"{_f(d.get('judge'), 3, True)} | {e['oracle']['score']:.3f} | "
            f"{_f(d.get('oracle_score'), 3, True)} | {e['oracle']['all_ok']:.0%} | "
            f"{e['temporal_consistency']['mean']:.3f} | {e['flicker']['mean']:.4f} |")
    lines += ["", "## Generalisation: held-out categories and out-of-domain compositions", "",
              "| setting | held-out reward | Δ | held-out oracle | Δ | out-of-domain reward | Δ "
              "| out-of-domain oracle | Δ |", "|" + "---|" * 9]
    for name, r in rows.items():
        cells = [name]
        for split in ("held_out", "out_of_domain"):
            e = r["eval"]["splits"][split]
            d = r.get("delta_vs_base", {}).get(split, {})
            cells += [f"{e['reward']['mean']:.4f}", _f(d.get("reward"), 4, True),
                      f"{e['oracle']['score']:.3f}", _f(d.get("oracle_score"), 3, True)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Groups", ""]
    for group, names in results["groups"].items():
        lines.append(f"- {group}: " + ", ".join(names))
    if results["targets"]:
        lines += ["", "## InstructVideo against the full-chain baselines (in-domain reward gain)",
                  ""]
        for key, t in results["targets"].items():
            other = key.split("_vs_")[1]
            ratio = "-" if t["ratio"] is None else f"{t['ratio']:.2f}x"
            met = {True: "met", False: "missed", None: "not applicable (budget in steps)"}[t["met"]]
            lines.append(f"- vs {other}: InstructVideo {t['instructvideo_gain']:+.4f}, {other} "
                         f"{t[other + '_gain']:+.4f}, ratio {ratio}; target (>= 2x at equal "
                         f"seconds): {met}")
    lines += ["", f"Total wall time {results['total_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
        out = Path(args.render).with_suffix("")
    else:
        results = run(args)
        out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    md = to_markdown(results)
    out.with_suffix(".md").write_text(md)
    out.with_suffix(".partial.json").unlink(missing_ok=True)
    print(md)
    return results


if __name__ == "__main__":
    main()
