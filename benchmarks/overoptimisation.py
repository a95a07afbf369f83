"""Over-optimisation on the tiny world: the proxy reward and the oracle, recorded together.

InstructVideo fine-tunes the shipped tiny text-to-video model against the learned tiny HPS for
``--steps`` steps. Every ``--every`` steps (and at step 0) clips for fixed in-domain and held-out
prompts, from fixed noise, are scored by the proxy (the training reward, tiny-hps), by a judge the
model is not trained on (default: the oracle's frame quality) and by the hidden oracle (text
alignment, frame quality, temporal consistency). Where the proxy keeps rising while the oracle
falls, the model is over-optimising the reward.

The early-stopping rule the trainer offers (``early_stop_judge``, ``early_stop_every``,
``early_stop_patience``; :mod:`ivlite.early_stop`) is applied to the same judge curve on the
held-out prompts: the script reports where it would have stopped and what the oracle said there,
against the end of the run and the oracle's own best, without stopping the run (so the curve
past the stop is visible).

    OMP_NUM_THREADS=1 python -m benchmarks.overoptimisation                    # small default
    OMP_NUM_THREADS=1 python -m benchmarks.overoptimisation --steps 1000 --every 50 --per-split 8

Writes ``--out``.json, ``.md`` and ``.png`` (default benchmarks/results/overoptimisation_tiny).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

from benchmarks.settings import machine_info, setting_config
from ivlite.config import Config
from ivlite.early_stop import EarlyStopping, PatienceRule, stop_index

CLIP_KEYS = ("reward", "judge", "oracle_score", "travel", "motion_ok", "temporal_consistency",
             "frame_quality", "frame_motion")
"""Per-clip scores each evaluation of the curve keeps (``clips_<split>``; motion_ok as 0/1)."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40, help="optimizer steps")
    p.add_argument("--every", type=int, default=10, help="steps between evaluations")
    p.add_argument("--per-split", type=int, default=4, help="prompts per split (1 clip each)")
    p.add_argument("--judge", default="oracle-quality", help="early-stopping judge")
    p.add_argument("--patience", type=int, default=3, help="early-stopping patience")
    p.add_argument("--min-delta", type=float, default=0.0)
    p.add_argument("--setting", default="instructvideo")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="default: the tiny-world preset's (2e-4)")
    p.add_argument("--train-clips", type=int, default=64)
    p.add_argument("--eval-ddim-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "overoptimisation_tiny"))
    p.add_argument("--note", default=None)
    p.add_argument("--render", default=None, metavar="JSON",
                   help="only re-summarise an earlier results JSON (e.g. another --patience) "
                        "and rewrite its .md and .png")
    return p.parse_args(argv)


def run(args) -> dict:
    from ivlite.evaluation import evaluate_splits
    from ivlite.registry import build_judge, build_reward
    from ivlite.world.captions import world_splits
    from ivlite.trainer import finetune
    from ivlite.world.data import world_clips
    from ivlite.world.tiny_models import load_tiny_world

    torch.set_num_threads(1)
    info = machine_info(args.note)
    t0 = time.time()
    extra = {"device": "cpu", "seed": args.seed}
    if args.learning_rate is not None:
        extra["learning_rate"] = args.learning_rate
    base = Config.preset("tiny-world").override(extra)
    model = load_tiny_world()
    reward = build_reward(base.reward)
    clips = world_clips(model, "in_domain", clips=args.train_clips, seed=args.seed,
                        num_frames=base.num_frames)
    prompts = world_splits(args.per_split, seed=args.seed + 1)  # not the ablations' prompts
    prompts = {"in_domain": prompts["in_domain"], "held_out": prompts["held_out"]}
    judge = build_judge(args.judge)

    per_clip: list[dict] = []   # one entry per evaluation, in the recorder's order

    def score(unet) -> dict:
        res = evaluate_splits(model, reward, prompts, judge=judge, oracle=True,
                              num_frames=base.num_frames, height=base.height, width=base.width,
                              ddim_steps=args.eval_ddim_steps, segments=base.segments,
                              guidance_scale=base.guidance_scale, seed=2000 + args.seed,
                              reward_name=base.reward)
        out, kept = {"judge": res["splits"]["held_out"]["judge"]["mean"]}, {}
        for split, e in res["splits"].items():
            out[f"reward_{split}"] = e["reward"]["mean"]
            out[f"judge_{split}"] = e["judge"]["mean"]
            out[f"oracle_{split}"] = e["oracle"]["score"]
            out[f"all_ok_{split}"] = e["oracle"]["all_ok"]
            out[f"frame_quality_{split}"] = e["oracle"]["frame_quality"]
            out[f"temporal_consistency_{split}"] = e["temporal_consistency"]["mean"]
            out[f"travel_{split}"] = e["oracle"]["travel"]
            out[f"motion_ok_{split}"] = e["oracle"]["motion_ok"]
            out[f"frame_motion_{split}"] = e["frame_motion"]["mean"]
            # per clip, in clip order (the same prompt and noise at every evaluation), so two
            # evaluations compare paired per clip (ivlite.stats.paired_gain); kept beside the
            # curve because the early-stopping recorder logs numbers only
            rows = e.get("per_clip") or []
            kept[f"clips_{split}"] = {k: [float(r[k]) for r in rows] for k in CLIP_KEYS
                                      if rows and k in rows[0]}
        per_clip.append(kept)
        return out

    # Patience larger than the run: record the whole curve; the rule is applied afterwards.
    recorder = EarlyStopping(score, every=args.every, patience=10**9, restore_best=False)
    with tempfile.TemporaryDirectory(prefix="ivlite-overopt-") as tmp:
        cfg = setting_config(args.setting, base, out_dir=f"{tmp}/run", max_steps=args.steps,
                             save_every=10**6)
        result = finetune(cfg, model=model, reward=reward, clips=clips, progress=False,
                          stop_when=recorder)
    curve = [{**entry, **kept} for entry, kept in zip(recorder.history, per_clip)]
    summary = summarise(curve, args.patience, args.min_delta, args.judge, args.every)
    return {"benchmark": "over-optimisation: proxy reward vs oracle", "args": vars(args),
            "prompts": prompts, "config": cfg.to_dict(), "curve": curve,
            "train_log": [{k: r[k] for k in ("step", "reward", "loss", "seconds")}
                          for r in result.log],
            "summary": summary,
            "machine": {**info, "load_average_end": machine_info()["load_average_1_5_15"]},
            "total_seconds": round(time.time() - t0, 1)}


def rule_on(curve: list[dict], key: str, patience: int, min_delta: float) -> dict:
    """The early-stopping rule applied to one recorded series: where it stops, which
    evaluation's weights it keeps, and what the oracle says about those."""
    scores = [c[key] for c in curve]
    i_stop = stop_index(scores, patience, min_delta)
    rule = PatienceRule(patience, min_delta)
    for x in scores[:None if i_stop is None else i_stop + 1]:
        rule.update(x)
    kept = rule.best_index
    return {"series": key, "stops_at_step": None if i_stop is None else curve[i_stop]["step"],
            "keeps_step": curve[kept]["step"],
            "oracle_held_out_kept": curve[kept]["oracle_held_out"],
            "oracle_in_domain_kept": curve[kept]["oracle_in_domain"],
            "reward_held_out_kept": curve[kept]["reward_held_out"]}


def summarise(curve: list[dict], patience: int, min_delta: float, judge: str, every: int) -> dict:
    oracle_held = [c["oracle_held_out"] for c in curve]
    best_oracle = max(range(len(curve)), key=lambda i: oracle_held[i])
    main = rule_on(curve, "judge", patience, min_delta)
    return {
        "early_stop": {"judge": judge, "patience": patience, "min_delta": min_delta,
                       "every": every, **main},
        # The same rule on the other held-out series, for comparison: the training reward
        # (what a run without a second judge would watch) and the oracle itself (the ideal).
        "rule_on_other_series": {k: rule_on(curve, k, patience, min_delta)
                                 for k in ("reward_held_out", "oracle_held_out")},
        "end": {"step": curve[-1]["step"], "oracle_held_out": oracle_held[-1],
                "reward_held_out": curve[-1]["reward_held_out"]},
        "oracle_best": {"step": curve[best_oracle]["step"],
                        "oracle_held_out": oracle_held[best_oracle]},
        "start": {"oracle_held_out": oracle_held[0], "reward_held_out": curve[0]["reward_held_out"]},
    }


def to_markdown(results: dict) -> str:
    a, s, m = results["args"], results["summary"], results["machine"]
    lines = [
        "# Over-optimisation on the tiny world: proxy reward against the oracle", "",
        f"Setting {a['setting']}, {len(results['train_log'])} steps, learning rate "
        f"{results['config']['learning_rate']:g}; evaluation every {a['every']} steps on "
        f"{a['per_split']} in-domain and {a['per_split']} held-out prompts (1 clip each, fixed "
        f"noise, {a['eval_ddim_steps']}-step chain). Proxy = tiny-hps (the training reward), "
        f"judge = {a['judge']}, oracle = the hidden rule's score.", "",
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable CPUs, load average at start "
        f"{m['load_average_1_5_15']}, at end {m['load_average_end']}; commit {m['git_commit']}."
        + (f" Note: {m['note']}" if m.get("note") else ""), "",
        "| step | proxy in-domain | proxy held-out | judge held-out | oracle in-domain "
        "| oracle held-out | all 3 correct held-out | temporal consistency held-out "
        "| travel held-out (share of width) / moved as prompted |",
        "|" + "---|" * 9]
    for c in results["curve"]:
        travel = (f"{c['travel_held_out']:.2f} / {c['motion_ok_held_out']:.0%}"
                  if "travel_held_out" in c else "-")
        lines.append(f"| {c['step']} | {c['reward_in_domain']:.4f} | {c['reward_held_out']:.4f} | "
                     f"{c['judge']:.4f} | {c['oracle_in_domain']:.3f} | "
                     f"{c['oracle_held_out']:.3f} | {c['all_ok_held_out']:.0%} | "
                     f"{c['temporal_consistency_held_out']:.3f} | {travel} |")
    e = s["early_stop"]

    def stop_text(r):
        return "never triggers" if r["stops_at_step"] is None else \
            f"stops at step {r['stops_at_step']}"

    lines += ["", f"Early stopping (judge {e['judge']} on held-out prompts, patience "
                  f"{e['patience']} evaluations): {stop_text(e)}, keeps the weights of step "
                  f"{e['keeps_step']}: held-out oracle {e['oracle_held_out_kept']:.3f} (start "
                  f"{s['start']['oracle_held_out']:.3f}, end of run {s['end']['oracle_held_out']:.3f}"
                  f", best {s['oracle_best']['oracle_held_out']:.3f} at step "
                  f"{s['oracle_best']['step']}).", ""]
    names = {"reward_held_out": "the training reward (tiny-hps) on the held-out prompts",
             "oracle_held_out": "the oracle's score on the held-out prompts (the ideal judge)"}
    for key, r in s.get("rule_on_other_series", {}).items():
        lines.append(f"- The same rule on {names[key]}: {stop_text(r)}, keeps step "
                     f"{r['keeps_step']}: held-out oracle {r['oracle_held_out_kept']:.3f}.")
    lines.append("")
    log = results["train_log"]
    if log:
        k = max(1, len(log) // 4)
        lines.append(f"Training reward (TAR-weighted, per step): first quarter mean "
                     f"{statistics.fmean(r['reward'] for r in log[:k]):.4f}, last quarter mean "
                     f"{statistics.fmean(r['reward'] for r in log[-k:]):.4f}.")
    lines += ["", f"Total wall time {results['total_seconds']:.0f} s.", ""]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> Path:
    from matplotlib.figure import Figure

    c = results["curve"]
    steps = [x["step"] for x in c]
    fig = Figure(figsize=(7, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    for split, style in (("in_domain", "-"), ("held_out", "--")):
        ax1.plot(steps, [x[f"reward_{split}"] for x in c], style, color="tab:blue",
                 label=f"proxy (tiny-hps), {split}")
        ax2.plot(steps, [x[f"oracle_{split}"] for x in c], style, color="tab:red",
                 label=f"oracle score, {split}")
    ax2.plot(steps, [x["judge"] for x in c], ":", color="tab:green",
             label=f"judge ({results['args']['judge']}), held_out")
    stop = results["summary"]["early_stop"]["stops_at_step"]
    for ax in (ax1, ax2):
        if stop is not None:
            ax.axvline(stop, color="0.5", lw=1)
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize=7)
    ax1.set_ylabel("proxy reward")
    ax2.set_ylabel("oracle / judge")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
        a = results["args"]
        results["summary"] = summarise(results["curve"], args.patience, args.min_delta,
                                       a["judge"], a["every"])
        a.update(patience=args.patience, min_delta=args.min_delta)
        out = Path(args.render).with_suffix("")
    else:
        results = run(args)
        out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    md = to_markdown(results)
    out.with_suffix(".md").write_text(md)
    plot(results, out.with_suffix(".png"))
    print(md)
    return results


if __name__ == "__main__":
    main()
