"""The partial DDIM chain: start timesteps, where gradients flow, checkpointing, diffusers parity."""

import numpy as np
import pytest
import torch

from ivlite.grad_checkpointing import disable_unet_checkpointing, enable_unet_checkpointing, \
    is_checkpointing
from ivlite.method.ddim import chain_timesteps, ddim_scheduler, sample_noise, start_timestep
from ivlite.method.editing import edit, generate
from ivlite.models import modelscope_scheduler


@pytest.mark.parametrize("tau, steps, expected_start, expected_len", [
    (0.6, 20, 551, 12),   # the paper: t_start = 50 * 11 + 1
    (1.0, 20, 951, 20),
    (0.1, 20, 51, 2),
    (0.5, 10, 401, 5),
    (0.6, 50, 581, 30),
    (0.05, 20, 1, 1),
])
def test_start_timesteps(tau, steps, expected_start, expected_len):
    sched = modelscope_scheduler()
    ts = chain_timesteps(sched, steps, tau)
    assert start_timestep(sched, steps, tau) == expected_start
    assert len(ts) == expected_len
    assert int(ts[-1]) == 1
    assert (ts[:-1] - ts[1:] == 1000 // steps).all()


def test_modelscope_grid_and_bad_tau():
    grid = ddim_scheduler(modelscope_scheduler(), 20).timesteps
    assert grid.tolist() == list(range(951, 0, -50))
    with pytest.raises(ValueError, match="tau"):
        chain_timesteps(modelscope_scheduler(), 20, 0.04)


def test_offset_noise_is_per_frame_constant():
    gen = torch.Generator().manual_seed(0)
    plain = sample_noise((2, 4, 16, 8, 8), generator=gen)
    gen = torch.Generator().manual_seed(0)
    offset = sample_noise((2, 4, 16, 8, 8), offset_noise=0.1, generator=gen)
    diff = offset - plain
    # The difference is one constant per (clip, channel, frame), about 0.1 * N(0, 1).
    assert torch.allclose(diff, diff[..., :1, :1].expand_as(diff), atol=1e-6)
    assert 0.05 < diff[..., 0, 0].std() < 0.15


class _Recorder(torch.nn.Module):
    """Wraps a UNet; records, per call, whether the call's output received a gradient."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet
        self.calls, self.got_grad = 0, set()

    @property
    def dtype(self):
        return self.unet.dtype

    def forward(self, *args, **kwargs):
        out = self.unet(*args, **kwargs)
        index = self.calls
        self.calls += 1
        if out.sample.requires_grad:
            out.sample.register_hook(lambda g: self.got_grad.add(index))
        return out


def _trainable(unet):
    for p in unet.parameters():
        p.requires_grad_(False)
    p = next(unet.conv_out.parameters())
    p.requires_grad_(True)
    return p


@pytest.mark.parametrize("grad_steps", [1, 3, 12])
def test_gradients_reach_exactly_the_last_k_steps(tiny_model, grad_steps):
    m = tiny_model
    param = _trainable(m.unet)
    rec = _Recorder(m.unet)
    x0 = torch.randn(1, 4, 8, 4, 4)
    cond, uncond = m.encode_prompts(["a red circle"]), m.encode_prompts([""])
    out = edit(rec, m.scheduler, x0, cond, uncond, tau=0.6, ddim_steps=20, grad_steps=grad_steps,
               generator=torch.Generator().manual_seed(0))
    out.latents.square().mean().backward()
    assert rec.calls == out.unet_calls == 12
    assert rec.got_grad == set(range(12 - grad_steps, 12))
    assert param.grad is not None and param.grad.abs().sum() > 0


def test_no_gradient_anywhere_under_no_grad(tiny_model):
    m = tiny_model
    _trainable(m.unet)
    with torch.no_grad():
        out = edit(m.unet, m.scheduler, torch.randn(1, 4, 8, 4, 4), m.encode_prompts(["x"]),
                   m.encode_prompts([""]), grad_steps=1)
    assert not out.latents.requires_grad


def test_full_chain_runs_all_steps_with_grad_in_last(tiny_model):
    m = tiny_model
    _trainable(m.unet)
    rec = _Recorder(m.unet)
    out = generate(rec, m.scheduler, (1, 4, 8, 4, 4), m.encode_prompts(["x"]),
                   m.encode_prompts([""]), ddim_steps=10, grad_steps=2,
                   generator=torch.Generator().manual_seed(0))
    out.latents.sum().backward()
    assert out.timesteps.tolist() == list(range(901, 0, -100))
    assert rec.got_grad == {8, 9}


def test_checkpointed_and_plain_gradients_agree(tiny_model):
    m = tiny_model
    m.unet.requires_grad_(True).train()
    x0 = torch.randn(1, 4, 8, 4, 4)
    cond, uncond = m.encode_prompts(["a blue square"]), m.encode_prompts([""])

    def grads():
        m.unet.zero_grad(set_to_none=True)
        # Train mode: the temporal convolutions' dropout (p = 0.1) is active, and checkpointing
        # must replay the same masks when it recomputes a block.
        torch.manual_seed(0)
        out = edit(m.unet, m.scheduler, x0, cond, uncond, grad_steps=2,
                   generator=torch.Generator().manual_seed(3))
        out.latents.square().sum().backward()
        return {n: p.grad.clone() for n, p in m.unet.named_parameters() if p.grad is not None}

    plain = grads()
    enable_unet_checkpointing(m.unet)
    assert is_checkpointing(m.unet)
    ckpt = grads()
    disable_unet_checkpointing(m.unet)
    assert not is_checkpointing(m.unet)
    assert plain.keys() == ckpt.keys() and len(plain) > 50
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7)


def test_checkpointing_rejects_a_model_without_blocks():
    with pytest.raises(TypeError, match="no down_blocks"):
        enable_unet_checkpointing(torch.nn.Linear(2, 2))


def test_partial_chain_matches_diffusers_video_to_video(tiny_model):
    """Without gradients, ivlite's edit == VideoToVideoSDPipeline(strength=tau), same seed."""
    from diffusers import VideoToVideoSDPipeline

    m = tiny_model
    pipe = VideoToVideoSDPipeline(vae=m.vae, text_encoder=m.text_encoder, tokenizer=m.tokenizer,
                                  unet=m.unet, scheduler=modelscope_scheduler())
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(0)
    video = [rng.random((32, 32, 3)).astype(np.float32) for _ in range(8)]  # frames in [0, 1]
    prompt, tau, steps, scale = "a green triangle moving right", 0.6, 20, 3.0
    expected = pipe(prompt, video=video, strength=tau, num_inference_steps=steps,
                    guidance_scale=scale, output_type="latent",
                    generator=torch.Generator().manual_seed(7)).frames

    # The pipeline draws, from one generator: the VAE posterior sample, then the noise.
    gen = torch.Generator().manual_seed(7)
    frames = pipe.video_processor.preprocess_video(video)  # (1, 3, F, H, W) in [-1, 1]
    x0 = m.encode_video(frames, gen)
    b, c, f, h, w = x0.shape
    noise = torch.randn((b * f, c, h, w), generator=gen).reshape(b, f, c, h, w)
    with torch.no_grad():
        out = edit(m.unet, m.scheduler, x0, m.encode_prompts([prompt]), m.encode_prompts([""]),
                   tau=tau, ddim_steps=steps, guidance_scale=scale, grad_steps=0,
                   noise=noise.permute(0, 2, 1, 3, 4))
    assert expected.shape == out.latents.shape == (1, 4, 8, 4, 4)
    torch.testing.assert_close(out.latents, expected, rtol=1e-4, atol=1e-5)


def test_chain_records_trajectory(tiny_model):
    m = tiny_model
    with torch.no_grad():
        out = edit(m.unet, m.scheduler, torch.randn(1, 4, 8, 4, 4), m.encode_prompts(["x"]),
                   m.encode_prompts([""]), tau=0.5, ddim_steps=10, grad_steps=0, record=True)
    assert [t for t, _, _ in out.trajectory] == [401, 301, 201, 101, 1]
    assert all(xt.shape == x0.shape == (1, 4, 8, 4, 4) for _, xt, x0 in out.trajectory)
