"""Why InstructVideo's reward rises in training but not in samples: edits against samples.

InstructVideo trains on *edits* (a real clip noised to t_start = 551 and denoised through the last
12 DDIM steps, gradient through t = 1 only), while the paper and ``ivlite evaluate`` score
*samples* (pure noise through all 20 steps). On the tiny world the training reward rises while the
sampled reward does not (``ablations_tiny*.md``, ``overoptimisation_tiny.md``). This script tells
the two explanations apart for an adapter trained in the same run:

1. the **edit reward**: tiny-hps of fresh in-domain renders (never trained on) edited at the
   training's tau by the base model and by the fine-tuned one, the same noise for both. If it
   rises, the adapter learned what it was trained on and the problem is transfer to sampling;
2. the **sample reward**: the usual full chain from noise, the same noise for both;
3. **where the adapter acts**: for each timestep t of the 20-step grid, the relative change of the
   guided noise prediction, ||eps_tuned(x_t, t) - eps_base(x_t, t)|| / ||eps_base(x_t, t)||, on
   renders noised to t. InstructVideo's gradient only ever sees t <= t_start; the steps above it
   (951 ... 601) are where a sample's layout is decided;
4. the sample reward with the adapter at half strength (LoRA scale 0.5).

Every setting of ``--settings`` (names of :data:`benchmarks.settings.SETTINGS`) is trained at every
learning rate of ``--learning-rates`` for the same budget of CPU seconds from the shipped tiny
world; a row is named ``"<setting> (lr <lr>)"``.

    OMP_NUM_THREADS=1 python -m benchmarks.edit_vs_sample --budget-seconds 150 \
        --settings instructvideo,draft1,full-backprop --learning-rates 1e-3
    OMP_NUM_THREADS=1 python -m benchmarks.edit_vs_sample --append --settings instructvideo \
        --learning-rates 2e-4,5e-5

Writes ``--out``.json and ``--out``.md (default ``benchmarks/results/edit_vs_sample_tiny``).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

from benchmarks.settings import machine_info, parse_settings, setting_config
from ivlite.config import Config


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default="instructvideo,full-backprop",
                   help="comma-separated setting names of benchmarks.settings")
    p.add_argument("--budget-seconds", type=float, default=150.0,
                   help="CPU seconds of training steps per setting")
    p.add_argument("--learning-rates", default="",
                   help="comma-separated learning rates, each setting trained at each (default: "
                        "the tiny-world preset's)")
    p.add_argument("--append", action="store_true",
                   help="add the rows to an existing --out file measured with the same "
                        "evaluation (its base-model scores must match)")
    p.add_argument("--train-clips", type=int, default=64)
    p.add_argument("--eval-clips", type=int, default=8,
                   help="fresh in-domain renders edited, and prompts sampled, per model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", default=None)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "edit_vs_sample_tiny"))
    return p.parse_args(argv)


def _stats(values) -> dict:
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values)}


@torch.no_grad()
def frame_reward(model, reward, latents: torch.Tensor, prompts: list[str], segments: int = 4
                 ) -> torch.Tensor:
    """(B,) tiny-hps on the first frame of each of ``segments`` segments, averaged per clip: the
    :class:`~ivlite.judges.RewardJudge` score, decoding only the frames it reads."""
    from ivlite.judges import RewardJudge
    from ivlite.method.segvr import decode_segments, sample_frame_indices

    b, _, f = latents.shape[:3]
    idx = sample_frame_indices(b, f, segments, "first", device=latents.device)
    frames = decode_segments(model.vae, latents, idx)  # (B * S, 3, H, W)
    return RewardJudge(reward, "tiny-hps", segments)(frames.view(b, segments, *frames.shape[1:]),
                                                     prompts)


@torch.no_grad()
def edit_reward(model, reward, clips, cfg: Config, seed: int) -> torch.Tensor:
    """Reward of ``clips`` edited at ``cfg.tau`` (grad-free, eval mode), fixed noise."""
    from ivlite.method.editing import edit

    x0, prompts = clips.latents, list(clips.captions)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    out = edit(model.unet, model.scheduler, x0, model.encode_prompts(prompts),
               model.encode_prompts([""]), tau=cfg.tau, ddim_steps=cfg.ddim_steps, grad_steps=0,
               guidance_scale=cfg.guidance_scale, noise=noise)
    return frame_reward(model, reward, out.latents, prompts)


@torch.no_grad()
def sample_reward(model, reward, prompts: list[str], cfg: Config, seed: int) -> torch.Tensor:
    """Reward of clips sampled from pure noise through the full ``cfg.ddim_steps`` chain."""
    from ivlite.method.ddim import sample_noise
    from ivlite.method.editing import generate

    shape = model.latent_shape(len(prompts), cfg.num_frames, cfg.height, cfg.width)
    noise = sample_noise(shape, generator=torch.Generator().manual_seed(seed))
    out = generate(model.unet, model.scheduler, shape, model.encode_prompts(prompts),
                   model.encode_prompts([""]), ddim_steps=cfg.ddim_steps,
                   guidance_scale=cfg.guidance_scale, noise=noise)
    return frame_reward(model, reward, out.latents, prompts)


@torch.no_grad()
def eps_change_per_timestep(model, clips, cfg: Config, seed: int) -> dict[str, float]:
    """t -> mean over clips of ||eps_tuned - eps_base|| / ||eps_base|| (guided, eval mode)."""
    from ivlite.method.ddim import chain_timesteps, guided_noise
    from ivlite.method.lora import set_lora_scale

    x0, prompts = clips.latents, list(clips.captions)
    cond, uncond = model.encode_prompts(prompts), model.encode_prompts([""])
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for t in chain_timesteps(model.scheduler, cfg.ddim_steps, 1.0).tolist():
        noise = torch.randn(x0.shape, generator=gen)
        xt = model.scheduler.add_noise(x0, noise, torch.tensor([t]))
        eps = {}
        for scale in (0.0, 1.0):
            set_lora_scale(model.unet, scale)
            eps[scale] = guided_noise(model.unet, xt, t, cond, uncond, cfg.guidance_scale)
        set_lora_scale(model.unet, 1.0)
        num = (eps[1.0] - eps[0.0]).flatten(1).norm(dim=1)
        out[str(int(t))] = float((num / eps[0.0].flatten(1).norm(dim=1)).mean())
    return out


def run(args: argparse.Namespace) -> dict:
    from ivlite.method.ddim import start_timestep
    from ivlite.early_stop import TimeBudget
    from ivlite.world.captions import world_splits
    from ivlite.method.lora import set_lora_scale
    from ivlite.registry import build_reward
    from ivlite.trainer import finetune
    from ivlite.world.data import world_clips
    from ivlite.world.tiny_models import load_tiny_world

    torch.set_num_threads(1)
    info = machine_info(args.note)
    t_start = time.time()
    base_cfg = Config.preset("tiny-world").override(
        {"device": "cpu", "seed": args.seed, "warmup_steps": 0})
    rates = [float(x) for x in args.learning_rates.split(",") if x.strip()] \
        or [base_cfg.learning_rate]
    pristine = load_tiny_world()
    reward = build_reward(base_cfg.reward)
    train = world_clips(pristine, "in_domain", clips=args.train_clips, seed=args.seed,
                        num_frames=base_cfg.num_frames)
    # Fresh renders (another seed) of the same in-domain scenes: edited, never trained on.
    held = world_clips(pristine, "in_domain", clips=args.eval_clips, seed=args.seed + 777,
                       num_frames=base_cfg.num_frames)
    prompts = world_splits(args.eval_clips, seed=args.seed)["in_domain"][:args.eval_clips]
    base_edit = edit_reward(pristine, reward, held, base_cfg, seed=1)
    base_sample = sample_reward(pristine, reward, prompts, base_cfg, seed=2)

    rows = {}
    with tempfile.TemporaryDirectory(prefix="ivlite-edit-vs-sample-") as tmp:
        for name, lr in [(n, lr) for n in parse_settings(args.settings) for lr in rates]:
            row_name = f"{name} (lr {lr:g})"
            model = copy.deepcopy(pristine)
            cfg = setting_config(name, base_cfg, out_dir=f"{tmp}/{name}-{lr:g}", max_steps=10**6,
                                 save_every=10**6, learning_rate=lr)
            result = finetune(cfg, model=model, reward=reward, clips=train, progress=False,
                              stop_when=TimeBudget(args.budget_seconds, clock="cpu"))
            model.unet.eval()
            log = result.log
            quarter = max(1, len(log) // 4)
            tuned_edit = edit_reward(model, reward, held, base_cfg, seed=1)
            tuned_sample = sample_reward(model, reward, prompts, base_cfg, seed=2)
            set_lora_scale(model.unet, 0.5)
            half_sample = sample_reward(model, reward, prompts, base_cfg, seed=2)
            set_lora_scale(model.unet, 1.0)
            rows[row_name] = {
                "setting": name, "learning_rate": lr, "steps": result.steps,
                "train_cpu_seconds": round(sum(r["cpu_seconds"] for r in log), 1),
                "train_reward_first_quarter": statistics.fmean(r["reward"] for r in log[:quarter]),
                "train_reward_last_quarter": statistics.fmean(r["reward"] for r in log[-quarter:]),
                "edit_reward": _stats(tuned_edit), "edit_gain": _stats(tuned_edit - base_edit),
                "sample_reward": _stats(tuned_sample),
                "sample_gain": _stats(tuned_sample - base_sample),
                "sample_gain_lora_half": _stats(half_sample - base_sample),
                # per clip (paired: the same clip or noise before and after), for intervals
                "edit_gain_per_clip": (tuned_edit - base_edit).tolist(),
                "sample_gain_per_clip": (tuned_sample - base_sample).tolist(),
                "eps_change": eps_change_per_timestep(model, held, base_cfg, seed=3),
                "config": cfg.to_dict()}
            print(f"[{row_name}] {result.steps} steps; edit gain "
                  f"{rows[row_name]['edit_gain']['mean']:+.4f}, sample gain "
                  f"{rows[row_name]['sample_gain']['mean']:+.4f}", flush=True)
            del model
    return {"benchmark": "edit reward against sample reward on the tiny world",
            "args": vars(args), "t_start": start_timestep(pristine.scheduler, base_cfg.ddim_steps,
                                                           base_cfg.tau),
            "base": {"edit_reward": _stats(base_edit), "sample_reward": _stats(base_sample)},
            "settings": rows,
            "machine": {**info, "load_average_end": machine_info()["load_average_1_5_15"]},
            "total_seconds": round(time.time() - t_start, 1)}


def merge(old: dict, new: dict) -> dict:
    """``new``'s rows added to ``old``'s, refused unless both scored the same base model alike."""
    for key in ("edit_reward", "sample_reward"):
        if abs(old["base"][key]["mean"] - new["base"][key]["mean"]) > 1e-6:
            raise SystemExit(f"--append: the base model's {key} differs from the file's "
                             f"({new['base'][key]['mean']:.6f} vs {old['base'][key]['mean']:.6f}): "
                             f"another evaluation, another model or other code; write a new file")
    merged = {**old, "settings": {**old["settings"], **new["settings"]},
              "total_seconds": old["total_seconds"] + new["total_seconds"]}
    merged["runs"] = old.get("runs", [{"args": old["args"], "machine": old["machine"]}]) + \
        [{"args": new["args"], "machine": new["machine"]}]
    return merged


def main(argv=None) -> dict:
    from benchmarks.results_view import edit_vs_sample_markdown

    args = parse_args(argv)
    results = run(args)
    out = Path(args.out)
    if args.append and out.with_suffix(".json").is_file():
        results = merge(json.loads(out.with_suffix(".json").read_text()), results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    md = edit_vs_sample_markdown(results)
    out.with_suffix(".md").write_text(md)
    print(md)
    return results


if __name__ == "__main__":
    main()
