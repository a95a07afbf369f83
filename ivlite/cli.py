"""The ``ivlite`` command: ``finetune``, ``sample``, ``evaluate`` and ``demo``.

Every field of :class:`~ivlite.config.Config` is a flag (``--tau 0.5``, ``--lambda-tar 2``,
``--prompts "[a cat, a dog]"``; values are read as YAML), applied over ``--preset`` and then
``--config FILE.yaml``. Mistakes end with one line naming the field and the allowed range, not a
traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import fields
from pathlib import Path

from .config import PRESETS, Config, ConfigError, first_line, parse_value


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS),
                        help="start from a preset (default: tiny-random, or the config file's)")
    parser.add_argument("--config", default=None, help="YAML file of field: value")
    group = parser.add_argument_group("config fields (values parsed as YAML)")
    for f in fields(Config):
        group.add_argument("--" + f.name.replace("_", "-"), dest="cfg_" + f.name, default=None,
                           metavar="VALUE", help=f"default: {getattr(Config(), f.name)!r}")


def _config_from_args(args: argparse.Namespace, with_prompt: bool = True) -> Config:
    if args.config:
        cfg = Config.from_yaml(args.config)
        if args.preset:
            raise ConfigError("give either --preset or --config (which may name a preset)")
    else:
        cfg = Config.preset(args.preset or "tiny-random")
    values = {}
    for f in fields(Config):
        text = getattr(args, "cfg_" + f.name)
        if text is not None:
            values[f.name] = parse_value(f.name, text)
    if with_prompt and getattr(args, "prompt", None):  # sample/evaluate --prompt: checked
        values["prompts"] = args.prompt  # like config prompts
    return cfg.override(values).validate()


def _check_inference_args(args: argparse.Namespace) -> None:
    """The flags of sample/evaluate that are not config fields."""
    if not math.isfinite(args.lora_scale):
        raise ConfigError(f"--lora-scale={args.lora_scale} must be a finite number")
    if getattr(args, "seeds", 1) < 1:
        raise ConfigError(f"--seeds={args.seeds} must be an integer >= 1")
    if args.adapter:
        from .lora import read_adapter

        read_adapter(args.adapter)  # a missing or corrupt adapter fails before the model loads


def _load_for_inference(cfg: Config, adapter: str | None, lora_scale: float):
    import torch

    from .common import resolve_device
    from .lora import load_adapter, set_lora_scale
    from .models import load_video_model
    from .trainer import check_environment, check_model_fits

    check_environment(cfg)
    device = resolve_device(cfg.device)  # check_environment has vetted the name
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision, torch.float32)
    model = load_video_model(cfg.model, dtype=dtype)
    check_model_fits(cfg, model)
    if adapter:
        load_adapter(model.unet, adapter)
        set_lora_scale(model.unet, lora_scale)
    model.to(device, dtype)
    model.unet.eval()
    return model


def _set_threads(args: argparse.Namespace, cfg: Config | None = None) -> None:
    """Every verb, after its input checks and before its heavy work: torch's thread count by
    :mod:`ivlite.threads`' rule, said in one line on stderr (stdout stays the command's output).
    ``cfg``'s environment is checked first, so that a mistake found there stays the only line."""
    if cfg is not None:
        from .trainer import check_environment

        check_environment(cfg)  # the verbs check again before loading a model: fast then
    from .threads import use_threads

    print(use_threads(args.threads), file=sys.stderr)


def cmd_finetune(args: argparse.Namespace) -> int:
    cfg = _config_from_args(args)  # before the heavy imports: a mistake is reported at once
    _set_threads(args, cfg)
    from .trainer import finetune

    result = finetune(cfg)
    last = result.log[-1] if result.log else {}
    print(f"done: {result.steps} steps in {result.out_dir}; adapter in {result.adapter_dir}"
          + (f"; last reward {last['reward']:.4f}" if last else ""))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    cfg = _config_from_args(args)
    _check_inference_args(args)
    _set_threads(args, cfg)
    from .evaluation import sample_videos
    from .video_io import write_video

    prompts = cfg.prompts
    model = _load_for_inference(cfg, args.adapter, args.lora_scale)
    latents = sample_videos(model, prompts, num_frames=cfg.num_frames, height=cfg.height,
                            width=cfg.width, ddim_steps=cfg.ddim_steps,
                            guidance_scale=cfg.guidance_scale, seed=cfg.seed)
    frames = model.decode_video(latents)
    out = Path(args.out)
    for i, prompt in enumerate(prompts):
        path = write_video(frames[i].transpose(0, 1), out / f"{i:03d}.{args.format}")
        print(f"{path}\t{prompt}")
    return 0


def _training_captions(cfg: Config, spec: str | None) -> list[str]:
    """Captions counted as training captions in the evaluation report: those of ``spec`` (a list
    in VGen's ``video|||caption`` format, or a caption table), else of the config's training
    data (its prompts for ``generated``, not those of ``--prompt``; the world's in-domain
    scenes; a table's captions)."""
    from .data import read_captions
    from .prompts import read_caption_list

    source = spec or cfg.data
    if spec is None and cfg.data == "generated":
        return list(cfg.prompts)
    if spec is None and cfg.data == "world":
        from .world.captions import split_scenes

        return [scene.caption for scene in split_scenes("in_domain")]
    path = Path(source)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise ConfigError(f"--train-captions={source!r}: no such file")
        return read_caption_list(path)
    return [caption for _, caption in read_captions(path)]


def cmd_evaluate(args: argparse.Namespace) -> int:
    cfg = _config_from_args(args)
    _check_inference_args(args)
    _set_threads(args, cfg)
    from .evaluation import evaluate, to_markdown
    from .prompts import training_overlap
    from .rewards import build_reward

    train_captions = _training_captions(_config_from_args(args, with_prompt=False),
                                        args.train_captions)
    splits = None
    if args.splits:
        from .evaluation import load_splits

        splits = load_splits(args.splits, args.per_split, cfg.seed)  # before the model loads
    model = _load_for_inference(cfg, args.adapter, args.lora_scale)
    reward = build_reward(cfg.reward, cfg.reward_checkpoint)
    if hasattr(reward, "to"):
        reward.to(model.device)
    if splits:  # per prompt split: reward, second judge, oracle, temporal consistency
        from .evaluation import run_split_evaluation, splits_markdown

        results = run_split_evaluation(
            model, reward, splits, args.out, seeds=args.seeds, judge=args.judge or "auto",
            reward_name=cfg.reward, train_captions=train_captions,
            extra={"model": cfg.model, "adapter": args.adapter}, num_frames=cfg.num_frames,
            height=cfg.height, width=cfg.width, ddim_steps=cfg.ddim_steps,
            guidance_scale=cfg.guidance_scale, segments=cfg.segments, seed=cfg.seed)
        print(splits_markdown(results), end="")
        return 0
    results = evaluate(model, reward, cfg.prompts, seeds=args.seeds,
                       num_frames=cfg.num_frames, height=cfg.height, width=cfg.width,
                       ddim_steps=cfg.ddim_steps, guidance_scale=cfg.guidance_scale,
                       segments=cfg.segments, seed=cfg.seed)
    results.update(model=cfg.model, adapter=args.adapter, reward=cfg.reward,
                   train_overlap=training_overlap(cfg.prompts, train_captions))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(results, indent=2))
    (out / "evaluation.md").write_text(to_markdown(results, cfg.reward))
    print(to_markdown(results, cfg.reward), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import shutil

    out = Path(args.out)
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps={args.steps} must be an integer >= 1")
    from .world.demo_files import check_out

    resuming = check_out(out, args.force)  # ConfigError for a folder it must not touch
    if args.force and out.exists():
        shutil.rmtree(out)
    _set_threads(args)
    again = demo_command(args)
    if resuming:
        print(f"resuming the interrupted demo in {out} (its saved scores and checkpoints are "
              f"kept; `{again} --force` starts over)", file=sys.stderr)
    try:
        from .world.demo import REWARD_NOTE, run_demo, summary_table, target_lines

        metrics = run_demo(out, steps=args.steps)
    except KeyboardInterrupt:
        print(f"interrupted; what is done is saved in {out}: run `{again}` to continue where it "
              f"stopped", file=sys.stderr)
        return 130
    print(summary_table(metrics), end="")
    print(REWARD_NOTE.format(s=metrics["config"]["segments"]))
    print("; ".join(target_lines(metrics)))
    print(f"{metrics['steps']} steps in {metrics['seconds']:.0f} s; videos, before/after figure, "
          f"reward curve, adapter and metrics.json in {out}")
    return 0


def demo_command(args: argparse.Namespace) -> str:
    """The command that reruns this demo without starting over (no ``--force``)."""
    import shlex

    words = ["ivlite", "demo", "--out", args.out]
    if args.steps is not None:
        words += ["--steps", str(args.steps)]
    if args.threads is not None:
        words += ["--threads", str(args.threads)]
    return shlex.join(words)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ivlite", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("finetune", help="InstructVideo reward fine-tuning (LoRA)")
    _add_config_flags(p)
    p.set_defaults(func=cmd_finetune)
    for name, func, help_text in (("sample", cmd_sample, "generate clips, optionally with an adapter"),
                                  ("evaluate", cmd_evaluate, "score generated clips with a reward")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--prompt", action="append", help="a prompt (repeatable); default: "
                       "the config's prompts")
        p.add_argument("--adapter", default=None, help="adapter folder written by finetune")
        p.add_argument("--lora-scale", type=float, default=1.0)
        p.add_argument("--out", default=f"runs/{name}")
        if name == "sample":
            p.add_argument("--format", choices=("gif", "mp4"), default="gif")
        else:
            p.add_argument("--seeds", type=int, default=1, help="clips per prompt")
            p.add_argument("--splits", default=None, help="evaluate per prompt split: 'world' "
                           "(the tiny world's in-domain, held-out and out-of-domain prompts), "
                           "'paper' (ivlite's animals, new-animals, non-animals), 'vgen:DIR' "
                           "(the paper's 263/22/46 captions from a local ali-vilab/VGen "
                           "checkout DIR) or a YAML file of split: [prompts]")
            p.add_argument("--train-captions", default=None, help="captions the report counts "
                           "as training captions: a VGen list (.txt, video|||caption lines) or "
                           "a caption table (.csv or folder); default: the config's "
                           "training data (its prompts with data=generated)")
            p.add_argument("--per-split", type=int, default=4,
                           help="prompts per split with --splits world")
            p.add_argument("--judge", default=None, help="second judge with --splits: "
                           "oracle-quality (default on the tiny world), oracle-score or a reward")
        _add_config_flags(p)
        p.set_defaults(func=func)
    p = sub.add_parser("demo", help="InstructVideo on the tiny world, before/after evidence")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: preset's)")
    p.add_argument("--force", action="store_true", help="start over: delete --out's earlier "
                   "demo (without it an interrupted demo in --out continues where it stopped)")
    p.set_defaults(func=cmd_demo)
    for p in sub.choices.values():
        p.add_argument("--threads", default=None, metavar="N",
                       help="torch threads (default: $OMP_NUM_THREADS, else 1: more threads "
                            "than idle cores can make each step 8x slower)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from .threads import choose_threads

        choose_threads(args.threads)  # a bad value is reported before any other work
        return args.func(args)
    except (ConfigError, ValueError, OSError) as err:  # FileNotFoundError is an OSError
        # One line: library messages (ffmpeg, safetensors, hub) can run to pages.
        print(f"ivlite {args.command}: error: {first_line(err)}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        from .trainer import NonFiniteError

        if not isinstance(err, NonFiniteError):
            raise
        print(f"ivlite {args.command}: stopped: {first_line(err)}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is intact (resume with --resume true)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
