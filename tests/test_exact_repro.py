"""Bit-exact reproducibility beyond batch 1: reward text features that do not depend on which
batch a caption came in, adapter files with the same bytes for the same run, and sampling that
gives the same clips for the same seed after fine-tuning the same model object."""

import hashlib

import torch
from safetensors.torch import load_file

from ivlite.config import Config
from ivlite.trainer import finetune

PROMPTS = ["a red circle moving left", "a blue square moving up",
           "a green triangle moving right", "a yellow circle moving down"]
BATCHED = dict(num_frames=4, segments=2, ddim_steps=5, prompts=PROMPTS, batch_size=2,
               grad_accum=2, save_every=2)


def _cfg(tmp_path, name, **kw):
    return Config.preset("tiny-random", out_dir=str(tmp_path / name), **{**BATCHED, **kw})


def test_resume_at_batch_2_and_accumulation_2_is_bit_exact(tmp_path):
    straight = finetune(_cfg(tmp_path, "straight", max_steps=4), progress=False)
    finetune(_cfg(tmp_path, "split", max_steps=2), progress=False)
    resumed = finetune(_cfg(tmp_path, "split", max_steps=4, resume=True), progress=False)
    a = load_file(straight.adapter_dir / "adapter_model.safetensors")
    b = load_file(resumed.adapter_dir / "adapter_model.safetensors")
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert a.keys() == b.keys() and not differ, f"{len(differ)} of {len(a)} tensors differ"
    assert [r["loss"] for r in resumed.log] == [r["loss"] for r in straight.log[2:]]


def _hf_clip_reward():
    from transformers import CLIPConfig, CLIPModel

    from ivlite.rewards import HFClipReward
    from ivlite.tokenizer import clip_tokenizer

    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=16))
    return HFClipReward(model, clip_tokenizer(), resize=32, crop=(32, 32))


def test_text_features_do_not_depend_on_the_batch_a_caption_came_in():
    """ClipReward (HPSv2, the tiny world's reward), HFClipReward (PickScore) and the video
    model's prompt encoder: a caption first seen among others gets the very same features as
    the same caption encoded alone by a fresh object."""
    from ivlite.models import tiny_random_model
    from ivlite.rewards import ClipReward, tiny_random_clip
    from ivlite.rewards.clip import clip_tokenizer_fn

    others = ["a blue square moving up", "an extraordinarily long caption about a green "
              "triangle that wanders slowly to the right across a grey background"] * 4
    builders = {
        "ClipReward": (lambda: ClipReward(tiny_random_clip(seed=0), clip_tokenizer_fn()),
                       "text_features"),
        "HFClipReward": (_hf_clip_reward, "text_features"),
        "VideoModel": (lambda: tiny_random_model(seed=0), "encode_prompts")}
    for name, (build, method) in builders.items():
        alone = getattr(build(), method)([PROMPTS[0]])[0]
        for position in (0, 5):
            batch = others[:position] + [PROMPTS[0]] + others[position:]
            among = getattr(build(), method)(batch)[position]
            assert torch.equal(alone, among), f"{name}: caption at {position} of {len(batch)}"


def test_safetensors_files_have_the_same_bytes_for_the_same_content(tmp_path):
    from safetensors import safe_open

    from ivlite.common import save_safetensors

    tensors = {"b": torch.arange(6.0).view(2, 3), "a": torch.ones(4, dtype=torch.float16)}
    metadata = {f"key{i}": str(i) for i in range(8)}
    digests = set()
    for i in range(4):
        path = save_safetensors(tensors, tmp_path / f"{i}.safetensors", dict(metadata))
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
        loaded = load_file(path)
        assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
        with safe_open(path, framework="pt") as fh:
            assert fh.metadata() == metadata
    assert len(digests) == 1


def test_two_identical_runs_write_byte_identical_files(tmp_path):
    """Every safetensors file of the run folder (adapter, checkpoints) has the same bytes."""
    runs = [finetune(_cfg(tmp_path, name, max_steps=2, batch_size=1, grad_accum=1),
                     progress=False).out_dir for name in ("a", "b")]
    for _ in range(3):  # a run's adapter is written again on resume: same bytes every time
        files = sorted(p.relative_to(runs[0]) for p in runs[0].rglob("*.safetensors"))
        assert "adapter/adapter_model.safetensors" in {str(f) for f in files}
        for name in files:
            assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name
        finetune(_cfg(tmp_path, "b", max_steps=2, batch_size=1, grad_accum=1, resume=True),
                 progress=False)


def test_sampling_after_finetune_repeats_with_the_same_seed(tmp_path, tiny_model, tiny_reward):
    """finetune leaves the model's modes as it found them; sampling and evaluation run the UNet
    in eval mode (its temporal convolutions' dropout 0.1 off) and give the caller's mode back."""
    from ivlite.evaluation import evaluate, evaluate_splits, sample_clips, sample_videos

    assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in tiny_model.unet.modules())
    kw = dict(num_frames=4, height=32, width=32, ddim_steps=3, guidance_scale=3.0, seed=5)
    tiny_model.unet.train()
    tiny_model.unet.time_proj.eval()  # a mixed state: every submodule's own mode comes back
    reward_modes = [m.training for m in tiny_reward.modules()]
    finetune(_cfg(tmp_path, "run", max_steps=1, batch_size=1, grad_accum=1), model=tiny_model,
             reward=tiny_reward, progress=False)
    assert tiny_model.unet.training and not tiny_model.unet.time_proj.training
    assert [m.training for m in tiny_reward.modules()] == reward_modes
    assert not any(m.training for m in tiny_model.vae.modules())
    modes = [m.training for m in tiny_model.unet.modules()]
    first = sample_videos(tiny_model, PROMPTS[:2], **kw)
    assert torch.equal(first, sample_videos(tiny_model, PROMPTS[:2], **kw))
    clips = [sample_clips(tiny_model, PROMPTS[:2], [5, 6], num_frames=4, height=32, width=32,
                          ddim_steps=3, batch_size=4) for _ in range(2)]
    assert torch.equal(*clips)
    scores = [evaluate(tiny_model, tiny_reward, PROMPTS[:2], segments=2, **kw)["mean"]
              for _ in range(2)]
    assert scores[0] == scores[1]
    split = [evaluate_splits(tiny_model, tiny_reward, {"a": PROMPTS[:2]}, oracle=False,
                             segments=2, **kw)["splits"]["a"]["reward"] for _ in range(2)]
    assert split[0] == split[1]
    assert [m.training for m in tiny_model.unet.modules()] == modes
    tiny_model.unet.eval()
    assert torch.equal(first, sample_videos(tiny_model, PROMPTS[:2], **kw))
    assert not any(m.training for m in tiny_model.unet.modules())
