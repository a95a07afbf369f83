"""LoRA's two initialisations on the tiny world: the down matrix's spread, and what N steps do.

``lora_init`` chooses how LoRA's down matrix A starts (B starts at zero either way): ``official``
draws A ~ N(0, (1/rank)^2) as the official InstructVideo code does, ``peft`` uses peft's default
Kaiming-uniform A (uniform on +-1/sqrt(d_in)). The first update of B is proportional to A, so the
init sets how fast the adapter moves at a given learning rate. For each init this fine-tunes a
fresh copy of the shipped tiny-world model for ``--steps`` steps with the tiny-world preset (its
learning rate, its data) and the same fine-tuning seed, so both runs see the same batches and
noise, and reports:

- the spread of A right after injection (std over all entries, per-layer range, and the value
  the init predicts: 1/rank, or 1/sqrt(3 d_in));
- the adapter's size after training: mean over adapted layers of ||scale B A||_F / ||W||_F;
- the training reward of the first and the last ``--window`` steps (from the run's log);
- the proxy reward (tiny HPS on SegVR's first frames) and the oracle's score of clips sampled
  from the same noise for the same prompts before and after, as paired per-clip differences
  (mean and standard error), per prompt split, and the paired difference between the two inits.

Writes ``benchmarks/results/lora_init_tiny.json`` (``--out``) with the machine, commit, threads
and seeds. The default run takes a few minutes on one thread:

    OMP_NUM_THREADS=1 python -m benchmarks.lora_init
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from benchmarks.settings import machine_info
from ivlite.config import LORA_INITS, Config
from ivlite.evaluation import sample_clips
from ivlite.judges import RewardJudge
from ivlite.method.lora import add_lora, lora_config
from ivlite.registry import build_reward
from ivlite.trainer import finetune
from ivlite.world.captions import world_splits
from ivlite.world.oracle import judge_clip
from ivlite.world.tiny_models import load_tiny_world

ROOT = Path(__file__).resolve().parent.parent

EVAL_SEED = 1000
"""Generator seed of the first evaluation clip (clip k uses EVAL_SEED + k), as the demo's."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inits", default=",".join(LORA_INITS),
                   help=f"comma-separated lora_init values ({', '.join(LORA_INITS)})")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per init")
    p.add_argument("--seed", type=int, default=0, help="fine-tuning seed (the same for each init)")
    p.add_argument("--per-split", type=int, default=4, help="evaluation prompts per split")
    p.add_argument("--clips", type=int, default=2, help="evaluation clips per prompt")
    p.add_argument("--window", type=int, default=10,
                   help="steps averaged at the start and end of the training reward")
    p.add_argument("--runs", default="runs/lora_init", help="folder for the fine-tuning runs")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lora_init_tiny.json"))
    p.add_argument("--note", default=None, help="a note stored with the results")
    args = p.parse_args(argv)
    args.inits = [x.strip() for x in args.inits.split(",") if x.strip()]
    bad = [x for x in args.inits if x not in LORA_INITS]
    if bad or not args.inits:
        p.error(f"--inits={','.join(args.inits)!r}: allowed values {', '.join(LORA_INITS)}")
    for name in ("steps", "per_split", "clips", "window"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)}: must be >= 1")
    if args.seed < 0:
        p.error(f"--seed={args.seed}: must be >= 0")
    return args


def init_spread(init: str, cfg: Config, seed: int) -> dict:
    """Std of the down matrices A right after injection into the tiny-world UNet (B is zero)."""
    unet = load_tiny_world().unet
    torch.manual_seed(seed)
    add_lora(unet, lora_config(cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, init))
    downs = [p.detach() for n, p in unet.named_parameters() if ".lora_A." in n]
    ups = [p.detach() for n, p in unet.named_parameters() if ".lora_B." in n]
    predicted = [1 / cfg.lora_rank if init == "official" else 1 / math.sqrt(3 * a.shape[1])
                 for a in downs]
    stds = [float(a.std()) for a in downs]
    return {"A_std_all": float(torch.cat([a.flatten() for a in downs]).std()),
            "A_std_per_layer_min": min(stds), "A_std_per_layer_max": max(stds),
            "A_std_predicted_min": min(predicted), "A_std_predicted_max": max(predicted),
            "A_fan_in": sorted({a.shape[1] for a in downs}), "layers": len(downs),
            "B_max_abs": max(float(b.abs().max()) for b in ups)}


@torch.no_grad()
def adapter_size(unet: torch.nn.Module) -> dict:
    """Mean and max over adapted layers of ||scale B A||_F / ||W||_F."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    ratios = []
    for module in unet.modules():
        if isinstance(module, BaseTunerLayer) and "default" in getattr(module, "lora_A", {}):
            delta = module.lora_B["default"].weight @ module.lora_A["default"].weight
            weight = module.get_base_layer().weight
            ratios.append(float((delta * module.scaling["default"]).norm() / weight.norm()))
    return {"relative_update_mean": statistics.fmean(ratios), "relative_update_max": max(ratios)}


@torch.no_grad()
def score_clips(model, judge: RewardJudge, splits: dict[str, list[str]], clips: int) -> dict:
    """Per split: per-clip proxy reward and oracle score, clip k from seed EVAL_SEED + k."""
    out = {}
    for split, prompts in splits.items():
        items = [p for _ in range(clips) for p in prompts]
        seeds = [EVAL_SEED + k for k in range(len(items))]
        video = sample_clips(model, items, seeds, num_frames=16, height=32, width=32,
                             ddim_steps=20, guidance_scale=3.0, batch_size=4)
        out[split] = {"proxy_reward": judge(video, items).tolist(),
                      "oracle_score": [judge_clip(c.numpy(), p).score
                                       for c, p in zip(video, items)]}
    return out


def paired(after: list[float], before: list[float]) -> dict:
    """Mean and standard error of the per-clip differences after - before."""
    d = [a - b for a, b in zip(after, before)]
    sem = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return {"mean": statistics.fmean(d), "sem": sem, "clips": len(d),
            "improved": sum(x > 0 for x in d)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    t_start = time.time()
    preset = Config.preset("tiny-world")
    splits = world_splits(args.per_split)
    reward = build_reward(preset.reward, preset.reward_checkpoint)
    judge = RewardJudge(reward, preset.reward, preset.segments)
    results: dict = {
        "benchmark": "lora_init", "args": {k: v for k, v in vars(args).items()},
        "machine": machine_info(args.note),
        "seeds": {"fine_tuning": args.seed, "evaluation_first_clip": EVAL_SEED,
                  "prompts": "ivlite.evaluation.world_splits(per_split, seed=0)"},
        "preset": {"name": "tiny-world", "learning_rate": preset.learning_rate,
                   "lora_rank": preset.lora_rank, "lora_init": preset.lora_init},
        "protocol": "same fine-tuning seed (batches, noise) for every init; evaluation clips "
                    "from the same noise and prompts before and after (DDIM 20, guidance 3, "
                    "UNet in eval mode); proxy = tiny HPS on SegVR's first frames",
        "splits": splits, "inits": {}}
    base = load_tiny_world()
    before = score_clips(base, judge, splits, args.clips)
    results["base"] = {s: {k: statistics.fmean(v) for k, v in d.items()}
                       for s, d in before.items()}
    after_all = {}
    for init in args.inits:
        t0 = time.time()
        cfg = preset.override({"lora_init": init, "max_steps": args.steps, "seed": args.seed,
                               "save_every": args.steps,
                               "out_dir": str(Path(args.runs) / f"{init}-seed{args.seed}")})
        spread = init_spread(init, cfg, args.seed)
        model = load_tiny_world()
        run = finetune(cfg, model=model, reward=reward, progress=False)
        rewards = [r["reward"] for r in run.log]
        w = min(args.window, len(rewards))
        after = score_clips(model, judge, splits, args.clips)
        after_all[init] = after
        results["inits"][init] = {
            "init_spread": spread, "after_training": adapter_size(model.unet),
            "training_reward": {"first_steps": statistics.fmean(rewards[:w]),
                                "last_steps": statistics.fmean(rewards[-w:]), "window": w},
            "change": {s: {k: paired(after[s][k], before[s][k]) for k in after[s]}
                       for s in splits},
            "seconds": round(time.time() - t0, 1)}
        change = results["inits"][init]["change"]
        print(f"{init}: A std {spread['A_std_all']:.4f}, relative update "
              f"{results['inits'][init]['after_training']['relative_update_mean']:.2e}, "
              + ", ".join(f"{s} proxy {change[s]['proxy_reward']['mean']:+.4f}"
                          for s in splits), flush=True)
    if len(args.inits) == 2:
        a, b = args.inits
        results[f"{b}_minus_{a}"] = {s: {k: paired(after_all[b][s][k], after_all[a][s][k])
                                         for k in after_all[a][s]} for s in splits}
    results["machine"]["load_average_end"] = machine_info()["load_average_1_5_15"]
    results["total_seconds"] = round(time.time() - t_start, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out} in {results['total_seconds']:.0f} s")
    return results


if __name__ == "__main__":
    main()
