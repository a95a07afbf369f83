"""The ``ivlite`` command: ``finetune``, ``sample``, ``evaluate`` and ``demo``.

Every field of :class:`~ivlite.config.Config` is a flag (``--tau 0.5``, ``--lambda-tar 2``,
``--prompts "[a cat, a dog]"``; values are read as YAML), applied over ``--preset`` and then
``--config FILE.yaml``; ``sample`` and ``evaluate`` take only the fields they read
(:data:`SAMPLE_FIELDS`, :data:`EVALUATE_FIELDS`). Mistakes end with one line naming the field and
the allowed range, not a traceback, before any model loads; output folders are checked first
too, and what a command would write over is refused without ``--force``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import fields
from pathlib import Path

from .config import PRESETS, Config, ConfigError, first_line, parse_value

# The config fields sample and evaluate read: any other flag would be accepted and ignored.
# (evaluate reads data for the captions its report counts as training captions.)
SAMPLE_FIELDS = ("model", "prompts", "num_frames", "height", "width", "ddim_steps",
                 "guidance_scale", "seed", "device", "mixed_precision")
EVALUATE_FIELDS = SAMPLE_FIELDS + ("reward", "reward_checkpoint", "segments", "data")
EVALUATE_FILES = ("evaluation.json", "evaluation.md")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (no usage block), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_config_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None
                      ) -> None:
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS),
                        help="start from a preset (default: tiny-random, or the config file's)")
    parser.add_argument("--config", default=None, help="YAML file of field: value")
    group = parser.add_argument_group("config fields (values parsed as YAML)")
    for f in fields(Config):
        if only is not None and f.name not in only:
            continue
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
        text = getattr(args, "cfg_" + f.name, None)
        if text is not None:
            values[f.name] = parse_value(f.name, text)
    if with_prompt and getattr(args, "prompt", None):  # sample/evaluate --prompt
        # sample would ignore --prompts; evaluate reads them as the run's training prompts.
        if "prompts" in values and args.command == "sample":
            raise ConfigError("give either --prompt (repeatable) or --prompts, not both")
        for text in args.prompt:
            if not text.strip():
                raise ConfigError(f"--prompt {text!r} is empty; allowed: a non-empty prompt")
        values["prompts"] = args.prompt
    return cfg.override(values).validate()


def _check_inference_args(args: argparse.Namespace) -> None:
    """The flags of sample/evaluate that are not config fields."""
    if args.lora_scale is not None and not math.isfinite(args.lora_scale):
        raise ConfigError(f"--lora-scale={args.lora_scale} must be a finite number")
    if args.lora_scale is not None and not args.adapter:
        raise ConfigError(f"--lora-scale={args.lora_scale} scales an adapter; give --adapter")
    if getattr(args, "seeds", 1) < 1:
        raise ConfigError(f"--seeds={args.seeds} must be an integer >= 1")
    if args.adapter:
        from .adapters import read_adapter

        try:  # a missing or corrupt adapter fails before the model loads
            read_adapter(args.adapter)
        except (OSError, ValueError) as err:
            raise ConfigError(f"--adapter: {first_line(err)}") from None
    if getattr(args, "prompt", None):
        _check_prompts(args.prompt, "--prompt")


def _check_prompts(prompts: list[str], name: str) -> None:
    """Token counts of ``prompts`` (named ``name`` in the error), before any model loads."""
    from .data import check_prompt_lengths
    from .tokenizer import clip_tokenizer

    try:
        check_prompt_lengths(clip_tokenizer(), prompts, name)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _check_split_args(args: argparse.Namespace, cfg: Config) -> dict[str, list[str]] | None:
    """evaluate's --splits, --per-split and --judge, checked (and the splits read) up front."""
    from .evaluation import load_splits
    from .registry import JUDGES, WORLD_SPLITS, available_rewards

    given_per_split = args.per_split is not None
    per_split = args.per_split if given_per_split else 4
    if not args.splits:
        for flag, value in (("--judge", args.judge), ("--per-split", args.per_split)):
            if value is not None:
                raise ConfigError(f"{flag}={value!r} applies to --splits; give --splits")
        return None
    if given_per_split and args.splits != WORLD_SPLITS:
        raise ConfigError(f"--per-split={per_split} applies to --splits {WORLD_SPLITS}; the "
                          f"other splits list their own prompts")
    if per_split < 1:
        raise ConfigError(f"--per-split={per_split} must be an integer >= 1")
    judges = list(JUDGES) + available_rewards()
    if args.judge is not None and args.judge not in judges:
        raise ConfigError(f"--judge={args.judge!r} is not a judge; allowed: {judges}")
    try:
        splits = load_splits(args.splits, per_split, cfg.seed)
    except (OSError, ValueError) as err:
        raise ConfigError(first_line(err)) from None
    for split, prompts in splits.items():
        _check_prompts(prompts, f"--splits {args.splits!r}, split {split!r}: prompts")
    return splits


def _load_for_inference(cfg: Config, adapter: str | None, lora_scale: float):
    from .adapters import load_adapter
    from .common import resolve_device, weight_dtype
    from .method.lora import set_lora_scale
    from .registry import load_model
    from .trainer import check_environment, check_model_fits

    check_environment(cfg)
    device = resolve_device(cfg.device)  # check_environment has vetted the name
    lora_scale = 1.0 if lora_scale is None else lora_scale
    dtype = weight_dtype(cfg.mixed_precision)
    model = load_model(cfg.model, dtype=dtype)
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

    result = finetune(cfg, force=args.force)
    last = result.log[-1] if result.log else {}
    print(f"done: {result.steps} steps in {result.out_dir}; adapter in {result.adapter_dir}"
          + (f"; last reward {last['reward']:.4f}" if last else ""))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from .folders import check_output_folder

    cfg = _config_from_args(args)
    _check_inference_args(args)
    check_output_folder(args.out, "--out", [f"{i:03d}.{args.format}"
                                            for i in range(len(cfg.prompts))], args.force)
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
    data (a source of :data:`ivlite.registry.DATA` says which: its prompts for ``generated``,
    not those of ``--prompt``; or a table's captions)."""
    from .data import read_captions
    from .prompts import read_caption_list
    from .registry import DATA

    source = spec or cfg.data
    if spec is None and cfg.data in DATA:
        return DATA[cfg.data].captions(cfg)
    path = Path(source)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise ConfigError(f"--train-captions={source!r}: no such file")
        return read_caption_list(path)
    return [caption for _, caption in read_captions(path)]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .folders import check_output_folder

    cfg = _config_from_args(args)
    _check_inference_args(args)
    splits = _check_split_args(args, cfg)
    check_output_folder(args.out, "--out", EVALUATE_FILES, args.force)
    _set_threads(args, cfg)
    from .evaluation import evaluate, to_markdown
    from .prompts import training_overlap
    from .registry import build_reward

    train_captions = _training_captions(_config_from_args(args, with_prompt=False),
                                        args.train_captions)
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

    from .folders import check_output_folder

    out = Path(args.out)
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps={args.steps} must be an integer >= 1")
    check_output_folder(out, "--out", (), True)  # a file, a path under a file, not writable
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
    p.add_argument("--force", action="store_true", help="replace the run files (config, log, "
                   "checkpoints, adapter) already in --out-dir")
    _add_config_flags(p)
    p.set_defaults(func=cmd_finetune)
    for name, func, help_text in (("sample", cmd_sample, "generate clips, optionally with an adapter"),
                                  ("evaluate", cmd_evaluate, "score generated clips with a reward")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--prompt", action="append", help="a prompt (repeatable); default: "
                       "the config's prompts")
        p.add_argument("--adapter", default=None, help="adapter folder written by finetune")
        p.add_argument("--lora-scale", type=float, default=None,
                       help="scale of --adapter's effect (default 1: as trained)")
        p.add_argument("--out", default=f"runs/{name}")
        p.add_argument("--force", action="store_true", help="replace files already in --out")
        if name == "sample":
            p.add_argument("--format", choices=("gif", "mp4"), default="gif")
        else:
            p.add_argument("--seeds", type=int, default=1, help="clips per prompt")
            p.add_argument("--splits", default=None, help="evaluate per prompt split: a name "
                           "of ivlite.registry.SPLITS (world: the tiny world's in-domain, "
                           "held-out and out-of-domain prompts; paper: ivlite's animals, "
                           "new-animals, non-animals), 'vgen:DIR' "
                           "(the paper's 263/22/46 captions from a local ali-vilab/VGen "
                           "checkout DIR) or a YAML file of split: [prompts]")
            p.add_argument("--train-captions", default=None, help="captions the report counts "
                           "as training captions: a VGen list (.txt, video|||caption lines) or "
                           "a caption table (.csv or folder); default: the config's "
                           "training data (its prompts with data=generated)")
            p.add_argument("--per-split", type=int, default=None,
                           help="prompts per split with --splits world (default 4)")
            p.add_argument("--judge", default=None, help="second judge with --splits: a name "
                           "of ivlite.registry.JUDGES or a reward (default: the oracle's frame "
                           "quality when it covers every prompt, else none)")
        _add_config_flags(p, SAMPLE_FIELDS if name == "sample" else EVALUATE_FIELDS)
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
