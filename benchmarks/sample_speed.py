"""How long the shipped tiny world takes to sample a clip on this machine.

One clip is 16 frames of 32x32: a 20-step DDIM chain with classifier-free guidance (20 UNet
evaluations, each on a batch of 2: conditional and unconditional) and one VAE decode, exactly what
``ivlite.evaluation.sample_clips`` and ``ivlite demo`` run. For each torch thread count it times
``--clips`` clips one at a time (the median and the spread of the wall time, and the process's CPU
time per clip) and one batch of ``--batch`` clips (the wall time per clip), after one untimed
warm-up clip. Writes ``benchmarks/results/sample_speed_tiny.json`` (``--out``) with the machine
and its load, and prints a table.

    python -m benchmarks.sample_speed                   # 1 and 2 threads, 10 clips, batch of 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

from benchmarks.settings import machine_info
from ivlite.evaluation import sample_clips
from ivlite.world.tiny_models import load_tiny_world

PROMPT = "a red circle moving left"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    p.add_argument("--clips", type=int, default=10, help="clips timed one at a time (>= 1)")
    p.add_argument("--batch", type=int, default=8, help="clips in the timed batch (>= 1)")
    p.add_argument("--ddim-steps", type=int, default=20)
    p.add_argument("--guidance-scale", type=float, default=3.0,
                   help="classifier-free guidance (the demo's and the report's)")
    p.add_argument("--world", default=None, help="tiny-world folder (default: the shipped one)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sample_speed_tiny.json"))
    p.add_argument("--note", default=None, help="a note stored with the results")
    args = p.parse_args(argv)
    try:
        args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        p.error(f"--threads={args.threads!r}: expected comma-separated integers such as 1,2")
    if not args.threads or min(args.threads) < 1:
        p.error(f"--threads={args.threads!r}: each thread count must be >= 1")
    for name in ("clips", "batch", "ddim_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)}: must be >= 1")
    if not args.guidance_scale >= 0:
        p.error(f"--guidance-scale={args.guidance_scale}: must be >= 0 (1 = no guidance)")
    return args


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(model, threads: int, clips: int, batch: int, ddim_steps: int,
            guidance_scale: float) -> dict:
    torch.set_num_threads(threads)
    sample = lambda prompts, seed: sample_clips(model, prompts, ddim_steps=ddim_steps,  # noqa: E731
                                                guidance_scale=guidance_scale, seed=seed,
                                                height=32, width=32)
    sample([PROMPT], 0)  # warm-up: first-call allocations and kernel selection
    walls, cpus = zip(*(_timed(lambda i=i: sample([PROMPT], i + 1)) for i in range(clips)))
    batch_wall, _ = _timed(lambda: sample([PROMPT] * batch, 100))
    return {"threads": threads, "clips": clips,
            "seconds_per_clip": {"median": statistics.median(walls), "min": min(walls),
                                 "max": max(walls)},
            "cpu_seconds_per_clip": statistics.median(cpus),
            "batch": batch, "batch_seconds_per_clip": batch_wall / batch}


def main(argv=None) -> dict:
    args = parse_args(argv)
    model = load_tiny_world(args.world) if args.world else load_tiny_world()
    info = machine_info(args.note)
    rows = [measure(model, t, args.clips, args.batch, args.ddim_steps, args.guidance_scale)
            for t in args.threads]
    results = {"benchmark": "sample_speed", "prompt": PROMPT, "ddim_steps": args.ddim_steps,
               "guidance_scale": args.guidance_scale, "frames": 16,
               "unet_evaluations_per_clip": args.ddim_steps,
               "machine": {**info, "load_average_end": machine_info()["load_average_1_5_15"]},
               "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'threads':>7s} {'s/clip (median, min-max)':>26s} {'CPU s/clip':>10s} "
          f"{'s/clip in a batch':>18s}")
    for r in rows:
        s = r["seconds_per_clip"]
        print(f"{r['threads']:7d} {s['median']:10.3f} ({s['min']:.3f}-{s['max']:.3f}) "
              f"{r['cpu_seconds_per_clip']:10.3f} {r['batch_seconds_per_clip']:12.3f} "
              f"(batch of {r['batch']})")
    print(f"{info['cpu']}; load before {info['load_average_1_5_15']}; written to {out}")
    return results


if __name__ == "__main__":
    main()
