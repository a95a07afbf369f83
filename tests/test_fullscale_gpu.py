"""On a GPU with the real weights: ModelScopeT2V + HPSv2 (+ PickScore as a judge), one real step.

Marked ``gpu``; each test skips cleanly without CUDA or without the weights in the local hub cache
(nothing is downloaded: ``local_files_only``). Fetch the weights once, on a machine with network::

    hf download ali-vilab/text-to-video-ms-1.7b \
        --include "*.json" --include "*.txt" --include "*fp16.safetensors"
    hf download xswu/HPSv2 HPS_v2_compressed.pt
    hf download yuvalkirstain/PickScore_v1
    hf download laion/CLIP-ViT-H-14-laion2B-s32B-b79K --include "*.json" --include "*.txt"

(``hf`` is huggingface_hub's command since 1.0; each ``--include`` takes one pattern. Weights
fetched as ``damo-vilab/text-to-video-ms-1.7b``, the repository's first name, are found too.)

or point ``IVLITE_MODELSCOPE`` at a local diffusers folder and ``IVLITE_HPS_CHECKPOINT`` at the
``.pt`` file. Run with ``pytest -m gpu tests``.
"""

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

ROOT = Path(__file__).resolve().parents[1]


def _cached(repo: str, *files: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return all(isinstance(try_to_load_from_cache(repo, f), str) for f in files)


def _modelscope():
    """(name or folder, variant) of ModelScopeT2V weights available offline, else skip."""
    from ivlite.hub import find_cached
    from ivlite.models import MODELSCOPE_REPO

    folder = os.environ.get("IVLITE_MODELSCOPE")
    if folder:
        return folder, "auto"
    found = find_cached(MODELSCOPE_REPO)
    if found is None:
        pytest.skip(f"{MODELSCOPE_REPO} (or its other name) is not completely in the local hub "
                    f"cache, and IVLITE_MODELSCOPE is unset")
    name, variant = found
    return name, None if variant == "fp32" else variant


def _hps_checkpoint():
    from ivlite.rewards.hps import find_hps_checkpoint

    try:
        return str(find_hps_checkpoint("v2", os.environ.get("IVLITE_HPS_CHECKPOINT"),
                                       local_files_only=True))
    except FileNotFoundError as err:
        pytest.skip(f"no HPS v2 checkpoint offline: {err}")


def test_modelscope_hpsv2_one_instructvideo_step(tmp_path):
    from ivlite.config import Config
    from ivlite.models import load_video_model
    from ivlite.rewards import hps_reward
    from ivlite.trainer import finetune

    name, variant = _modelscope()
    checkpoint = _hps_checkpoint()
    model = load_video_model(name, dtype=torch.float16, variant=variant, local_files_only=True)
    assert sum(p.numel() for p in model.unet.parameters()) == 1_411_233_860
    reward = hps_reward("v2", checkpoint)
    cfg = Config.preset("modelscope", out_dir=str(tmp_path / "run"), max_steps=1, grad_accum=1,
                        device="cuda", prompts=["a cat walking slowly across a sunny room"])
    result = finetune(cfg, model=model, reward=reward, progress=False)
    step = result.log[0]
    assert step["unet_calls"] == 12  # int(0.6 * 20) guided steps, 551 -> 1
    assert math.isfinite(step["loss"]) and 0 < step["reward"] < 1  # TAR-weighted, unnormalised

    from ivlite.evaluation import evaluate

    model.unet.eval()
    scores = evaluate(model, reward, cfg.prompts, num_frames=16, height=256, width=256,
                      ddim_steps=20)
    assert 0.15 < scores["mean"] < 0.35  # paper, Table 1: ModelScopeT2V's HPSv2 about 0.25


def test_pickscore_judges_generated_frames():
    from ivlite.rewards import check_reward_gradients, pickscore_reward
    from ivlite.rewards.pickscore import PICKSCORE_MODEL, PICKSCORE_PROCESSOR

    if not (_cached(PICKSCORE_MODEL, "config.json")
            and _cached(PICKSCORE_PROCESSOR, "tokenizer_config.json")):
        pytest.skip("PickScore_v1 or its processor is not in the local hub cache")
    reward = pickscore_reward(dtype=torch.float16, local_files_only=True).cuda()
    frames = torch.rand(2, 3, 256, 256, device="cuda") * 2 - 1
    scores = reward(frames, ["a cat", "a dog"])
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    assert 0 < float(scores.mean()) < 40  # logit-scaled cosine (x ~100)
    assert check_reward_gradients(reward, ["a cat"], 256, 256, device="cuda") > 0


def test_full_scale_benchmark_runs_instructvideo_on_the_gpu(tmp_path):
    """Random weights, no download: only CUDA is needed."""
    spec = importlib.util.spec_from_file_location("full_scale",
                                                  ROOT / "benchmarks" / "full_scale.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--modes", "instructvideo", "--steps", "1", "--warmup", "1",
                "--out", str(tmp_path / "bench.json")])
    row = json.loads((tmp_path / "bench.json").read_text())["results"][0]
    assert "error" not in row, row.get("error")
    assert row["unet_calls"] == 12 and row["unet_parameters"] == 1_411_233_860
    assert row["peak_gib"] > row["weights_gib"] > 2.5  # the fp16 UNet alone is 2.6 GiB
