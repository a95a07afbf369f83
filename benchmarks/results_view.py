"""The committed benchmark results, read back as the tables of the book's chapter 8.

``benchmarks/ablations.py``, ``cost.py``, ``overoptimisation.py`` and ``edit_vs_sample.py`` take
tens of minutes of CPU and write their measurements to ``benchmarks/results/*.json``. This module
reads those files and turns them into paired comparisons with 95% bootstrap intervals
(:func:`ivlite.stats.paired_gain`) without running anything heavy:

- files: :func:`results_dir`, :func:`load_results`, :func:`evaluation_text`,
  :func:`provenance_markdown` (where and how each file was measured);
- paired comparisons of two settings scored on the same clips (the same prompt and noise):
  :func:`clip_scores`, :func:`gain`, :func:`gains_markdown`, :func:`gain_panels` (the intervals
  :func:`ivlite.viz.interval_chart` draws);
- the cost of a step: :func:`predicted_step_forwards`, :func:`step_excess` (each timed step
  against the prediction from its parts, paired per step), :func:`predicted_ratio`,
  :func:`ratio_interval`, :func:`cost_markdown`;
- over-optimisation: :func:`curve_gains` (every evaluation of a long run against its start,
  paired per clip), :func:`early_stop_rules`, :func:`stop_markdown`;
- edits against samples: :func:`edit_sample_markdown`; and the scripts' own renderings,
  :func:`edit_vs_sample_markdown`, :func:`target_lines`, :func:`demo_lr_markdown`.

The files are read from ``benchmarks/results/`` beside this module, or from ``$IVLITE_RESULTS``.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ivlite.method.settings import edit_step_count
from ivlite.stats import PairedGain, paired_gain

RESULTS_ENV = "IVLITE_RESULTS"
FILES = {
    "ablations": "ablations_tiny",   # the methods at equal compute, SegVR and TAR: one budget
    "cost": "cost_tiny",
    "overoptimisation": "overoptimisation_tiny",
    "edit_vs_sample": "edit_vs_sample_tiny",
}
"""Short names of the committed result files (``benchmarks/results/<stem>.json``)."""

SPLITS = ("in_domain", "held_out", "out_of_domain")
SPLIT_NAMES = {"in_domain": "in-domain", "held_out": "held-out", "out_of_domain": "out-of-domain"}
LABELS = {"base": "base model", "instructvideo": "InstructVideo", "draft1": "DRaFT-1",
          "draft1-d50": "DRaFT-1 (D = 50)", "full-backprop": "full backprop",
          "no-segvr-one": "one frame", "no-segvr-all": "all 16 frames", "no-tar": "no TAR",
          "lambda-0.5": "lambda 0.5", "lambda-2": "lambda 2"}
"""How the book names the settings of :data:`benchmarks.settings.SETTINGS`."""
METRICS = {"reward": "proxy reward", "oracle_score": "oracle score", "judge": "frame quality",
           "travel": "travel", "motion_ok": "prompted motion",
           "temporal_consistency": "temporal consistency"}
"""Per-clip scores of :func:`ivlite.evaluation.evaluate_splits` and the book's names for them."""


def label(name: str) -> str:
    return LABELS.get(name, name)


# ----------------------------------------------------------------------------- files


def results_dir() -> Path:
    """The folder holding the benchmark results: ``$IVLITE_RESULTS`` if set, else the
    ``results/`` folder beside this module."""
    env = os.environ.get(RESULTS_ENV)
    return Path(env) if env else Path(__file__).resolve().parent / "results"


def load_results(name: str, folder: str | Path | None = None) -> dict:
    """One results file as a dict: ``name`` is a key of :data:`FILES` or a file stem. The file
    name it was read from is added as ``"_file"``."""
    stem = FILES.get(name, name)
    path = Path(folder) if folder is not None else results_dir()
    data = json.loads((path / f"{stem}.json").read_text())
    data["_file"] = f"{stem}.json"
    return data


def budget_text(results: dict) -> str:
    """The training budget per setting of an ablation file ("-" for other files)."""
    b = results.get("budget")
    if not b:
        return "-"
    if b.get("steps"):
        return f"{b['steps']} optimizer steps"
    return f"{b['seconds']:g} {results['args'].get('clock', 'cpu').upper()} seconds"


def provenance_markdown(files: Sequence[dict]) -> str:
    """Where each file was measured: a markdown table of file, commit, machine, load average
    (1 min, start -> end), budget and wall time; then each file's note, quoted."""
    lines = ["| file | commit | machine | load (1 min) start -> end | budget | wall time |",
             "|---|---|---|---|---|---|"]
    notes = []
    for f in files:
        m, a = f.get("machine", {}), f.get("args", {})
        start, end = m.get("load_average_1_5_15"), m.get("load_average_end")
        load = "-" if not start else f"{start[0]:g}" + (f" -> {end[0]:g}" if end else "")
        lines.append(f"| `{f.get('_file', '-')}` | `{m.get('git_commit', '-')}` | "
                     f"{m.get('cpu', '-')}, {m.get('usable_cpus')} CPUs, torch "
                     f"{m.get('torch', '-')} | {load} | {budget_text(f)} | "
                     f"{f.get('total_seconds', 0):.0f} s |")
        note = m.get("note") or a.get("note")
        if note:
            notes.append(f"- `{f.get('_file', '-')}`: *{note}*")
    return "\n".join(lines + [""] + notes)


def evaluation_text(results: dict) -> str:
    """One line: what an ablation file trained and how it scored each setting."""
    a = results["args"]
    return (f"{len(results['settings'])} settings, {budget_text(results)} of training each;\n"
            f"{a['per_split'] * a['seeds']} clips per split ({a['per_split']} prompts x "
            f"{a['seeds']} seeds) from noise, {a['eval_ddim_steps']} DDIM steps; paired per "
            f"{paired_by(results)}")


# ----------------------------------------------------------------------------- paired gains


def clip_scores(results: dict, setting: str, split: str, metric: str) -> list[float]:
    """One setting's score of every clip of a split, in clip order (booleans as 0/1)."""
    entry = results["settings"][setting]["eval"]["splits"][split]
    return [float(c[metric]) for c in _rows(entry)]


def _rows(entry: dict) -> list[dict]:
    """A split's per-clip rows; a file scored without them pairs per prompt instead (one row
    per prompt: its clips' mean scores)."""
    if "per_clip" in entry:
        return entry["per_clip"]
    return [{"prompt": p, "seed": None, **scores} for p, scores in entry["per_prompt"].items()]


def _pooled(results: dict, setting: str, splits: Sequence[str]) -> dict:
    """A setting's evaluation with the clips of ``splits`` as one split, ``"pooled"``."""
    e = results["settings"][setting]["eval"]["splits"]
    return {"splits": {"pooled": {"per_clip": [c for s in splits for c in _rows(e[s])]}}}


def available(results: dict, metrics: Sequence[str]) -> list[str]:
    """The ``metrics`` an ablation file holds for every clip (or prompt) of the base model."""
    rows = _rows(results["settings"]["base"]["eval"]["splits"][SPLITS[0]])
    return [m for m in metrics if all(m in r for r in rows)]


def paired_by(results: dict) -> str:
    """What a file's comparisons pair: ``"clip"`` (prompt and noise) or ``"prompt"``."""
    entry = results["settings"]["base"]["eval"]["splits"][SPLITS[0]]
    return "clip" if "per_clip" in entry else "prompt"


def gain(results: dict, setting: str, metric: str, *, against: str = "base",
         splits: Sequence[str] = SPLITS) -> PairedGain:
    """``setting``'s score minus ``against``'s, paired per clip (the same prompt and the same
    noise; :func:`benchmarks.paired.paired_gains` checks it), pooled over ``splits``: the mean
    and its 95% bootstrap interval."""
    from benchmarks.paired import paired_gains

    gains = paired_gains(_pooled(results, against, splits), _pooled(results, setting, splits),
                         (metric,))["pooled"]
    if metric not in gains:
        raise KeyError(f"{results.get('_file', 'results')}: no per-clip {metric!r} for "
                       f"{setting} and {against}")
    return gains[metric]


def gains_markdown(results: dict, comparisons: Sequence[tuple[str, str]],
                   metrics: Sequence[str], splits: Sequence[str] = SPLITS) -> str:
    """A markdown table, one row per comparison and split: ``setting`` minus ``against`` per
    metric, each ``mean [95% interval]`` over the split's clips, and the optimizer steps each
    setting's budget bought."""
    rows = results["settings"]
    head = "| comparison | steps | split | " + " | ".join(METRICS[m] for m in metrics) + " |"
    lines = [head, "|" + "---|" * (3 + len(metrics))]
    for setting, against in comparisons:
        steps = f"{rows[setting]['steps']}" + (f" / {rows[against]['steps']}"
                                              if rows[against]["steps"] else "")
        for k, split in enumerate(splits):
            cells = [gain(results, setting, m, against=against, splits=[split]).text()
                     for m in metrics]
            name = f"{label(setting)} - {label(against)}" if k == 0 else ""
            lines.append(f"| {name} | {steps if k == 0 else ''} | {SPLIT_NAMES[split]} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_labels(comparisons: Sequence[tuple[str, str]]) -> list[str]:
    """``"InstructVideo - base model"``: the book's name of each (setting, against) pair."""
    return [f"{label(s)} - {label(a)}" for s, a in comparisons]


def means_line(results: dict, setting: str, metrics: Sequence[str],
               splits: Sequence[str] = SPLITS) -> str:
    """A setting's mean of each metric over the clips of ``splits``, on one line."""
    def mean(metric: str) -> float:
        return statistics.fmean(x for s in splits for x in clip_scores(results, setting, s,
                                                                         metric))

    cells = ", ".join(f"{METRICS[m]} {mean(m):.2f}" for m in metrics)
    where = "all splits" if len(splits) == len(SPLITS) else ", ".join(
        SPLIT_NAMES[s] for s in splits)
    return f"{label(setting)}, {where}: {cells}"


def steps_line(results: dict, names: Sequence[str]) -> str:
    """The optimizer steps each setting's budget bought, on one line."""
    steps = ", ".join(f"{label(n)} {results['settings'][n]['steps']}" for n in names)
    return f"steps bought: {steps}"


def gain_panels(results: dict, comparisons: Sequence[tuple[str, str]],
                metrics: Sequence[str], splits: Sequence[Sequence[str]] = tuple(
                    (s,) for s in SPLITS)) -> dict[str, list[list[PairedGain]]]:
    """The intervals of a forest plot (:func:`ivlite.viz.interval_chart`): per metric, per
    comparison, one :func:`gain` per group of ``splits``."""
    return {METRICS[m]: [[gain(results, s, m, against=a, splits=g) for g in splits]
                         for s, a in comparisons] for m in metrics}


def target_lines(results: dict) -> list[str]:
    """An ablation file's verdict on InstructVideo's in-domain gain against each full-chain
    baseline's (target: at least twice the baseline's gain at an equal budget of seconds)."""
    out = []
    for key, t in results.get("targets", {}).items():
        other = key.split("_vs_")[1]
        ratio = "-" if t["ratio"] is None else f"{t['ratio']:.2f}x"
        met = {True: "met", False: "missed", None: "n/a"}[t["met"]]
        out.append(f"vs {other}: InstructVideo {t['instructvideo_gain']:+.4f}, {other} "
                   f"{t[other + '_gain']:+.4f}, ratio {ratio}: {met}")
    return out


# ----------------------------------------------------------------------------- cost


def predicted_step_forwards(row: dict, parts: dict | None = None) -> float:
    """A cost benchmark row's step as predicted from its parts, in plain UNet forwards:
    n_nograd + K g + (decode + reward) / forward, with g = the gradient-carrying evaluation
    (forward + backward, checkpointed) / a plain forward. ``parts``: one round of parts timed
    right after one step (default: the medians over the rounds)."""
    p, exp = parts or row["parts"], row["unet_calls_expected"]
    forward = p["unet_forward_nograd"]["cpu"]
    g = p["unet_grad_fwd_bwd"]["cpu"] / forward
    rest = (p["vae_decode_fwd_bwd"]["cpu"] + p["reward_fwd_bwd"]["cpu"]) / forward
    return exp["no_grad"] + exp["grad"] * g + rest


def step_forwards(row: dict) -> tuple[list[float], list[float]]:
    """Per timed step: (predicted, measured) in plain UNet forwards, each divided by the plain
    forward timed right after that step (a shared machine's speed drifts between steps)."""
    rounds = row["parts_rounds"]
    steps = row["step_cpu_s_all"]
    if len(rounds) != len(steps):
        raise ValueError(f"{row.get('setting')}: {len(steps)} timed steps but {len(rounds)} "
                         "rounds of parts")
    predicted = [predicted_step_forwards(row, r) for r in rounds]
    measured = [s / r["unet_forward_nograd"]["cpu"] for s, r in zip(steps, rounds)]
    return predicted, measured


def step_excess(row: dict) -> PairedGain:
    """Measured minus predicted step, in plain forwards, paired per timed step."""
    predicted, measured = step_forwards(row)
    return paired_gain(predicted, measured)


def predicted_ratio(g: float, *, tau: float = 0.6, ddim_steps: int = 20, grad_steps: int = 1,
                    other_steps: int = 50) -> float:
    """Predicted cost of an editing step over a DRaFT-K step (full chain of ``other_steps``):
    (int(tau D) - K + K g) / (other_steps - K + K g); (11 + g) / (49 + g) for the paper's
    defaults against DRaFT-1 over 50 steps."""
    n = min(edit_step_count(tau, ddim_steps), ddim_steps)
    return (n - grad_steps + grad_steps * g) / (other_steps - grad_steps + grad_steps * g)


def ratio_interval(cost: dict, a: str, b: str, *, resamples: int = 10_000,
                   seed: int = 0) -> tuple[float, float, float]:
    """Setting ``a``'s mean step over ``b``'s, both in plain forwards, with a 95% bootstrap
    interval (each setting's timed steps resampled on their own: they ran in separate
    processes, so nothing pairs them)."""
    x = np.asarray(step_forwards(cost["settings"][a])[1])
    y = np.asarray(step_forwards(cost["settings"][b])[1])
    rng = np.random.default_rng(seed)
    xs = x[rng.integers(0, len(x), (resamples, len(x)))].mean(axis=1)
    ys = y[rng.integers(0, len(y), (resamples, len(y)))].mean(axis=1)
    low, high = np.quantile(xs / ys, [0.025, 0.975])
    return float(x.mean() / y.mean()), float(low), float(high)


def cost_markdown(cost: dict, names: Sequence[str] | None = None) -> str:
    """One row per setting: UNet evaluations (without / with gradient, counted by a hook),
    the step predicted from its parts and the measured step (both in plain forwards, mean over
    the timed steps) and measured minus predicted with its 95% interval."""
    lines = ["| setting | UNet evals | predicted | measured | measured - predicted |",
             "|---|---|---|---|---|"]
    for name in names or cost["settings"]:
        r = cost["settings"][name]
        h = r["unet_calls_hook"]
        predicted, measured = step_forwards(r)
        lines.append(f"| {label(name)} | {h['no_grad']} + {h['grad']} | "
                     f"{statistics.fmean(predicted):.1f} | {statistics.fmean(measured):.1f} | "
                     f"{step_excess(r).text(2)} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- over-optimisation


CURVE_KEYS = {"reward": "reward_{}", "oracle_score": "oracle_{}", "judge": "judge_{}",
              "temporal_consistency": "temporal_consistency_{}"}


def curve_gains(oo: dict, split: str, metric: str) -> list[PairedGain | float]:
    """Every evaluation of an over-optimisation run against its first (step 0), paired per
    clip (the same prompts and noise at every evaluation). A curve recorded without per-clip
    scores gives the difference of the means alone (a float, no interval)."""
    curve, key = oo["curve"], f"clips_{split}"
    if key in curve[0]:
        start = curve[0][key][metric]
        return [paired_gain(start, c[key][metric]) for c in curve]
    mean = CURVE_KEYS[metric].format(split)
    return [c[mean] - curve[0][mean] for c in curve]


def interval_text(x: PairedGain | float) -> str:
    """``+0.081 [+0.032, +0.130]``, or the bare difference where there is no interval."""
    return x.text() if isinstance(x, PairedGain) else f"{x:+.3f} (no interval)"


def early_stop_rules(oo: dict, patience: int, min_delta: float = 0.0,
                     series: Sequence[str] = ("judge", "reward_held_out", "oracle_held_out")
                     ) -> dict[str, dict[str, Any]]:
    """The trainer's patience rule (:class:`ivlite.early_stop.PatienceRule`) applied to each
    recorded held-out series of an over-optimisation curve: where it stops (None: never) and
    which evaluation's weights it keeps (the best so far)."""
    from ivlite.early_stop import PatienceRule, stop_index

    curve = oo["curve"]
    out = {}
    for key in series:
        scores = [c[key] for c in curve]
        i_stop = stop_index(scores, patience, min_delta)
        rule = PatienceRule(patience, min_delta)
        for x in scores[:None if i_stop is None else i_stop + 1]:
            rule.update(x)
        out[key] = {"stops_at_step": None if i_stop is None else curve[i_stop]["step"],
                    "keeps_step": curve[rule.best_index]["step"],
                    "keeps_index": rule.best_index}
    return out


STOP_SERIES = {"judge": "frame quality", "reward_held_out": "proxy reward",
               "oracle_held_out": "oracle score"}


def stop_markdown(oo: dict, patience: int) -> str:
    """Per early-stopping series (all on the held-out prompts): where the rule stops, the step
    whose weights it keeps, and the kept weights' held-out oracle score against the start's,
    paired per clip."""
    lines = ["| watching (held-out) | stops at | keeps step | oracle score, kept - start |",
             "|---|---|---|---|"]
    oracle = curve_gains(oo, "held_out", "oracle_score")
    for key, r in early_stop_rules(oo, patience).items():
        stop = "never" if r["stops_at_step"] is None else str(r["stops_at_step"])
        lines.append(f"| {STOP_SERIES[key]} | {stop} | {r['keeps_step']} | "
                     f"{interval_text(oracle[r['keeps_index']])} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- edit vs sample


def edit_sample_markdown(ev: dict) -> str:
    """Per trained adapter: optimizer steps, and its gain over the base model on edits (what
    training optimises) and on samples from noise (what is evaluated), paired per clip."""
    lines = ["| adapter | steps | edit gain | sample gain |", "|---|---|---|---|"]
    for name, r in ev["settings"].items():
        cells = [paired_gain([0.0] * len(r[f"{k}_per_clip"]), r[f"{k}_per_clip"]).text()
                 if f"{k}_per_clip" in r else f"{r[k]['mean']:+.3f} (sd {r[k]['std']:.3f})"
                 for k in ("edit_gain", "sample_gain")]
        lines.append(f"| {label(r['setting'])} | {r['steps']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def edit_vs_sample_markdown(results: dict) -> str:
    """``benchmarks/edit_vs_sample.py``'s file as markdown: per trained row the steps, training
    reward, edit gain, sample gain (and at LoRA scale 0.5); then the relative change of the
    guided noise prediction per timestep, one column per row."""
    a, m, base = results["args"], results["machine"], results["base"]
    lines = [
        "# Edit reward against sample reward (tiny world)", "",
        f"Each row trained for {a['budget_seconds']:g} CPU seconds from the shipped tiny world. "
        f"Edit reward: tiny-hps of {a['eval_clips']} fresh in-domain renders edited from "
        f"t_start = {results['t_start']} (no gradient, UNet in eval mode); sample reward: "
        f"{a['eval_clips']} in-domain prompts from pure noise, 20 DDIM steps. Both on SegVR's "
        "first frames; gains are paired differences to the base model (same clips, same noise).",
        "", f"Machine: {m['cpu']}, load average at start {m['load_average_1_5_15']}, at end "
        f"{m['load_average_end']}; commit {m['git_commit']}."
        + (f" Note: {m['note']}" if m.get("note") else ""), "",
        f"Base model: edit reward {base['edit_reward']['mean']:.4f}, sample reward "
        f"{base['sample_reward']['mean']:.4f}.", "",
        "| row | steps | train R (first -> last 25%) | edit gain | sample gain "
        "| sample gain at LoRA scale 0.5 |", "|---|---|---|---|---|---|"]
    rows = results["settings"]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['steps']} | {r['train_reward_first_quarter']:.3f} -> "
            f"{r['train_reward_last_quarter']:.3f} | {r['edit_gain']['mean']:+.4f} ± "
            f"{r['edit_gain']['std']:.4f} | {r['sample_gain']['mean']:+.4f} ± "
            f"{r['sample_gain']['std']:.4f} | {r['sample_gain_lora_half']['mean']:+.4f} |")
    names = list(rows)
    ts = list(rows[names[0]]["eps_change"]) if names else []
    lines += ["", "## Where the adapter acts: relative change of the guided noise prediction", "",
              "||eps_tuned - eps_base|| / ||eps_base|| on in-domain renders noised to t.", "",
              "| t | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for t in ts:
        lines.append(f"| {t} | " + " | ".join(f"{rows[n]['eps_change'][t]:.4f}" for n in names)
                     + " |")
    lines += ["", f"Total wall time {results['total_seconds']:.0f} s.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the demo


def demo_lr_markdown(results: dict) -> str:
    """``benchmarks/demo_lr.py``'s file as a table (per rate, scorer and split: before -> after of
    the demo's four means) and one line per rate on the demo's target, by either scorer."""
    from ivlite.world.demo import REPORTED

    rows = ["| learning rate | scored by | split | proxy reward | oracle score | frame quality | "
            "temporal consistency |", "|---|---|---|---|---|---|---|"]
    for lr, r in results["runs"].items():
        for scorer, metrics in (("demo", r["demo"]), ("check", r["check_as_metrics"])):
            for split, m in metrics["splits"].items():
                cells = [f"{m['before'][k]['mean']:.3f} -> {m['after'][k]['mean']:.3f}"
                         for k in REPORTED]
                rows.append(f"| {lr} | {scorer} | {split} | " + " | ".join(cells) + " |")
    lines = ["\n".join(rows), ""]
    for lr, r in results["runs"].items():
        lines.append(f"- {lr}, {r['steps']} steps in {r['seconds']:.0f} s: demo: "
                     + "; ".join(r["demo_target_lines"]) + ". Check: "
                     + "; ".join(r["check_target_lines"]) + ".")
    return "\n".join(lines) + "\n"
