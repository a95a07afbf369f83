"""The README's results summary: paired gains over the base model with bootstrap 95% intervals.

Reads committed ablation files (``benchmarks/results/*.json``, written by ``ablations.py``) and
prints, per setting, the optimizer steps its budget bought and its gains over the base model on
each prompt split (the same prompts and the same noise before and after), each as
``mean [95% interval]`` over prompts (:func:`ivlite.stats.paired_gain`):

    python -m benchmarks.summary                                    # the files the README cites
    python -m benchmarks.summary benchmarks/results/ablations_tiny_model_q2_tar_lr1e-3.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ivlite.stats import paired_gain

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_FILES = ("ablations_tiny_model_q2_baselines_lr1e-3", "ablations_tiny_model_q2_tar_lr1e-3")
SPLITS = {"in_domain": "in-domain", "held_out": "held-out", "out_of_domain": "out-of-domain"}
METRICS = {"reward": "proxy reward", "oracle_score": "oracle score"}


def gains(results: dict, setting: str, split: str, metric: str):
    """Paired gain of ``setting`` over ``base`` on one split, over the split's prompts."""
    mine = results["settings"][setting]["eval"]["splits"][split]["per_prompt"]
    base = results["settings"]["base"]["eval"]["splits"][split]["per_prompt"]
    prompts = sorted(mine)
    return paired_gain([base[p][metric] for p in prompts], [mine[p][metric] for p in prompts])


def table(results: dict) -> str:
    """One markdown row per setting and metric: steps, then the gain on every split."""
    head = "| setting | steps | gain in | " + " | ".join(SPLITS.values()) + " |"
    rows = [head, "|" + "---|" * (3 + len(SPLITS))]
    for name, row in results["settings"].items():
        if name == "base":
            continue
        for metric, label in METRICS.items():
            cells = [gains(results, name, s, metric).text() for s in SPLITS]
            rows.append(f"| {name} | {row['steps']} | {label} | " + " | ".join(cells) + " |")
    n = {s: len(results["prompts"][s]) for s in SPLITS}
    seeds = results["args"].get("seeds", 1)
    return "\n".join(rows) + (f"\n\nPrompts per split: {n}, each the mean of {seeds} clip(s) "
                              "from fixed noise; intervals over prompts.")


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
                   help="ablation result files (default: the README's)")
    p.add_argument("--demo", type=Path, help="an ivlite demo folder: its gains per split")
    args = p.parse_args(argv)
    if args.demo is not None:
        if not (args.demo / "metrics.json").is_file():
            raise SystemExit(f"summary.py: --demo {args.demo} is not a finished ivlite demo "
                             f"folder (no metrics.json)")
        print(demo_table(args.demo))
        return
    files = args.files or [RESULTS / f"{stem}.json" for stem in DEFAULT_FILES]
    for path in files:
        if not path.is_file():
            raise SystemExit(f"summary.py: {path} is not a file")
        results = json.loads(path.read_text())
        b = results["budget"]
        budget = f"{b['steps']} steps" if b.get("steps") else f"{b['seconds']:g} CPU s"
        print(f"### {path.name} ({budget} of training per setting)\n\n{table(results)}\n")


if __name__ == "__main__":
    main()
