"""ivlite's differentiable HPS score against the ``hpsv2`` package's own, same weights, same images.

``hpsv2`` cannot be a dependency of ivlite: version 1.2.0 misses its BPE vocabulary file (its
import fails), pins ``pytest==7.2.0`` and ``protobuf<4``, and scores only PIL images without
gradients (the ``hpsv2x`` fork ships the vocabulary but keeps the pins). So this script installs it
in a separate virtual environment and runs it there, in a child process:

1. ``--env`` (default ``/tmp/hpsv2-env``): ``python -m venv``, then ``pip install hpsv2==1.2.0``
   (``--package hpsv2x`` for the fork). A ``.pth`` file appends this interpreter's site-packages
   after the environment's own, so torch, torchvision and timm are shared (no 2 GB download) while
   hpsv2's pins, installed into the environment, take precedence there. For ``hpsv2`` the missing
   ``bpe_simple_vocab_16e6.txt.gz`` is copied from open_clip, which ships the same file.
2. A random open_clip model of ``--arch`` (``small``: ivlite's small ViT-H-14-shaped config with
   ViT-H-14's 224x224 input, the default; ``ViT-H-14``: HPSv2's real architecture, 986M
   parameters, about 7 GB of memory and many minutes on a CPU) is saved as an HPS checkpoint in
   the published format (``{"state_dict": ...}``, fp16), and test images as PNG files: smooth
   random patterns at 224x224 (no resizing anywhere), 256x256 (ModelScopeT2V's frames) and two
   non-square sizes.
3. The child process, in the hpsv2 environment with the network off, builds the model with
   hpsv2's own ``create_model_and_transforms`` and arguments (only ``pretrained=None`` instead of
   the LAION tag, which would download 4 GB of weights the checkpoint replaces anyway), and scores
   every image against every prompt with ``hpsv2.img_score.score(images, prompt, cp=checkpoint)``:
   its own checkpoint loading, preprocessing, tokenizer and score. It also saves its preprocessed
   image tensors.
4. ivlite scores the same pixels with ``hps_reward`` (strict load, :class:`ClipReward`'s tensor
   preprocessing), and once more on hpsv2's preprocessed tensors, which separates a difference of
   the model, tokenizer and score formula (should be ~1e-7) from one of the preprocessing.

    OMP_NUM_THREADS=1 python -m tools.hpsv2_parity               # small architecture, ~1 min
    OMP_NUM_THREADS=1 python -m tools.hpsv2_parity --arch ViT-H-14 \
        --out benchmarks/results/hpsv2_parity_vit_h_14.json

Results: ``benchmarks/results/hpsv2_parity.json`` (max and mean absolute score differences per
image size, all scores, versions).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = ((224, 224), (256, 256), (256, 320), (320, 256))  # (height, width)
IMAGES_PER_SIZE = 3
PROMPTS = ("a cat walking across a sunny room", "a red sports car on a mountain road",
           "an astronaut riding a horse, oil painting")
PACKAGES = {"hpsv2": "hpsv2==1.2.0", "hpsv2x": "hpsv2x==1.2.0"}
SMALL_224 = "ViT-H-14-ivlite-small-224"  # ivlite's small config at ViT-H-14's 224x224 input


# ----------------------------------------------------------------------------- the hpsv2 side
# (runs in the hpsv2 environment: imports hpsv2, torch, PIL and numpy only, never ivlite)


def hpsv2_side(work: Path) -> None:
    """Score ``work``'s images with hpsv2 and write ``hpsv2_scores.json`` and the preprocessed
    tensors ``hpsv2_inputs.pt`` ({file name: (3, 224, 224)})."""
    import torch
    from PIL import Image

    import hpsv2
    from hpsv2 import img_score
    from hpsv2.src.open_clip import add_model_config, create_model_and_transforms

    spec = json.loads((work / "spec.json").read_text())
    arch = spec["arch"]
    if spec.get("config"):
        path = work / f"{arch}.json"
        path.write_text(json.dumps(spec["config"]))
        add_model_config(str(path))
    # hpsv2's initialize_model() with its own arguments, except pretrained=None (no download).
    model, _, preprocess_val = create_model_and_transforms(
        arch, None, precision="amp", device=img_score.device, jit=False,
        force_quick_gelu=False, force_custom_text=False, force_patch_dropout=False,
        force_image_size=None, pretrained_image=False, image_mean=None, image_std=None,
        light_augmentation=True, aug_cfg={}, output_dict=True, with_score_predictor=False,
        with_region_predictor=False)
    img_score.model_dict.update(model=model, preprocess_val=preprocess_val)
    names = spec["images"]
    images = [Image.open(work / n) for n in names]
    scores = {p: [float(s) for s in img_score.score(images, p, cp=str(work / "hps.pt"))]
              for p in spec["prompts"]}
    inputs = {n: preprocess_val(im) for n, im in zip(names, images)}
    torch.save(inputs, work / "hpsv2_inputs.pt")
    import hpsv2.src.open_clip.version as oc_version

    version = "unknown"
    try:
        from importlib.metadata import version as dist_version

        version = dist_version(spec["package"])
    except Exception:
        pass
    (work / "hpsv2_scores.json").write_text(json.dumps({
        "scores": scores, "package": spec["package"], "package_version": version,
        "bundled_open_clip": oc_version.__version__, "torch": torch.__version__,
        "module": hpsv2.__file__}))


# ----------------------------------------------------------------------------- the environment


def ensure_env(env: Path, package: str) -> Path:
    """The hpsv2 environment's python, created and installed if missing."""
    python = env / "bin" / "python"
    if not python.exists():
        print(f"creating {env}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    # appended after the environment's own site-packages: hpsv2's pins win there
    (site / "zz-shared-torch.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = subprocess.run([str(python), "-c", f"import importlib.util as u; "
                            f"print(u.find_spec('hpsv2') is not None)"],
                           capture_output=True, text=True)
    if probe.stdout.strip() != "True":
        print(f"pip install {PACKAGES[package]} into {env}", flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", PACKAGES[package]], check=True)
    vocab = site / "hpsv2" / "src" / "open_clip" / "bpe_simple_vocab_16e6.txt.gz"
    if not vocab.exists():  # hpsv2 1.2.0 as published: its import fails without it
        import open_clip.tokenizer

        shutil.copyfile(open_clip.tokenizer.default_bpe(), vocab)
        print(f"copied open_clip's BPE vocabulary to {vocab}", flush=True)
    return python


# ----------------------------------------------------------------------------- the ivlite side


def make_images(work: Path, seed: int) -> list[str]:
    """Smooth random RGB patterns (low-frequency noise plus a gradient) as PNG files."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    names = []
    for h, w in SIZES:
        for i in range(IMAGES_PER_SIZE):
            coarse = torch.rand(1, 3, 6, 6, generator=gen)
            img = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0]
            img = img + 0.3 * torch.linspace(-1, 1, w).view(1, 1, w) * (i - 1)
            img = img + 0.05 * torch.randn(3, h, w, generator=gen)  # some fine detail
            pixels = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            name = f"img_{h}x{w}_{i}.png"
            Image.fromarray(np.ascontiguousarray(pixels)).save(work / name)
            names.append(name)
    return names


def _stats(diffs: list[float]) -> dict:
    return {"n": len(diffs), "max_abs": max(diffs), "mean_abs": sum(diffs) / len(diffs)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("small", "ViT-H-14"), default="small")
    parser.add_argument("--package", choices=sorted(PACKAGES), default="hpsv2")
    parser.add_argument("--env", default="/tmp/hpsv2-env", help="the hpsv2 virtual environment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "hpsv2_parity.json"))
    parser.add_argument("--note", default=None, help="recorded with the machine's details")
    parser.add_argument("--hpsv2-side", metavar="WORK", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hpsv2_side:
        hpsv2_side(Path(args.hpsv2_side))
        return {}

    import numpy as np
    import open_clip
    import torch
    from PIL import Image

    from benchmarks.settings import machine_info
    from ivlite.fake_hub import hps_checkpoint_bytes
    from ivlite.rewards import hps_reward
    from ivlite.rewards.hps import SMALL_VIT_H_14, register_open_clip_config

    python = ensure_env(Path(args.env), args.package)
    machine = machine_info(args.note)
    small = {**SMALL_VIT_H_14, "vision_cfg": {**SMALL_VIT_H_14["vision_cfg"], "image_size": 224}}
    arch = register_open_clip_config(SMALL_224, small) if args.arch == "small" else "ViT-H-14"
    with tempfile.TemporaryDirectory(prefix="hpsv2-parity-") as tmp:
        work = Path(tmp)
        (work / "hps.pt").write_bytes(hps_checkpoint_bytes(seed=args.seed, arch=arch))
        names = make_images(work, args.seed)
        (work / "spec.json").write_text(json.dumps({
            "arch": arch, "config": small if args.arch == "small" else None,
            "images": names, "prompts": list(PROMPTS), "package": args.package}))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": "",
               "HPS_ROOT": str(work / "hps-root")}
        print(f"hpsv2 scores ({args.package}, {arch}) ...", flush=True)
        subprocess.run([str(python), str(Path(__file__).resolve()), "--hpsv2-side", str(work)],
                       check=True, env=env)
        theirs = json.loads((work / "hpsv2_scores.json").read_text())
        their_inputs = torch.load(work / "hpsv2_inputs.pt", weights_only=True)

        print("ivlite scores ...", flush=True)
        reward = hps_reward("v2", str(work / "hps.pt"), arch=arch)
        frames = {n: torch.from_numpy(np.asarray(Image.open(work / n).convert("RGB")).copy())
                  .permute(2, 0, 1).float() / 127.5 - 1 for n in names}
        rows = []
        with torch.no_grad():  # image features once per image, then one dot product per prompt
            ours = {n: reward.image_features(frames[n][None])[0] for n in names}
            same = {n: torch.nn.functional.normalize(
                reward.model.encode_image(their_inputs[n][None]).float(), dim=-1)[0]
                for n in names}
            for prompt in PROMPTS:
                text = reward.text_features([prompt])[0]
                for name, hps in zip(names, theirs["scores"][prompt]):
                    rows.append(dict(image=name, prompt=prompt, hpsv2=hps,
                                     ivlite=float(ours[name] @ text),
                                     ivlite_on_hpsv2_input=float(same[name] @ text)))
    groups = {"square 224x224 (no resize)": lambda r: "224x224" in r["image"],
              "square 256x256": lambda r: "256x256" in r["image"],
              "non-square 256x320, 320x256": lambda r: "256x320" in r["image"]
              or "320x256" in r["image"], "all": lambda r: True}
    summary = {}
    for label, keep in groups.items():
        sel = [r for r in rows if keep(r)]
        summary[label] = {
            "end_to_end": _stats([abs(r["ivlite"] - r["hpsv2"]) for r in sel]),
            "same_preprocessed_input": _stats([abs(r["ivlite_on_hpsv2_input"] - r["hpsv2"])
                                               for r in sel]),
            "score_range": [min(r["hpsv2"] for r in sel), max(r["hpsv2"] for r in sel)]}
    report = {
        "what": "ivlite hps_reward vs the hpsv2 package's img_score.score, same random weights "
                "(HPS checkpoint format: {'state_dict': fp16}), same PNG images, every image x "
                "every prompt",
        "arch": arch, "architecture_config": small if args.arch == "small" else
        "open_clip model_configs/ViT-H-14.json",
        "parameters": sum(p.numel() for p in reward.model.parameters()),
        "seed": args.seed, "prompts": list(PROMPTS),
        "images": {"sizes_hxw": [list(s) for s in SIZES], "per_size": IMAGES_PER_SIZE,
                   "content": "smooth random RGB patterns, 8-bit PNG"},
        "preprocessing": {
            "hpsv2": "PIL image -> ToTensor -> ResizeMaxSize(224): longest side to 224, bicubic "
                     "(torchvision, antialiased), pad the short side with 0 (black) -> CLIP mean/"
                     "std",
            "ivlite": "tensor in [-1, 1] -> x/2+1/2, clamp -> F.interpolate to 224x224 bilinear "
                      "(no antialias, aspect ratio not kept) -> CLIP mean/std (as the official "
                      "InstructVideo code)"},
        "summary": summary, "rows": rows,
        "provenance": {"date": datetime.date.today().isoformat(),
                       "command": "python -m tools.hpsv2_parity " + shlex.join(
                           sys.argv[1:] if argv is None else argv),
                       "hpsv2_side": {k: v for k, v in theirs.items() if k != "scores"},
                       "ivlite_side": {"open_clip": open_clip.__version__}},
        "machine": {**machine, "load_average_end": [round(x, 2) for x in os.getloadavg()]},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for label, s in summary.items():
        e, q = s["end_to_end"], s["same_preprocessed_input"]
        print(f"{label:32s} end-to-end max {e['max_abs']:.2e} mean {e['mean_abs']:.2e} | "
              f"same input max {q['max_abs']:.2e} | hpsv2 scores {s['score_range'][0]:+.4f}.."
              f"{s['score_range'][1]:+.4f}")
    print(f"results: {out}")
    return report


if __name__ == "__main__":
    main()
