"""One sampler: ``sample_videos`` (latents) and ``sample_clips`` (the same, decoded), clip i from
the noise of its own seed whatever the batching."""

import pytest
import torch

from ivlite.evaluation import sample_clips, sample_videos

SETTINGS = dict(num_frames=4, height=32, width=32, ddim_steps=3)


def test_clips_are_the_latents_decoded_and_seed_means_seed_plus_i(tiny_model):
    prompts = ["a red circle moving left", "a blue square moving up", "a green triangle"]
    latents = sample_videos(tiny_model, prompts, seed=5, **SETTINGS)
    assert latents.shape == tiny_model.latent_shape(3, 4, 32, 32)
    assert torch.equal(latents, sample_videos(tiny_model, prompts, [5, 6, 7], **SETTINGS))
    clips = sample_clips(tiny_model, prompts, seed=5, **SETTINGS)
    assert clips.shape == (3, 4, 3, 32, 32) and clips.device.type == "cpu"
    assert torch.equal(clips, tiny_model.decode_video(latents).transpose(1, 2))
    assert torch.equal(clips[1:], sample_clips(tiny_model, prompts[1:], [6, 7], **SETTINGS))


def test_batching_shares_unet_calls_not_noise(tiny_model):
    prompts = ["a red circle moving left"] * 3
    one = sample_clips(tiny_model, prompts, [1, 2, 3], **SETTINGS)
    batched = sample_clips(tiny_model, prompts, [1, 2, 3], batch_size=2, **SETTINGS)
    torch.testing.assert_close(batched, one, atol=1e-5, rtol=0)
    assert not torch.equal(one[0], one[1])  # other seeds, other clips


def test_one_seed_per_prompt(tiny_model):
    with pytest.raises(ValueError, match="2 seeds for 3 prompts"):
        sample_videos(tiny_model, ["a", "b", "c"], [1, 2], **SETTINGS)
