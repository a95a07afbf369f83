"""Full scale without a GPU or a download: the real loaders on scaled-down models of the real
architectures, saved in the real formats.

- ModelScopeT2V: a ModelScope-shaped model saved as a diffusers repository folder goes through
  ``load_video_model`` -> ``finetune`` (Config.model = the folder) -> ``ivlite sample``, and the
  adapter goes into a diffusers ``TextToVideoSDPipeline`` with a LoRA scale.
- HPSv2: a ViT-H-14-shaped open_clip config, an HPS-format checkpoint file, strict loading.
- PickScore: a tiny transformers CLIPModel folder through the same loader as the hub model.
- The full-size configs give the documented parameter counts (built on the meta device).
- The GPU benchmark's --smoke mode.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ivlite.config import Config
from ivlite.models import MODELSCOPE_TEXT, MODELSCOPE_UNET, MODELSCOPE_VAE, load_video_model, \
    random_modelscope_model, save_video_model
from ivlite.registry import build_reward
from ivlite.rewards import check_reward_gradients
from ivlite.rewards.hps import SMALL_ARCH, SMALL_VIT_H_14, VIT_H_14, find_hps_checkpoint, \
    hps_reward, register_open_clip_config

ROOT = Path(__file__).resolve().parents[1]
# 64x64 frames -> 8x8 latents: ModelScope's UNet halves them three times.
SMALL = dict(num_frames=4, height=64, width=64, ddim_steps=5, segments=2)


@pytest.fixture(scope="module", autouse=True)
def _module_cache(tmp_path_factory):
    """Module-scoped fixtures run before conftest's per-test cache folder: give them one too, so
    the tokenizer files and generated training clips never land in the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IVLITE_CACHE", str(tmp_path_factory.mktemp("ivlite-cache")))
        yield


@pytest.fixture(scope="module")
def ms_folder(tmp_path_factory):
    """A scaled-down ModelScopeT2V, random weights, saved as the hub repository is laid out."""
    model = random_modelscope_model("small", seed=0)
    return save_video_model(model, tmp_path_factory.mktemp("ms") / "text-to-video-small")


@pytest.fixture(scope="module")
def trained(ms_folder, tmp_path_factory):
    """Two fine-tuning steps through Config(model=<folder>): the real loader path."""
    from ivlite.trainer import finetune

    out = tmp_path_factory.mktemp("run") / "run"
    cfg = Config.preset("tiny-random", model=str(ms_folder), out_dir=str(out), max_steps=2,
                        save_every=2, prompts=["a cat walking"], device="cpu", **SMALL)
    return finetune(cfg, progress=False)


def test_saved_folder_has_the_hub_layout_and_loads_by_class(ms_folder):
    index = json.loads((ms_folder / "model_index.json").read_text())
    assert index["_class_name"] == "TextToVideoSDPipeline"
    assert index["unet"] == ["diffusers", "UNet3DConditionModel"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (ms_folder / sub).is_dir(), sub

    model = load_video_model(str(ms_folder))
    fresh = random_modelscope_model("small", seed=0)
    for (name, a), b in zip(model.unet.state_dict().items(), fresh.unet.state_dict().values()):
        assert torch.equal(a, b), name
    cfg = model.unet.config  # ModelScope's block layout at small width
    assert tuple(cfg.down_block_types) == tuple(MODELSCOPE_UNET["down_block_types"])
    assert tuple(cfg.up_block_types) == tuple(MODELSCOPE_UNET["up_block_types"])
    assert cfg.layers_per_block == 2 and cfg.norm_num_groups == 32
    assert model.scheduler.config.beta_schedule == "scaled_linear"
    ids = model.tokenizer(["a cat"], padding="max_length", max_length=77).input_ids[0]
    assert ids[:4] == [49406, 320, 2368, 49407]  # the real CLIP BPE
    assert model.latent_shape(1, 16, 256, 256) == (1, 4, 16, 32, 32)

    half = load_video_model(str(ms_folder), dtype=torch.bfloat16)
    assert {half.unet.dtype, half.vae.dtype, half.text_encoder.dtype} == {torch.bfloat16}


def test_a_folder_without_a_3d_unet_is_refused(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps(
        {"_class_name": "UNet2DConditionModel", "in_channels": 4}))
    with pytest.raises(ValueError, match="UNet2DConditionModel, not the UNet3DConditionModel"):
        load_video_model(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="unet/"):
        load_video_model(str(tmp_path / "unet"))


def test_finetune_and_sample_through_the_model_folder(ms_folder, trained, tmp_path, capsys):
    from ivlite.cli import main
    from ivlite.video_io import read_video

    assert trained.steps == 2 and all(r["unet_calls"] == 3 for r in trained.log)  # int(0.6 * 5)
    weights = load_file(trained.adapter_dir / "adapter_model.safetensors")
    # LoRA on spatial self-, cross- and temporal attention of the ModelScope-shaped UNet
    assert any(".attentions." in k and "attn2.to_k" in k for k in weights)
    assert any("temp_attentions" in k for k in weights)
    assert any("transformer_in" in k for k in weights)
    assert any(float(v.abs().sum()) > 0 for k, v in weights.items() if "lora_B" in k)
    assert main(["sample", "--model", str(ms_folder), "--adapter", str(trained.adapter_dir),
                 "--prompt", "a cat walking", "--num-frames", "4", "--height", "64", "--width",
                 "64", "--ddim-steps", "3", "--device", "cpu", "--out", str(tmp_path / "s")]) == 0
    assert read_video(tmp_path / "s" / "000.gif", 4).shape == (4, 3, 64, 64)


def test_adapter_loads_into_a_diffusers_pipeline_with_a_scale(ms_folder, trained):
    from diffusers import TextToVideoSDPipeline

    from ivlite.pipeline import load_into_pipeline, set_pipeline_lora_scale

    pipe = TextToVideoSDPipeline.from_pretrained(str(ms_folder))  # the folder is a hub-style repo
    pipe.set_progress_bar_config(disable=True)

    def clip():
        return pipe("a cat walking", num_frames=4, height=64, width=64, num_inference_steps=2,
                    guidance_scale=3.0, generator=torch.Generator().manual_seed(0),
                    output_type="pt").frames

    base = clip()
    assert base.shape == (1, 4, 3, 64, 64)
    load_into_pipeline(pipe, trained.adapter_dir, scale=0.0)
    # Scale 0 adds exactly zero, but the wrapped layers may take another matmul kernel: equal to
    # float32 rounding (exactly equal on an AMD EPYC, within 3e-6 on an Intel Xeon).
    at_zero = clip()
    torch.testing.assert_close(at_zero, base, rtol=0, atol=2e-5)
    set_pipeline_lora_scale(pipe, 1.0)
    tuned = clip()
    assert tuned.shape == base.shape and (tuned - base).abs().max() > 20 * (at_zero - base).abs().max() + 1e-5


def test_full_size_configs_have_the_documented_sizes():
    """Built on the meta device (no memory): the configs are ModelScopeT2V's and ViT-H-14's."""
    import open_clip
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        counts = [sum(p.numel() for p in m.parameters()) for m in (
            UNet3DConditionModel(**MODELSCOPE_UNET), AutoencoderKL(**MODELSCOPE_VAE),
            CLIPTextModel(CLIPTextConfig(**MODELSCOPE_TEXT)))]
    assert counts == [1_411_233_860, 83_653_863, 340_387_840]
    assert open_clip.get_model_config("ViT-H-14") == VIT_H_14
    for key in ("vision_cfg", "text_cfg"):  # the small copy keeps ViT-H-14's structure keys
        assert SMALL_VIT_H_14[key].keys() == VIT_H_14[key].keys()
    assert SMALL_VIT_H_14["vision_cfg"]["patch_size"] == 14


# --- HPSv2 ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_arch(tmp_path_factory):
    return register_open_clip_config(SMALL_ARCH, SMALL_VIT_H_14, tmp_path_factory.mktemp("oc"))


def _open_clip(arch, seed):
    import open_clip

    torch.manual_seed(seed)
    return open_clip.create_model(arch, pretrained=None)


def test_hps_checkpoint_loads_strictly_into_the_vit_h14_family(small_arch, tmp_path, monkeypatch):
    source = _open_clip(small_arch, seed=1)
    path = tmp_path / "HPS_v2_compressed.pt"
    torch.save({"state_dict": source.state_dict()}, path)  # as HPS ships it

    reward = hps_reward("v2", str(path), arch=small_arch)
    for (name, a), b in zip(reward.model.state_dict().items(), source.state_dict().values()):
        assert torch.equal(a, b), name
    assert reward.image_size == (56, 56)
    assert check_reward_gradients(reward, ["a cat", "a dog"], 64, 64) > 0
    frames = torch.rand(2, 3, 64, 64) * 2 - 1
    scores = reward(frames, ["a cat", "a dog"])
    assert scores.shape == (2,) and (scores.abs() <= 1).all()  # a cosine, no logit scale

    # a DistributedDataParallel-style file ("module." prefixes) is the same checkpoint
    torch.save({"state_dict": {"module." + k: v for k, v in source.state_dict().items()}},
               tmp_path / "ddp.pt")
    torch.testing.assert_close(hps_reward("v2", str(tmp_path / "ddp.pt"), arch=small_arch)(
        frames, ["a cat", "a dog"]), scores)

    # lookup order: explicit path, then hpsv2's cache ($HPS_ROOT), then the hub
    monkeypatch.setenv("HPS_ROOT", str(tmp_path))
    assert find_hps_checkpoint("v2") == path
    calls = []

    def fake_download(repo, filename, **kw):
        calls.append((repo, filename, kw.get("local_files_only")))
        raise OSError("offline")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    with pytest.raises(FileNotFoundError, match="HPS_v2.1_compressed.pt.*xswu/HPSv2"):
        find_hps_checkpoint("v2.1", local_files_only=True)
    assert calls == [("xswu/HPSv2", "HPS_v2.1_compressed.pt", True)]


def test_a_mismatched_hps_file_is_refused_clearly(small_arch, tmp_path):
    other = {**SMALL_VIT_H_14, "vision_cfg": {**SMALL_VIT_H_14["vision_cfg"], "width": 32}}
    other_arch = register_open_clip_config("ViT-H-14-ivlite-other", other, tmp_path)
    torch.save({"state_dict": _open_clip(other_arch, 0).state_dict()}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"does not fit the HPS .* have other shapes"):
        hps_reward("v2", str(tmp_path / "other.pt"), arch=small_arch)
    visual_only = {"state_dict": _open_clip(small_arch, 0).visual.state_dict()}
    torch.save(visual_only, tmp_path / "visual.pt")
    with pytest.raises(ValueError, match="weights are missing"):
        hps_reward("v2", str(tmp_path / "visual.pt"), arch=small_arch)
    torch.save({"state_dict": {}}, tmp_path / "empty.pt")
    with pytest.raises(ValueError, match="no state dict"):
        hps_reward("v2", str(tmp_path / "empty.pt"), arch=small_arch)
    torch.save({"state_dict": _open_clip(small_arch, 0).state_dict()}, tmp_path / "ok.pt")
    with pytest.raises(ValueError, match="not an open_clip model config"):
        hps_reward("v2", str(tmp_path / "ok.pt"), arch="ViT-H-15")


# --- PickScore --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pick_folder(tmp_path_factory):
    """A tiny random CLIPModel saved as PickScore_v1 is, with its tokenizer and processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from ivlite.tokenizer import clip_tokenizer

    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=16))
    folder = tmp_path_factory.mktemp("pick") / "PickScore-tiny"
    model.save_pretrained(folder)
    clip_tokenizer().save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}) \
        .save_pretrained(folder)
    return folder


def test_pickscore_follows_the_reward_protocol_and_the_reference_scores(pick_folder):
    import numpy as np
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    from ivlite.rewards import HFClipReward

    reward = build_reward("pickscore", str(pick_folder))  # the registry name, a local folder
    assert isinstance(reward, HFClipReward)
    prompts = ["a cat walking", "a red car on a street", "a cat walking"]
    frames = torch.rand(3, 3, 32, 32) * 2 - 1
    scores = reward(frames, prompts)
    assert scores.shape == (3,) and scores.dtype == torch.float32
    # resizing and cropping keep the score differentiable
    assert check_reward_gradients(reward, prompts[:2], 48, 40) > 0
    assert reward.preprocess(torch.zeros(2, 3, 48, 40)).shape == (2, 3, 32, 32)

    # reference: the authors' recipe on 8-bit PIL images through transformers' own processor
    processor = CLIPProcessor.from_pretrained(pick_folder)
    model = CLIPModel.from_pretrained(pick_folder).eval()
    images = [Image.fromarray(((f.permute(1, 2, 0).numpy() * 0.5 + 0.5) * 255).round()
                              .astype(np.uint8)) for f in frames]
    with torch.no_grad():
        img = model.get_image_features(**processor(images=images, return_tensors="pt"))
        txt = model.get_text_features(**processor(text=prompts, padding=True, truncation=True,
                                                  max_length=77, return_tensors="pt"))
    img, txt = (getattr(x, "pooler_output", x) for x in (img, txt))
    expected = model.logit_scale.exp() * torch.nn.functional.cosine_similarity(img, txt)
    torch.testing.assert_close(scores, expected, atol=0.02, rtol=0)  # 8-bit rounding only

    with pytest.raises(FileNotFoundError, match="config.json"):
        build_reward("pickscore", str(pick_folder.parent))


# --- prompt sets ------------------------------------------------------------------------------

def test_prompt_sets_mirror_the_paper_splits():
    import re

    from ivlite.prompts import ANIMAL_CAPTIONS, ANIMALS, NEW_ANIMALS, paper_splits, prompt_set, \
        resolve_prompts

    def mentions(text, species):
        return re.search(rf"\b{species}s?\b", text) is not None

    assert len(ANIMALS) == 45 and len(set(ANIMALS)) == 45
    assert NEW_ANIMALS == ("snail", "hippopotamus", "cheetah", "crocodile", "lobster", "octopus")
    assert not set(NEW_ANIMALS) & set(ANIMALS)
    assert all(mentions(caption, s) for s, caption in ANIMAL_CAPTIONS.items())
    animals, new = prompt_set("animals"), prompt_set("new-animals")
    other = prompt_set("non-animals")
    assert len(animals) == 45 and len(new) == 22 and len(other) >= 20
    assert all(sum(mentions(p, s) for s in NEW_ANIMALS) == 1 for p in new)
    assert {s for s in NEW_ANIMALS if any(mentions(p, s) for p in new)} == set(NEW_ANIMALS)
    for prompt in new + other:  # held-out splits never name an in-domain species
        assert not [s for s in ANIMALS if mentions(prompt, s)], prompt
    assert not [p for p in other if any(mentions(p, s) for s in NEW_ANIMALS)]
    assert len(set(animals + new + other)) == len(animals + new + other)
    assert resolve_prompts("new-animals") == new
    assert paper_splits() == {"animals": animals, "new-animals": new, "non-animals": other}
    assert resolve_prompts(["a red car", "new-animals"]) == ["a red car"] + new
    with pytest.raises(ValueError, match=r"prompts='animal': unknown prompt set; available: "
                                         r".*'new-animals'"):
        prompt_set("animal")


# --- the GPU benchmark, on the CPU ------------------------------------------------------------

def test_benchmark_smoke_mode(tmp_path):
    spec = importlib.util.spec_from_file_location("full_scale",
                                                  ROOT / "benchmarks" / "full_scale.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--smoke", "--out", str(tmp_path / "bench.json")])
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["device"] == "cpu-smoke" and saved["smoke"] is True
    rows = {r["mode"]: r for r in saved["results"]}
    assert list(rows) == ["instructvideo", "draft1-d20", "draft1-d50", "full-backprop-d20"]
    # smoke chains: D = 20 -> 4, 50 -> 6; InstructVideo runs int(0.6 * D) of them
    assert [rows[m]["unet_calls"] for m in rows] == [2, 4, 6, 4]
    assert [rows[m]["unet_backward_passes"] for m in rows] == [1, 1, 1, 4]
    assert rows["instructvideo"]["chain"] == "edit" and rows["draft1-d50"]["chain"] == "full"
    assert all(r["loss_finite"] and r["seconds_per_step"] > 0 for r in rows.values())
    assert saved["unet_config"]["down_block_types"] == list(MODELSCOPE_UNET["down_block_types"])
    assert report["results"] == saved["results"]
