"""Chapter 7's capstone: its fine-tuning run, and the base and fine-tuned models scored paired.

The chapter (``book/07_putting_it_together.ipynb``) fine-tunes the tiny world's model live with
:func:`chapter_config`, but sampling enough clips to measure what that run bought takes longer
than a chapter may. This script runs exactly the chapter's fine-tuning (same config, seed and
steps, on a fresh copy of the shipped model), then samples ``--per-split`` prompts x ``--seeds``
clips of each prompt split (in-domain, held-out categories, out-of-domain compositions) with the
base and the fine-tuned model from the same noise (:func:`ivlite.evaluation.evaluate_splits`,
the same sampling settings as the training: DDIM grid, guidance), and reports per split and
metric the mean paired gain with its bootstrap 95% interval over clips
(:func:`ivlite.stats.paired_gain`): the proxy reward (the training reward on SegVR's first
frames), the oracle's score, colour / shape / motion correct, frame quality, temporal
consistency and travel (how far the object moves, as a share of the frame width).

Writes ``benchmarks/results/capstone_tiny.json`` (``--out``): every clip's values for both
models, the gains, the SHA-256 of the adapter (the chapter checks the adapter it trains against
it), the config, the arguments and the machine; and the table as ``capstone_tiny.md``.

    OMP_NUM_THREADS=1 python -m benchmarks.capstone
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.paired import paired_gains
from benchmarks.settings import check_json_out, machine_info
from ivlite.common import sha256
from ivlite.config import Config
from ivlite.evaluation import evaluate_splits
from ivlite.registry import build_reward, load_model
from ivlite.trainer import finetune
from ivlite.world.captions import world_splits

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "capstone_tiny.json"

PRESET = "tiny-world"
OVERRIDES: dict[str, Any] = {"max_steps": 60, "ddim_steps": 5}
"""The chapter's run: the tiny-world preset with these fields changed."""
EVAL_SEED = 5000
"""Clip k of a split starts from the noise of generator seed ``EVAL_SEED + k``."""
ADAPTER_FILE = "adapter_model.safetensors"
METRICS = {"reward": "proxy reward", "oracle_score": "oracle score",
           "colour_ok": "colour correct", "shape_ok": "shape correct",
           "motion_ok": "motion correct", "frame_quality": "frame quality",
           "temporal_consistency": "temporal consistency", "travel": "travel"}
"""Per-clip metrics compared, in table order, with their labels (booleans count as 0 / 1)."""


def chapter_config(out_dir: str | Path = "runs/capstone", steps: int | None = None) -> Config:
    """The chapter's fine-tuning configuration, writing its run to ``out_dir``; ``steps``
    replaces its number of optimizer steps (a quick check of the script, not the chapter's
    run)."""
    extra = {"max_steps": steps} if steps is not None else {}
    return Config.preset(PRESET, **{**OVERRIDES, **extra}, out_dir=str(out_dir)).validate()


def comparable(config: dict) -> dict:
    """A config's fields that decide the adapter (all but where the run is written)."""
    return {k: v for k, v in config.items() if k not in ("out_dir", "resume")}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-split", type=int, default=16,
                   help="evaluation prompts per split (the out-of-domain split has 16)")
    p.add_argument("--seeds", type=int, default=3, help="evaluation clips per prompt")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps (default: the chapter's); another number makes a "
                        "run the chapter's adapter check refuses")
    p.add_argument("--run", default=None,
                   help="folder for the fine-tuning run (default: a new temporary folder)")
    p.add_argument("--out", default=str(OUT), help="the result file (.json; the .md beside it)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--note", default=None, help="a note stored with the results")
    args = p.parse_args(argv)
    for name in ("per_split", "seeds", "steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)}: must be >= 1")
    if args.per_split > 16:
        p.error(f"--per-split={args.per_split}: at most 16 (the out-of-domain split's prompts)")
    check_json_out(p, args.out, args.force)
    if args.run is not None and Path(args.run).exists():
        p.error(f"--run={args.run!r} exists; give a new folder (or none: a temporary one)")
    return args


def gains_dict(before: dict, after: dict) -> dict[str, dict[str, dict]]:
    """``{split: {metric: {mean, low, high, n, excludes_zero}}}``: after minus before."""
    return {split: {m: {"mean": g.mean, "low": g.low, "high": g.high, "n": g.n,
                        "excludes_zero": g.excludes_zero} for m, g in per_split.items()}
            for split, per_split in paired_gains(before, after, tuple(METRICS)).items()}


def shown_clips(results: dict) -> list[tuple[str, str, int]]:
    """The clips chapter 7 shows, (split, prompt, generator seed), chosen by a rule, not by
    their gain: per split its first evaluation clip, then its first clip whose base version
    the oracle finds wrong in colour, shape or motion (when that is not the first one)."""
    shown = []
    for split, entry in results["base"]["splits"].items():
        rows = entry["per_clip"]
        flawed = [r for r in rows if not (r["colour_ok"] and r["shape_ok"] and r["motion_ok"])]
        for row in [rows[0]] + [r for r in flawed[:1] if r is not rows[0]]:
            shown.append((split, row["prompt"], row["seed"]))
    return shown


def flips(results: dict) -> dict[str, dict[str, dict[str, int]]]:
    """Per split and attribute (colour, shape, motion): clips right before and after, and how
    many the fine-tuning fixed (wrong -> right) and broke (right -> wrong)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for split, entry in results["base"]["splits"].items():
        pairs = list(zip(entry["per_clip"], results["fine_tuned"]["splits"][split]["per_clip"]))
        out[split] = {key[:-3]: {"before": sum(b[key] for b, _ in pairs),
                                 "after": sum(a[key] for _, a in pairs),
                                 "fixed": sum(a[key] and not b[key] for b, a in pairs),
                                 "broken": sum(b[key] and not a[key] for b, a in pairs),
                                 "clips": len(pairs)}
                      for key in ("colour_ok", "shape_ok", "motion_ok")}
    return out


def _cells(results: dict) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The table's header and rows: per metric, per split ``mean [low, high]``, ``*`` where the
    interval excludes zero."""
    gains = results["gains"]
    splits = list(gains)
    head = ["metric"] + [f"{s.replace('_', '-')} ({next(iter(gains[s].values()))['n']} clips)"
                         for s in splits]
    rows = []
    for metric, label in METRICS.items():
        cells = []
        for s in splits:
            g = gains[s][metric]
            star = "*" if g["excludes_zero"] else ""
            cells.append(f"{g['mean']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}]{star}")
        rows.append((label, cells))
    return head, rows


def html(results: dict) -> str:
    """:func:`markdown`'s table as an HTML table (the chapter's column is too narrow for the
    markdown source's lines)."""
    head, rows = _cells(results)
    lines = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    lines += ["<tr>" + f"<td>{label}</td>" + "".join(f'<td style="text-align: right">{c}</td>'
                                                       for c in cells) + "</tr>"
              for label, cells in rows]
    return "\n".join(lines + ["</table>"]) + "\n"


def markdown(results: dict) -> str:
    """The gains as a table: one row per metric, one column per split, each cell the mean
    paired gain and its 95% interval (``*`` where the interval excludes zero)."""
    head, rows = _cells(results)
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---|" * (len(head) - 1)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(lines) + "\n"

def main(argv=None) -> dict:
    args = parse_args(argv)
    t_start = time.time()
    run_dir = Path(args.run) if args.run else Path(tempfile.mkdtemp()) / "run"
    cfg = chapter_config(run_dir, args.steps)
    reward = build_reward(cfg.reward, cfg.reward_checkpoint)
    splits = world_splits(args.per_split)
    kw = dict(seeds=args.seeds, num_frames=cfg.num_frames, height=cfg.height, width=cfg.width,
              ddim_steps=cfg.ddim_steps, guidance_scale=cfg.guidance_scale,
              segments=cfg.segments, seed=EVAL_SEED, batch_size=4, reward_name=cfg.reward)
    seconds = {}
    t = time.time()
    model = load_model(cfg.model)
    run = finetune(cfg, model=model, reward=reward, progress=False)  # adds LoRA to model
    seconds["finetune"] = round(time.time() - t, 1)
    adapter_sha = sha256(run.adapter_dir / ADAPTER_FILE)
    print(f"fine-tuned {run.steps} steps in {seconds['finetune']:.0f} s; adapter "
          f"{adapter_sha[:12]}", flush=True)
    t = time.time()
    base = evaluate_splits(load_model(cfg.model), reward, splits, **kw)
    seconds["score_base"] = round(time.time() - t, 1)
    print(f"scored the base model in {seconds['score_base']:.0f} s", flush=True)
    t = time.time()
    finetuned = evaluate_splits(model, reward, splits, **kw)
    seconds["score_fine_tuned"] = round(time.time() - t, 1)
    results = {
        "benchmark": "capstone", "args": vars(args), "machine": machine_info(args.note),
        "preset": PRESET, "overrides": OVERRIDES, "config": comparable(cfg.to_dict()),
        "adapter_sha256": adapter_sha, "adapter_file": ADAPTER_FILE, "steps": run.steps,
        "training_log": [{k: r[k] for k in ("step", "loss", "reward", "grad_norm", "seconds")}
                         for r in run.log],
        "protocol": {k: v for k, v in kw.items() if k != "reward_name"} | {
            "clips": "clip k of a split starts from generator seed seed + k, for both models",
            "prompts": f"ivlite.world.captions.world_splits({args.per_split})"},
        "splits": splits, "base": base, "fine_tuned": finetuned,
        "gains": gains_dict(base, finetuned)}
    results["machine"]["load_average_end"] = machine_info()["load_average_1_5_15"]
    seconds["total"] = round(time.time() - t_start, 1)
    results["seconds"] = seconds
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    out.with_suffix(".md").write_text(table)
    print(table)
    print(f"wrote {out} in {seconds['total']:.0f} s")
    return results


if __name__ == "__main__":
    main()
