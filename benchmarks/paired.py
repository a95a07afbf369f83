"""Paired per-clip gains between two evaluations of the same prompts from the same noise.

:func:`ivlite.evaluation.evaluate_splits` keeps one row per clip (``per_clip``); two settings
scored on the same prompts and seeds pair clip by clip, so the gain of B over A on each split
and metric is the mean of ``B[i] - A[i]`` with its bootstrap 95% interval over clips
(:func:`ivlite.stats.paired_gain`). Booleans (``motion_ok``) count as 0 / 1, so their gain is a
change in the share of clips.

    python -m benchmarks.paired benchmarks/results/ablations_tiny.json base instructvideo
    python -m benchmarks.paired benchmarks/results/ablations_tiny.json instructvideo no-tar
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ivlite.stats import PairedGain, paired_gain

METRICS = {"reward": "proxy reward", "judge": "judge", "oracle_score": "oracle score",
           "motion_ok": "moved as prompted", "travel": "travel (share of width)",
           "temporal_consistency": "temporal consistency", "frame_quality": "frame quality",
           "frame_motion": "frame motion"}
"""Per-clip metrics compared, in table order, with their labels."""


def _rows(result: dict, split: str, which: str) -> list[dict]:
    entry = result["splits"][split]
    if "per_clip" not in entry:
        raise ValueError(f"{which} result, split {split!r}: no per_clip rows (scored before "
                         f"evaluate_splits kept them); cannot pair clips")
    return entry["per_clip"]


def paired_gains(before: dict, after: dict, metrics=tuple(METRICS)) -> dict[str, dict]:
    """``{split: {metric: PairedGain}}``: the gain of ``after`` over ``before`` (two
    :func:`ivlite.evaluation.evaluate_splits` results) per split and metric, paired over clips.

    Both must hold the same splits and, per split, the same (prompt, seed) rows in the same order.
    A metric goes in when both results hold it for every clip (``judge`` only where a judge ran);
    one result holding a metric the other lacks is an error.
    """
    if list(before["splits"]) != list(after["splits"]):
        raise ValueError(f"the two results hold different splits: {list(before['splits'])} vs "
                         f"{list(after['splits'])}")
    out: dict[str, dict[str, PairedGain]] = {}
    for split in before["splits"]:
        a, b = _rows(before, split, "before"), _rows(after, split, "after")
        keys_a = [(r["prompt"], r["seed"]) for r in a]
        if keys_a != [(r["prompt"], r["seed"]) for r in b]:
            raise ValueError(f"split {split!r}: the clips are not paired (different prompts or "
                             f"seeds, or another order)")
        gains = {}
        for metric in metrics:
            has_a, has_b = all(metric in r for r in a), all(metric in r for r in b)
            if has_a != has_b:
                raise ValueError(f"split {split!r}: metric {metric!r} is in only the "
                                 f"{'before' if has_a else 'after'} result")
            if has_a:
                gains[metric] = paired_gain([float(r[metric]) for r in a],
                                            [float(r[metric]) for r in b])
        out[split] = gains
    return out


def paired_markdown(before: dict, after: dict, metrics=tuple(METRICS)) -> str:
    """:func:`paired_gains` as a table: one row per split, one column per metric,
    ``mean [95% interval]`` of the gain over the split's clips."""
    gains = paired_gains(before, after, metrics)
    shown = [m for m in metrics if any(m in g for g in gains.values())]
    lines = ["| split | clips | " + " | ".join(METRICS.get(m, m) for m in shown) + " |",
             "|" + "---|" * (2 + len(shown))]
    for split, g in gains.items():
        n = len(before["splits"][split]["per_clip"])
        cells = [g[m].text() if m in g else "-" for m in shown]
        lines.append(f"| {split} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path, help="an ablations result file (benchmarks/ablations.py)")
    p.add_argument("before", help="the setting compared against, e.g. base")
    p.add_argument("after", help="the setting whose gain is shown, e.g. instructvideo")
    args = p.parse_args(argv)
    if not args.file.is_file():
        raise SystemExit(f"paired.py: {args.file} is not a file")
    settings = json.loads(args.file.read_text())["settings"]
    for name in (args.before, args.after):
        if name not in settings:
            raise SystemExit(f"paired.py: setting {name!r} is not in {args.file}; it holds "
                             f"{', '.join(settings)}")
    print(paired_markdown(settings[args.before]["eval"], settings[args.after]["eval"]), end="")


if __name__ == "__main__":
    main()
