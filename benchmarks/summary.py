"""The README's results summary: paired gains with bootstrap 95% intervals, from the results.

Reads the committed result files (``benchmarks/results/*.json``) through
:mod:`benchmarks.results_view` and prints, as markdown, what the README's results section shows:
the methods at equal compute (optimizer steps bought, in-domain gains over the base model, each
``mean [95% interval]`` over clips paired by prompt and noise), then one line per question of
the book's chapter 8, each with its interval:

    python -m benchmarks.summary                         # the README's results section
    python -m benchmarks.summary benchmarks/results/ablations_tiny.json   # one file's gains
    python -m benchmarks.summary --demo runs/demo        # an ivlite demo's gains per split
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks import results_view as rv
from ivlite.stats import PairedGain, paired_gain

SPLITS = rv.SPLIT_NAMES
METRICS = {"reward": "proxy reward", "oracle_score": "oracle score"}
METHODS = ("instructvideo", "draft1", "draft1-d50", "full-backprop")


def table(results: dict) -> str:
    """One markdown row per setting and metric: steps, then the gain over the base model on
    every split, paired per clip."""
    head = "| setting | steps | gain in | " + " | ".join(SPLITS.values()) + " |"
    rows = [head, "|" + "---|" * (3 + len(SPLITS))]
    for name, row in results["settings"].items():
        if name == "base":
            continue
        for metric, label in METRICS.items():
            cells = [rv.gain(results, name, metric, splits=[s]).text() for s in SPLITS]
            rows.append(f"| {name} | {row['steps']} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + f"\n\n{rv.evaluation_text(results)}; intervals over clips."


def verdict(g: PairedGain, more: str, less: str) -> str:
    """``more`` or ``less`` when the interval excludes zero, else that it includes zero (or
    that no pair changed at all)."""
    if g.low == g.high == 0:
        return "unchanged in every pair"
    word = more if g.low > 0 else less if g.high < 0 else "no clear change (the interval " \
        "includes zero)"
    return f"{word}: {g.text()}"


def readme(folder: Path | None = None) -> str:
    """The README's results section: the methods at equal compute and InstructVideo against
    each, then one line per question of chapter 8 (cost, SegVR and TAR, over-optimisation),
    each with its interval."""
    base = ab = rv.load_results("ablations", folder)
    cost = rv.load_results("cost", folder)
    oo = rv.load_results("overoptimisation", folder)
    n = len(rv.clip_scores(base, "base", "in_domain", "reward"))
    lines = [f"In-domain gains over the base model after {rv.budget_text(base)} of training "
             f"each, as mean [95% bootstrap interval] over {n} {rv.paired_by(base)} pairs "
             f"(the same prompt and noise before and after):", "",
             f"| method | steps | in-domain {METRICS['reward']} | in-domain "
             f"{METRICS['oracle_score']} |", "|---|---|---|---|"]
    for name in METHODS:
        cells = [rv.gain(base, name, m, splits=["in_domain"]).text() for m in METRICS]
        lines.append(f"| {rv.label(name)} | {base['settings'][name]['steps']} | "
                     + " | ".join(cells) + " |")
    direct = [f"{rv.label(other)} "
              + rv.gain(base, "instructvideo", "reward", against=other,
                        splits=["in_domain"]).text() for other in METHODS[1:]]
    lines += ["", "- InstructVideo against each, pair for pair (in-domain proxy reward): "
              + "; ".join(direct) + "."]
    ratio, low, high = rv.ratio_interval(cost, "instructvideo", "draft1-d50")
    g = cost["settings"]["instructvideo"]["g"]
    lines += [f"- Cost: an InstructVideo step costs {ratio:.3f} [{low:.3f}, {high:.3f}] of a "
              f"DRaFT-1 step over 50 DDIM steps; counted UNet calls predict "
              f"{rv.predicted_ratio(g):.3f}."]
    metrics = rv.available(ab, ["travel", "motion_ok", "oracle_score", "reward"])[:2]
    for name, what in (("no-tar", "Without TAR"), ("no-segvr-all", "Scoring all 16 frames")):
        gains = {m: rv.gain(ab, name, m, against="instructvideo") for m in metrics}
        parts = [f"{rv.METRICS[m]} {verdict(g, 'higher', 'lower')}" for m, g in gains.items()]
        lines.append(f"- {what}, against InstructVideo (all splits): " + "; ".join(parts) + ".")
    patience = oo["summary"]["early_stop"]["patience"]
    oracle = rv.curve_gains(oo, "held_out", "oracle_score")
    parts = []
    for key, rule in rv.early_stop_rules(oo, patience, series=("judge", "reward_held_out")
                                         ).items():
        stop = "never stops" if rule["stops_at_step"] is None else \
            f"stops at step {rule['stops_at_step']}"
        parts.append(f"watching {rv.STOP_SERIES[key]} it {stop} and keeps step "
                     f"{rule['keeps_step']} (held-out oracle score against the start "
                     f"{rv.interval_text(oracle[rule['keeps_index']])})")
    lines.append(f"- Over-optimisation ({oo['curve'][-1]['step']} steps), early stopping: "
                 + "; ".join(parts) + ".")
    return "\n".join(lines)


def demo_table(folder: Path) -> str:
    """Paired gains of an ``ivlite demo`` run, per split, over its clips (the same prompt and
    noise before and after), from the per-clip scores the demo saves in ``before/`` and
    ``after/``."""
    from safetensors import safe_open

    def per_clip(when: str, split: str) -> list[dict]:
        with safe_open(str(folder / when / f"{split}.safetensors"), framework="pt") as fh:
            return json.loads(fh.metadata()["per_clip"])

    rows = ["| split | clips | proxy reward gain | oracle score gain |", "|---|---|---|---|"]
    for split, name in SPLITS.items():
        before, after = per_clip("before", split), per_clip("after", split)
        if [c["prompt"] for c in before] != [c["prompt"] for c in after]:
            raise SystemExit(f"summary.py: {folder} holds unpaired clips for {split}")
        cells = [paired_gain([b[k] for b in before], [a[k] for a in after]).text()
                 for k in ("proxy_reward", "oracle_score")]
        rows.append(f"| {name} | {len(before)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path,
                   help="ablation result files: their gains per setting (default: the "
                        "README's results section from the committed files)")
    p.add_argument("--demo", type=Path, help="an ivlite demo folder: its gains per split")
    args = p.parse_args(argv)
    if args.demo is not None:
        if not (args.demo / "metrics.json").is_file():
            raise SystemExit(f"summary.py: --demo {args.demo} is not a finished ivlite demo "
                             f"folder (no metrics.json)")
        print(demo_table(args.demo))
        return
    if not args.files:
        print(readme())
        return
    for path in args.files:
        if not path.is_file():
            raise SystemExit(f"summary.py: {path} is not a file")
        results = json.loads(path.read_text())
        print(f"### {path.name} ({rv.budget_text(results)} of training per setting)\n\n"
              f"{table(results)}\n")


if __name__ == "__main__":
    main()
