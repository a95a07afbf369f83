"""The committed benchmark results, read back: loaders, tables, figures and cheap live checks.

``benchmarks/ablations.py``, ``benchmarks/cost.py`` and ``benchmarks/overoptimisation.py`` take
tens of minutes of CPU and write their measurements to ``benchmarks/results/*.json`` (with a
markdown rendering next to each). This module reads those files for the book's chapter 8 and
turns them into tables and figures without running anything heavy:

- files: :func:`results_dir`, :func:`load_results`, :func:`provenance` / :func:`provenance_markdown`
  (which commit, machine, load and note each file records);
- the ablations: :func:`paired_deltas` (per-prompt differences to the base model, same prompts and
  noise), :func:`quarter_means` (the training reward early and late, with standard errors),
  :func:`comparison_markdown` (one row per setting), :func:`target_lines` (InstructVideo against
  the full-chain baselines at an equal budget of seconds);
- the cost of a step: :func:`unet_calls_by_config` (UNet evaluations per step from each setting's
  config, live), :func:`predicted_step_forwards`, :func:`predicted_ratio` and
  :func:`cost_markdown`; :func:`step_sensitivity` (how much one DDIM step's output moves per unit
  change of its noise prediction, live from the scheduler);
- the demo at several learning rates: :func:`demo_lr_markdown`;
- over-optimisation: :func:`early_stop_rules` (the trainer's patience rule applied afresh to the
  recorded curve) and :func:`curve_markdown`;
- figures: :func:`plot_cost`, :func:`plot_deltas`, :func:`plot_training_rewards`,
  :func:`plot_overoptimisation`, and :func:`explore_figure` / :func:`static_explore_figure`
  (tau, D and lambda_tar: predicted cost and TAR weights); :func:`expected_pick_weight` (the
  mean TAR weight of a frame SegVR picks).

The files are read from ``benchmarks/results/`` beside this module, or from ``$IVLITE_RESULTS``.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

from ivlite.method.settings import edit_step_count

RESULTS_ENV = "IVLITE_RESULTS"
FILES = {
    "ablations": "ablations_tiny",
    "baselines_200s": "ablations_tiny_baselines_200s",
    "baselines_lr2e-4": "ablations_tiny_baselines_lr2e-4",
    "cost": "cost_tiny",
    "overoptimisation": "overoptimisation_tiny",
    "overoptimisation_lr2e-4": "overoptimisation_tiny_lr2e-4",
    "edit_vs_sample": "edit_vs_sample_tiny",
    # the same experiments on the base model of run C (EMA at step 4700)
    "baselines_model_4700": "ablations_tiny_model_4700_baselines_lr1e-3",
    "edit_vs_sample_model_4700_lr1e-3": "edit_vs_sample_tiny_model_4700_lr1e-3",
    "edit_vs_sample_model_4700_lr2e-4": "edit_vs_sample_tiny_model_4700_lr2e-4",
    "overoptimisation_model_4700": "overoptimisation_tiny_model_4700_lr1e-3",
    "ablations_model_4700": "ablations_tiny_model_4700_lr1e-3",
    # and on the model shipped now, run Q2 (EMA at step 13100)
    "baselines_model_q2": "ablations_tiny_model_q2_baselines_lr1e-3",
    "ablations_model_q2": "ablations_tiny_model_q2_lr1e-3",
    "edit_vs_sample_model_q2": "edit_vs_sample_tiny_model_q2_lr1e-3",
    "overoptimisation_model_q2": "overoptimisation_tiny_model_q2_lr1e-3",
    "tar_model_q2": "ablations_tiny_model_q2_tar_lr1e-3",
    # ivlite demo on the shipped model at several learning rates, each adapter scored twice
    "demo_lr": "demo_lr_tiny",
    "demo_lr_seed1": "demo_lr_tiny_seed1",   # the preset's rate, other fine-tuning seeds
    "demo_lr_seed2": "demo_lr_tiny_seed2",
}
"""Short names of the committed result files (``benchmarks/results/<stem>.json``)."""

SPLITS = ("in_domain", "held_out", "out_of_domain")
SPLIT_NAMES = {"in_domain": "in-domain", "held_out": "held-out", "out_of_domain": "out-of-domain"}


# ----------------------------------------------------------------------------- files


def results_dir() -> Path:
    """The folder holding the benchmark results: ``$IVLITE_RESULTS`` if set, else the
    ``results/`` folder beside this module."""
    env = os.environ.get(RESULTS_ENV)
    return Path(env) if env else Path(__file__).resolve().parent / "results"


def load_results(name: str, folder: str | Path | None = None) -> dict:
    """One results file as a dict: ``name`` is a key of :data:`FILES` or a file stem. The path
    it was read from is added as ``"_file"`` (the file name only)."""
    stem = FILES.get(name, name)
    path = Path(folder) if folder is not None else results_dir()
    data = json.loads((path / f"{stem}.json").read_text())
    data["_file"] = f"{stem}.json"
    return data


def budget_text(results: dict) -> str:
    """The training budget per setting of an ablation file, or the run length of another file."""
    b = results.get("budget")
    if b:
        if b.get("steps"):
            return f"{b['steps']} optimizer steps"
        clock = results.get("args", {}).get("clock", "cpu")
        return f"{b['seconds']:g} {clock.upper()} s of training per setting"
    a = results.get("args", {})
    if "every" in a:
        return f"{a['steps']} steps, evaluated every {a['every']}"
    if "warmup" in a:
        return f"{a['steps']} timed steps after {a['warmup']} warm-up"
    return "-"


def provenance(results: dict) -> dict[str, Any]:
    """What a results file says about where and how it was measured."""
    m = results.get("machine", {})
    a = results.get("args", {})
    return {"file": results.get("_file", "-"), "benchmark": results.get("benchmark", "-"),
            "commit": m.get("git_commit", "-"), "cpu": m.get("cpu", "-"),
            "usable_cpus": m.get("usable_cpus"), "torch_threads": m.get("torch_threads"),
            "load_start": m.get("load_average_1_5_15"), "load_end": m.get("load_average_end"),
            "torch": m.get("torch", "-"), "budget": budget_text(results),
            "learning_rate": a.get("learning_rate"),
            "total_seconds": results.get("total_seconds"),
            "note": m.get("note") or a.get("note") or ""}


def provenance_markdown(files: Iterable[dict]) -> str:
    """A markdown table: file, commit, machine, load average (1 min, start -> end), budget,
    wall time; then each file's note, quoted."""
    rows = [provenance(f) for f in files]
    lines = ["| file | commit | machine | load (1 min) start -> end | budget | wall time |",
             "|---|---|---|---|---|---|"]
    for p in rows:
        load = "-" if not p["load_start"] else \
            f"{p['load_start'][0]:g} -> {p['load_end'][0]:g}" if p["load_end"] else \
            f"{p['load_start'][0]:g}"
        lines.append(f"| `{p['file']}` | `{p['commit']}` | {p['cpu']}, {p['usable_cpus']} CPUs, "
                     f"torch {p['torch']} | {load} | {p['budget']} | "
                     f"{p['total_seconds']:.0f} s |")
    lines.append("")
    for p in rows:
        if p["note"]:
            lines.append(f"- `{p['file']}`: *{p['note']}*")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- ablations


def paired_deltas(results: dict, setting: str, split: str = "in_domain",
                  metric: str = "reward") -> dict[str, float]:
    """Per prompt, ``setting``'s score minus the base model's (same prompt, same noise).

    ``metric``: ``reward`` (the training reward on SegVR's first frames), ``judge`` or
    ``oracle_score``. The mean over prompts is the file's ``delta_vs_base``.
    """
    settings = results["settings"]
    if "base" not in settings:
        raise KeyError(f"{results.get('_file', 'results')} has no base row to pair with")
    mine = settings[setting]["eval"]["splits"][split]["per_prompt"]
    base = settings["base"]["eval"]["splits"][split]["per_prompt"]
    return {p: mine[p][metric] - base[p][metric] for p in mine}


def quarter_means(rewards: Sequence[float]) -> dict[str, float]:
    """Mean and standard error of the first and the last quarter of a per-step series.

    ``n`` is the number of steps in each quarter (at least 1); ``rise`` the difference of the
    means and ``rise_se`` its standard error (the two quarters taken as independent samples).
    """
    rewards = [float(r) for r in rewards]
    if not rewards:
        raise ValueError("no rewards")
    k = max(1, len(rewards) // 4)
    first, last = rewards[:k], rewards[-k:]

    def se(xs):
        return statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan")

    out = {"n": k, "first": statistics.fmean(first), "first_se": se(first),
           "last": statistics.fmean(last), "last_se": se(last)}
    out["rise"] = out["last"] - out["first"]
    out["rise_se"] = math.hypot(out["first_se"], out["last_se"])
    return out


def training_reward(row: dict) -> dict[str, Any]:
    """A setting's training reward early and late: from its per-step log when the file has one
    (:func:`quarter_means`), else the file's own summary (step 1 -> last quarter)."""
    log = row.get("train_log")
    if log:
        return {"source": "quarters", **quarter_means([r["reward"] for r in log])}
    if not row.get("steps"):
        return {"source": None}
    return {"source": "step 1", "first": row["train_reward_first"],
            "last": row["train_reward_last_quarter"]}


def _signed(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:+.{digits}f}"


def comparison_markdown(results: dict, settings: Sequence[str] | None = None) -> str:
    """One row per setting: steps done in the budget, CPU s per step, UNet calls per step, the
    training reward early -> late, and the paired differences to the base model of the sampled
    reward per split (with how many prompts went up), of the judge and of the oracle score."""
    rows = results["settings"]
    names = [n for n in (settings or rows) if n in rows]
    n_prompts = len(next(iter(rows.values()))["eval"]["splits"]["in_domain"]["per_prompt"])
    lines = ["| setting | steps | CPU s/step | UNet calls/step | train R early -> late "
             "| Δ reward in-domain (up) | Δ reward held-out (up) "
             "| Δ reward out-of-domain (up) | Δ judge in-domain | Δ oracle in-domain |",
             "|" + "---|" * 10]
    for name in names:
        r = rows[name]
        cells = [f"**{name}**" if name == "instructvideo" else name, str(r["steps"]),
                 "-" if not r.get("cpu_seconds_per_step") else f"{r['cpu_seconds_per_step']:.2f}",
                 str(r.get("unet_calls_per_step", "-"))]
        tr = training_reward(r)
        if tr["source"] == "quarters":
            cells.append(f"{tr['first']:.3f} -> {tr['last']:.3f}")
        elif tr["source"] == "step 1":
            cells.append(f"(step 1) {tr['first']:.3f} -> {tr['last']:.3f}")
        else:
            cells.append("-")
        for split in SPLITS:
            d = paired_deltas(results, name, split)
            up = sum(v > 0 for v in d.values())
            mean = statistics.fmean(d.values())
            cells.append(f"{mean:+.4f} ({up}/{n_prompts})" if name != "base" else "0")
        for metric in ("judge", "oracle_score"):
            d = paired_deltas(results, name, "in_domain", metric)
            cells.append(_signed(statistics.fmean(d.values()), 3) if name != "base" else "0")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_lines(results: dict) -> list[str]:
    """The file's verdict on InstructVideo's in-domain gain against each full-chain baseline's
    (target: at least twice the baseline's gain at an equal budget of seconds)."""
    out = []
    for key, t in results.get("targets", {}).items():
        other = key.split("_vs_")[1]
        ratio = "-" if t["ratio"] is None else f"{t['ratio']:.2f}x"
        met = {True: "met", False: "missed", None: "n/a"}[t["met"]]
        out.append(f"vs {other}: InstructVideo {t['instructvideo_gain']:+.4f}, {other} "
                   f"{t[other + '_gain']:+.4f}, ratio {ratio}: {met}")
    return out


def steps_table(results: dict, settings: Sequence[str], split: str = "in_domain") -> str:
    """The settings sorted by the optimizer steps their budget bought: UNet calls per step, steps,
    the paired oracle-score gain over the base model and the samples' temporal consistency on
    ``split`` (plain text, one line per setting, the base model's consistency in the header)."""
    rows = results["settings"]

    def consistency(name: str) -> float:
        return rows[name]["eval"]["splits"][split]["temporal_consistency"]["mean"]

    lines = [f"{'setting':14s} {'UNet calls':>10s} {'steps':>5s} {'oracle gain':>11s} "
             f"{'consistency':>11s}   ({SPLIT_NAMES[split]}; the base model's consistency "
             f"{consistency('base'):.3f})"]
    for name in sorted(settings, key=lambda n: -rows[n]["steps"]):
        gain = rows[name]["delta_vs_base"][split]["oracle_score"]
        lines.append(f"{name:14s} {rows[name]['unet_calls_per_step']:10d} {rows[name]['steps']:5d} "
                     f"{gain:+11.3f} {consistency(name):11.3f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- cost


def unet_calls_by_config(names: Iterable[str], base=None) -> dict[str, dict[str, Any]]:
    """Per setting, from its config alone: the chain (edit or full), D, tau, the timesteps the
    chain visits (:func:`ivlite.method.ddim.chain_timesteps` on ModelScope's DDIM schedule), t_start,
    and the guided UNet evaluations of a step without / with gradient
    (:func:`benchmarks.settings.expected_unet_calls`)."""
    from benchmarks.settings import expected_unet_calls, setting_config
    from ivlite.method.ddim import chain_timesteps
    from ivlite.models import modelscope_scheduler

    scheduler = modelscope_scheduler()
    out = {}
    for name in names:
        cfg = setting_config(name, base)
        tau = 1.0 if cfg.chain == "full" else cfg.tau
        steps = chain_timesteps(scheduler, cfg.ddim_steps, tau)
        out[name] = {"chain": cfg.chain, "ddim_steps": cfg.ddim_steps, "tau": cfg.tau,
                     "timesteps": len(steps), "t_start": int(steps[0]),
                     "start": "noise" if cfg.chain == "full" else "noised clip",
                     **expected_unet_calls(cfg)}
    return out


def predicted_step_forwards(row: dict) -> float:
    """A cost benchmark row's step as predicted from its parts, in units of one plain UNet
    forward: n_nograd + K g + (decode + reward + optimizer) / forward, with g = the gradient-
    carrying evaluation (forward + backward, checkpointed) / a plain forward."""
    p, exp = row["parts"], row["unet_calls_expected"]
    forward = p["unet_forward_nograd"]["cpu"]
    rest = (p["vae_decode_fwd_bwd"]["cpu"] + p["reward_fwd_bwd"]["cpu"]
            + p["optimizer_and_grad_norm"]["cpu"]) / forward
    return exp["no_grad"] + exp["grad"] * row["g"] + rest


def predicted_ratio(g: float, *, tau: float = 0.6, ddim_steps: int = 20, grad_steps: int = 1,
                    other_steps: int = 50) -> float:
    """Predicted cost of an editing step over a DRaFT-K step (full chain of ``other_steps``):
    (int(tau D) - K + K g) / (other_steps - K + K g); (11 + g) / (49 + g) for the paper's
    defaults against DRaFT-1 over 50 steps."""
    n = min(edit_step_count(tau, ddim_steps), ddim_steps)
    return (n - grad_steps + grad_steps * g) / (other_steps - grad_steps + grad_steps * g)


def cost_markdown(cost: dict) -> str:
    """One row per setting of the cost benchmark: UNet evaluations, g, the step in plain
    forwards (predicted from the parts and measured), measured / predicted, decoder frames,
    peak memory rise and raw CPU seconds."""
    lines = ["| setting | UNet evals no-grad / grad | g | step predicted (forwards) "
             "| step measured (forwards) | measured / predicted | decoder frames "
             "| peak memory rise MiB | CPU s/step (raw) |", "|" + "---|" * 9]
    for name, r in cost["settings"].items():
        h = r["unet_calls_hook"]
        pred = predicted_step_forwards(r)
        mem = (r.get("memory") or {}).get("step_peak_increase_mib")
        lines.append(f"| {name} | {h['no_grad']} / {h['grad']} | {r['g']:.2f} | {pred:.1f} | "
                     f"{r['step_in_forwards']:.1f} | {r['step_in_forwards'] / pred:.3f} | "
                     f"{r['decoder_frames']} | {'n/a' if mem is None else f'{mem:.0f}'} | "
                     f"{r['step_cpu_s']:.2f} |")
    return "\n".join(lines)


def step_sensitivity(ddim_steps: int = 20) -> list[dict[str, float]]:
    """For every step t of a DDIM grid (ModelScope's schedule, eta 0): how far the step's output
    x_{t'} and its predicted clean latent x0_hat move per unit change of the noise prediction.

    DDIM's update is affine in eps, so these are exact: d x0_hat / d eps =
    -sqrt(1 - abar_t) / sqrt(abar_t), and d x_{t'} / d eps = sqrt(1 - abar_t') - sqrt(abar_t')
    sqrt(1 - abar_t) / sqrt(abar_t), both measured here through diffusers' own ``step``.
    """
    import torch

    from ivlite.method.ddim import ddim_scheduler
    from ivlite.models import modelscope_scheduler

    scheduler = ddim_scheduler(modelscope_scheduler(), ddim_steps)
    x, zero, one = torch.zeros(1), torch.zeros(1), torch.ones(1)
    out = []
    for t in scheduler.timesteps:
        a, b = scheduler.step(zero, t, x), scheduler.step(one, t, x)
        abar = float(scheduler.alphas_cumprod[int(t)])
        out.append({"t": int(t), "sqrt_one_minus_abar": math.sqrt(1 - abar),
                    "dx0_deps": float(b.pred_original_sample - a.pred_original_sample),
                    "dxprev_deps": float(b.prev_sample - a.prev_sample)})
    return out


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


# ----------------------------------------------------------------------------- over-optimisation


def early_stop_rules(oo: dict, patience: int, min_delta: float = 0.0,
                     series: Sequence[str] = ("judge", "reward_held_out", "oracle_held_out")
                     ) -> dict[str, dict[str, Any]]:
    """The trainer's patience rule (:class:`ivlite.early_stop.PatienceRule`) applied to each
    recorded held-out series of an over-optimisation curve: where it stops (None: never), which
    evaluation's weights it keeps (the best so far), and the held-out oracle score there."""
    from ivlite.early_stop import PatienceRule, stop_index

    curve = oo["curve"]
    out = {}
    for key in series:
        scores = [c[key] for c in curve]
        i_stop = stop_index(scores, patience, min_delta)
        rule = PatienceRule(patience, min_delta)
        for x in scores[:None if i_stop is None else i_stop + 1]:
            rule.update(x)
        kept = curve[rule.best_index]
        out[key] = {"stops_at_step": None if i_stop is None else curve[i_stop]["step"],
                    "keeps_step": kept["step"], "oracle_held_out_kept": kept["oracle_held_out"]}
    return out


def curve_markdown(oo: dict) -> str:
    """The over-optimisation curve as a table: per evaluation, the sampled proxy reward, the
    judge and the oracle (in-domain and held-out), all-three-correct and temporal consistency."""
    lines = ["| step | proxy in-domain | proxy held-out | judge held-out | oracle in-domain "
             "| oracle held-out | all 3 correct held-out | temporal consistency held-out |",
             "|" + "---|" * 8]
    for c in oo["curve"]:
        lines.append(f"| {c['step']} | {c['reward_in_domain']:.4f} | {c['reward_held_out']:.4f} | "
                     f"{c['judge']:.4f} | {c['oracle_in_domain']:.3f} | "
                     f"{c['oracle_held_out']:.3f} | {c['all_ok_held_out']:.0%} | "
                     f"{c['temporal_consistency_held_out']:.3f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- figures


def plot_cost(cost: dict, *, dpi: int = 72):
    """Left: each setting's step in plain UNet forwards, predicted from its parts (bar) and
    measured (dot). Right: the rise of peak memory during a step."""
    import matplotlib.pyplot as plt

    names = list(cost["settings"])
    rows = [cost["settings"][n] for n in names]
    y = range(len(names))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(9, 0.28 * len(names) + 1.2), dpi=dpi,
                                     sharey=True)
    ax_t.barh(y, [predicted_step_forwards(r) for r in rows], color="0.8",
              label="predicted: n_nograd + K g + decode + reward")
    ax_t.plot([r["step_in_forwards"] for r in rows], y, "o", color="tab:blue", label="measured")
    ax_t.set_yticks(list(y), names, fontsize=8)
    ax_t.invert_yaxis()
    ax_t.set_xlabel("CPU time of a step / a plain UNet forward")
    ax_t.legend(fontsize=7, loc="center right")
    ax_m.barh(y, [(r.get("memory") or {}).get("step_peak_increase_mib") or 0 for r in rows],
              color="tab:orange")
    ax_m.set_xlabel("peak memory rise during a step (MiB)")
    fig.tight_layout()
    return fig


def plot_deltas(results: dict, settings: Sequence[str], *, split: str = "in_domain",
                dpi: int = 72):
    """Paired differences to the base model, one row per setting: the mean (bar) and each
    prompt (dots), for the sampled reward, the judge and the oracle score."""
    import matplotlib.pyplot as plt

    names = [n for n in settings if n in results["settings"]]
    metrics = (("reward", "Δ sampled reward (tiny HPS)"), ("judge", "Δ judge (oracle quality)"),
               ("oracle_score", "Δ oracle score"))
    fig, axes = plt.subplots(1, 3, figsize=(10, 0.26 * len(names) + 1.3), dpi=dpi, sharey=True)
    for ax, (metric, label) in zip(axes, metrics):
        for i, name in enumerate(names):
            d = list(paired_deltas(results, name, split, metric).values())
            mean = statistics.fmean(d)
            color = "tab:orange" if name == "instructvideo" else \
                "tab:green" if mean > 0 else "tab:red"
            ax.barh(i, mean, color=color, alpha=0.6)
            ax.plot(d, [i] * len(d), "k.", ms=4)
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_xlabel(label, fontsize=8)
    axes[0].set_yticks(range(len(names)), names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(f"{SPLIT_NAMES[split]} prompts, {budget_text(results)}: mean (bar) and each "
                 f"prompt (dots)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_training_rewards(results: dict, settings: Sequence[str], *, window: int = 8,
                          dpi: int = 72):
    """The training reward against the CPU seconds spent, per setting (a running mean of
    ``window`` steps over the per-step values): equal compute on the x axis."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3), dpi=dpi)
    for name in settings:
        log = results["settings"].get(name, {}).get("train_log")
        if not log:
            continue
        t, s = [], 0.0
        for r in log:
            s += r.get("cpu_seconds") or r["seconds"]
            t.append(s)
        rewards = [r["reward"] for r in log]
        w = min(window, len(rewards))
        running = [statistics.fmean(rewards[i - w + 1:i + 1]) for i in range(w - 1, len(rewards))]
        (line,) = ax.plot(t, rewards, ".", alpha=0.25, ms=3)
        ax.plot(t[w - 1:], running, color=line.get_color(), label=f"{name} ({len(log)} steps)")
    ax.set_xlabel("CPU seconds of training")
    ax.set_ylabel("training reward R (TAR-weighted)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_overoptimisation(oo: dict, *, patience: int | None = None, window: int = 10,
                          dpi: int = 72):
    """Three panels over the optimizer steps: the training reward (per step and a running mean),
    the proxy reward of sampled clips (in-domain, held-out), and the judge and oracle on the
    held-out prompts, with a line where each early-stopping rule stops."""
    import matplotlib.pyplot as plt

    patience = patience or oo["args"]["patience"]
    c = oo["curve"]
    steps = [x["step"] for x in c]
    log = oo["train_log"]
    rewards = [r["reward"] for r in log]
    running = [statistics.fmean(rewards[max(0, i - window + 1):i + 1]) for i in range(len(rewards))]
    fig, (ax_t, ax_p, ax_o) = plt.subplots(1, 3, figsize=(11, 3.2), dpi=dpi)
    ax_t.plot([r["step"] for r in log], rewards, ".", alpha=0.3, color="tab:purple")
    ax_t.plot([r["step"] for r in log], running, color="tab:purple", label=f"mean of {window}")
    ax_t.set_title("training reward (edit-time, TAR-weighted)", fontsize=9)
    for split, style in (("in_domain", "-o"), ("held_out", "--o")):
        ax_p.plot(steps, [x[f"reward_{split}"] for x in c], style, ms=3, color="tab:blue",
                  label=SPLIT_NAMES[split])
        ax_o.plot(steps, [x[f"oracle_{split}"] for x in c], style, ms=3, color="tab:red",
                  label=f"oracle, {SPLIT_NAMES[split]}")
    ax_p.set_title("proxy reward of sampled clips", fontsize=9)
    ax_o.plot(steps, [x["judge"] for x in c], ":o", ms=3, color="tab:green",
              label="judge (frame quality), held-out")
    ax_o.set_title("judge and oracle of sampled clips", fontsize=9)
    labels = {"judge": "judge", "reward_held_out": "proxy", "oracle_held_out": "oracle"}
    stops: dict[int, list[str]] = {}
    for key, r in early_stop_rules(oo, patience).items():
        if r["stops_at_step"] is not None:
            stops.setdefault(r["stops_at_step"], []).append(labels[key])
    for step, who in stops.items():
        ax_o.axvline(step, color="0.6", lw=1, ls="--")
        ax_o.text(step, 0.98, f" rule on {', '.join(who)} stops (patience {patience})",
                  fontsize=6, transform=ax_o.get_xaxis_transform(), va="top", rotation=90)
    for ax in (ax_t, ax_p, ax_o):
        ax.set_xlabel("optimizer step")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def expected_pick_weight(lambda_tar: float, num_frames: int = 16, segments: int = 4) -> float:
    """The expected TAR weight (Eq. 8) of a frame SegVR's TSN sampling picks: the mean over the
    segments of the mean weight inside each (TSN picks uniformly within a segment). This is the
    factor by which TAR shrinks the paper's unnormalised video reward on average."""
    import torch

    from ivlite.method.segvr import segment_bounds
    from ivlite.method.tar import tar_weights

    c = tar_weights(torch.arange(num_frames), num_frames, lambda_tar)
    bounds = segment_bounds(num_frames, segments)
    return statistics.fmean(float(c[a:b].mean()) for a, b in bounds)


def _tar_panel(ax, lambda_tar: float, num_frames: int, segments: int) -> None:
    import torch

    from ivlite.method.segvr import segment_bounds
    from ivlite.method.tar import tar_weights
    from ivlite.viz import effective_frames

    frames = torch.arange(num_frames)
    c = tar_weights(frames, num_frames, lambda_tar)
    mean_weight = expected_pick_weight(lambda_tar, num_frames, segments)
    ax.bar(frames.tolist(), c.tolist(),
           color=["tab:orange" if j == num_frames // 2 else "tab:blue" for j in range(num_frames)])
    for start, _ in segment_bounds(num_frames, segments)[1:]:
        ax.axvline(start - 0.5, color="0.6", lw=1, ls=":")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("frame index j (dotted: SegVR segments)")
    ax.set_title(f"TAR, lambda = {lambda_tar:g}: n_eff = {effective_frames(c):.2f} of "
                 f"{num_frames}, expected weight of a TSN pick = {mean_weight:.3f}", fontsize=8)


def explore_figure(tau: float = 0.6, ddim_steps: int = 20, lambda_tar: float = 1.0, *,
                   g: float, num_frames: int = 16, segments: int = 4, dpi: int = 60):
    """The widget's figure. Left: the DDIM grid of ``ddim_steps`` steps, the edited part
    (int(tau D) steps from t_start, the last one with gradient) and the predicted step cost in
    plain forwards, int(tau D) - 1 + g, against DRaFT-1 over a 50-step chain, 49 + g. Right: the
    TAR weights of ``lambda_tar`` (Eq. 8)."""
    import matplotlib.pyplot as plt

    from ivlite.method.ddim import ddim_scheduler
    from ivlite.models import modelscope_scheduler

    grid = [int(t) for t in ddim_scheduler(modelscope_scheduler(), ddim_steps).timesteps]
    tau = round(float(tau), 6)  # a slider's 0.6000000001 or 0.5999999 must not change int(tau D)
    n = edit_step_count(tau, ddim_steps)
    fig, (ax_c, ax_w) = plt.subplots(1, 2, figsize=(10, 2.6), dpi=dpi)
    ax_c.plot(grid, [0] * len(grid), "o", color="0.8", ms=4, label="DDIM grid")
    if n >= 1:
        ax_c.plot(grid[-n:], [0] * n, "o", color="tab:orange", ms=5, label="edited (no grad)")
        ax_c.plot(grid[-1:], [0], "*", color="tab:red", ms=12, label="gradient step (K = 1)")
        cost = n - 1 + g
        title = (f"tau = {tau:g}, D = {ddim_steps}: t_start = {grid[-n]}, {n} UNet evaluations, "
                 f"~{cost:.1f} forwards;\nDRaFT-1 (D = 50) ~{49 + g:.1f}: ratio "
                 f"{predicted_ratio(g, tau=tau, ddim_steps=ddim_steps):.2f}")
    else:
        title = f"tau = {tau:g}, D = {ddim_steps}: int(tau D) = 0, no step to edit"
    ax_c.set_xlim(1000, -20)
    ax_c.set_yticks([])
    ax_c.set_xlabel("timestep t (noise on the left, clean on the right)")
    ax_c.set_title(title, fontsize=8)
    ax_c.legend(fontsize=6, loc="upper left")
    _tar_panel(ax_w, lambda_tar, num_frames, segments)
    fig.tight_layout()
    return fig


def static_explore_figure(g: float, cost: dict | None = None, *,
                          lambdas: Sequence[float] = (0.0, 0.5, 1.0, 2.0),
                          num_frames: int = 16, dpi: int = 72):
    """What the widget shows, for several values at once. Left: the predicted step cost in plain
    forwards against tau for D = 10, 20, 50 (int(tau D) - 1 + g), DRaFT-1 over 50 steps as a
    line, and the measured steps of the cost benchmark (``cost``, the editing settings) as
    dots. Right: the TAR weights for ``lambdas``."""
    import matplotlib.pyplot as plt
    import torch

    from ivlite.method.tar import tar_weights

    fig, (ax_c, ax_w) = plt.subplots(1, 2, figsize=(10, 3), dpi=dpi)
    taus = [round(0.02 * i, 2) for i in range(1, 51)]
    for d in (10, 20, 50):
        steps = [edit_step_count(t, d) for t in taus]
        ax_c.step(taus, [n - 1 + g if n >= 1 else float("nan") for n in steps],
                  where="post", label=f"D = {d}: int(tau D) - 1 + g")
    ax_c.axhline(49 + g, color="0.4", ls="--", lw=1, label="DRaFT-1, D = 50")
    if cost:
        pts = [(r["config"]["tau"], r["step_in_forwards"], n) for n, r in cost["settings"].items()
               if r["config"]["chain"] == "edit" and r["unet_calls_expected"]["grad"] == 1]
        ax_c.plot([p[0] for p in pts], [p[1] for p in pts], "ko", ms=4,
                  label="measured (cost_tiny)")
    ax_c.set_xlabel("editing strength tau")
    ax_c.set_ylabel("step cost (plain UNet forwards)")
    ax_c.legend(fontsize=7)
    frames = torch.arange(num_frames)
    for lam in lambdas:
        ax_w.plot(frames.tolist(), tar_weights(frames, num_frames, lam).tolist(), "o-", ms=3,
                  label=f"lambda = {lam:g}")
    ax_w.set_xlabel("frame index j")
    ax_w.set_ylabel("TAR weight c(j)")
    ax_w.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- edit vs sample


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


def plot_edit_vs_sample(results: dict, *, dpi: int = 72):
    """Left: per row, the mean paired gain of edits and of samples. Right: the relative change
    of the guided noise prediction against t (log scale), with t_start marked."""
    import matplotlib.pyplot as plt

    rows = results["settings"]
    names = list(rows)
    fig, (ax_g, ax_e) = plt.subplots(1, 2, figsize=(10, 0.35 * len(names) + 2.2), dpi=dpi)
    y = range(len(names))
    ax_g.barh([i - 0.2 for i in y], [rows[n]["edit_gain"]["mean"] for n in names], height=0.4,
              color="tab:green", label="edit gain (what training optimises)")
    ax_g.barh([i + 0.2 for i in y], [rows[n]["sample_gain"]["mean"] for n in names], height=0.4,
              color="tab:purple", label="sample gain (what is evaluated)")
    ax_g.axvline(0, color="0.3", lw=0.8)
    ax_g.set_yticks(list(y), names, fontsize=8)
    ax_g.invert_yaxis()
    ax_g.set_xlabel("tiny-hps gain over the base model")
    ax_g.legend(fontsize=7, loc="lower left")
    for n in names:
        ts = [int(t) for t in rows[n]["eps_change"]]
        ax_e.plot(ts, list(rows[n]["eps_change"].values()), marker=".", label=n)
    ax_e.axvline(results["t_start"], color="0.5", ls="--", lw=0.8)
    ax_e.text(results["t_start"], ax_e.get_ylim()[1], " t_start", fontsize=7, va="top")
    ax_e.set_yscale("log")
    ax_e.set_xlabel("timestep t (sampling runs from right to left)")
    ax_e.set_ylabel("||eps_tuned - eps_base|| / ||eps_base||")
    ax_e.invert_xaxis()
    ax_e.legend(fontsize=7)
    fig.tight_layout()
    return fig
