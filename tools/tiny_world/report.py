"""The oracle's verdict on a tiny-world text-to-video model, with the motion diagnostics.

    python -m tools.tiny_world.report --samples 48 --motion-check --out report.json
    python -m tools.tiny_world.report --samples 0 --grid docs/samples.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ivlite.models import VideoModel
from ivlite.world.oracle import judge_clip
from ivlite.evaluation import sample_clips
from ivlite.world.report import oracle_report


def main(argv: list[str] | None = None) -> dict:
    """``python -m tools.tiny_world.report``: the oracle's verdict on a tiny-world model (default the
    shipped one), per split or for one category, with the motion diagnostics on request."""
    import argparse
    import json

    from ivlite.world.captions import COLOURS, SHAPES, SPLITS, all_categories, parse_motions, \
        scenes_for, split_scenes
    from ivlite.world.tiny_models import load_tiny_world

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--world", default=None, help="tiny-world folder (default: the shipped one)")
    p.add_argument("--samples", type=int, default=48, help="clips per split (0: no oracle report)")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--ddim-steps", type=int, default=20)
    p.add_argument("--grid", default=None,
                   help="also write a PNG of samples, two prompts per split (the README's grid)")
    p.add_argument("--out", default=None, help="also write the report as JSON here")
    p.add_argument("--motion-check", action="store_true",
                   help="also report the mean displacement per motion word (motion_word_effect), "
                        "the loss with motion or colour words swapped (word_sensitivity), the "
                        "text encoder's word distances, the first sampling step's travel, the "
                        "share of the clips' variance each word explains (word_signal) and "
                        "whether the UNet's features know the frame index (frame_index_probe) and "
                        "whether it reads the path off the noisy clip (leak_reading)")
    p.add_argument("--frames", type=int, default=16,
                   help="frames per sampled clip (a model trained with train_t2v --frames)")
    p.add_argument("--frame-stride", type=int, default=1,
                   help="with --word-sensitivity: every n-th rendered frame (train_t2v "
                        "--frame-stride)")
    p.add_argument("--word-sensitivity", action="store_true",
                   help="also the denoiser's loss with the motion or colour word swapped "
                        "(word_sensitivity) on 48 renders of --frames x --frame-stride, at t = "
                        "999, 900, 800, 700, 500, 300")
    p.add_argument("--motions", default="left,right,up,down", metavar="left,right,...",
                   help="score only these motions (a model trained with train_t2v --motions)")
    p.add_argument("--motion-effect", action="store_true",
                   help="also the mean displacement per motion word (motion_word_effect), every "
                        "word from the same noises: 8 clips of --category, else 6 categories")
    p.add_argument("--category", default=None, metavar="'COLOUR SHAPE'",
                   help="score this category's scenes (every motion and background) instead of "
                        "the three splits, e.g. for a run trained with --only-category")
    args = p.parse_args(argv)
    if not 1 <= args.frames <= 16:
        p.error(f"--frames {args.frames} is out of range; allowed: 1 <= frames <= 16")
    if not (args.frame_stride >= 1 and (args.frames - 1) * args.frame_stride < 16):
        p.error(f"--frame-stride {args.frame_stride} is out of range; allowed: 1 <= frame "
                f"stride and (frames - 1) * stride + 1 <= 16 rendered frames")
    try:
        motions = parse_motions(args.motions)
    except ValueError as err:
        p.error(f"--motions {args.motions!r}: {err}")
    groups = {split: split_scenes(split) for split in SPLITS}
    if args.category is not None:
        category = tuple(args.category.split())
        if category not in all_categories():
            p.error(f"--category {args.category!r} is not a category of the world; allowed: "
                    f"'COLOUR SHAPE' with COLOUR in {list(COLOURS)} and SHAPE in {list(SHAPES)}")
        groups = {f"category {args.category}": scenes_for([category])}
    model = load_tiny_world(args.world)
    if args.grid:
        sample_grid(model, args.grid, ddim_steps=args.ddim_steps, guidance_scale=args.guidance)
    groups = {name: [s for s in scenes if s.motion in motions] for name, scenes in groups.items()}
    report = {name: oracle_report(model, scenes, samples=args.samples,
                                  ddim_steps=args.ddim_steps, guidance_scale=args.guidance,
                                  num_frames=args.frames)
              for name, scenes in groups.items() if args.samples > 0}
    if args.motion_effect:
        from .motion_check import motion_word_effect

        kwargs = {"categories": [category], "repeats": 8} if args.category else {}
        report["motion_word_effect"] = motion_word_effect(
            model, ddim_steps=args.ddim_steps, guidance_scale=args.guidance, motions=motions,
            num_frames=args.frames, **kwargs)
    if args.word_sensitivity:
        from .motion_check import word_sensitivity

        report["word_sensitivity"] = word_sensitivity(
            model, timesteps=(999, 900, 800, 700, 500, 300), num_frames=args.frames,
            frame_stride=args.frame_stride)
    if args.motion_check:
        from ivlite.world.data import world_clips
        from .motion_check import first_step_travel, frame_index_probe, leak_reading, \
            motion_word_effect, word_distances, word_sensitivity, word_signal

        clips = world_clips(model, clips=1536, seed=3)  # 16 renders per in-domain caption
        report["word_signal"] = word_signal(clips.latents, clips.captions)
        report["frame_index_probe"] = frame_index_probe(model, clips.latents[:96],
                                                        clips.captions[:96])
        report["motion_word_effect"] = motion_word_effect(model, ddim_steps=args.ddim_steps,
                                                          guidance_scale=args.guidance)
        report["word_sensitivity"] = word_sensitivity(model)
        report["word_distances"] = word_distances(model)
        report["first_step_travel"] = first_step_travel(
            model, [f"a red circle moving {d}" for d in ("left", "right", "up", "down")])
        report["leak_reading"] = leak_reading(model)
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


def sample_grid(model: VideoModel, path: str | Path, *, per_split: int = 2, ddim_steps: int = 20,
                guidance_scale: float = 3.0, seed: int = 0) -> list[str]:
    """Write a PNG: one row per sampled clip (every other frame), two prompts per split, each
    labelled with its split and what the oracle saw. Returns the prompts."""
    from ivlite.viz import clip_rows
    from ivlite.world.captions import SPLITS, split_scenes

    rng = np.random.default_rng(seed)
    prompts, labels, splits = [], [], []
    for split in SPLITS:
        scenes = split_scenes(split)
        prompts += [scenes[i].caption for i in rng.choice(len(scenes), per_split, replace=False)]
        splits += [split.replace("_", "-")] * per_split
    clips = sample_clips(model, prompts, ddim_steps=ddim_steps, guidance_scale=guidance_scale,
                         seed=seed, height=32, width=32)
    for prompt, split, clip in zip(prompts, splits, clips):
        v = judge_clip(clip.numpy(), prompt)
        seen = " ".join(x or "?" for x in (v.colour, v.shape, v.motion))
        labels.append(f"[{split}] {prompt}\n(oracle sees: {seen})")
    frames = list(range(0, clips.shape[1], 2))
    fig = clip_rows(clips, labels, frames=frames)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return prompts


if __name__ == "__main__":
    main()
