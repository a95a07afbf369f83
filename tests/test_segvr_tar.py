"""SegVR frame sampling and decoding, TAR weights and the video reward."""

import math

import pytest
import torch

from ivlite.method.segvr import decode_segments, gather_frames, sample_frame_indices, segment_bounds
from ivlite.method.tar import reward_loss, tar_weights, video_reward


def test_segment_bounds_paper_and_uneven():
    assert segment_bounds(16, 4) == [(0, 4), (4, 8), (8, 12), (12, 16)]
    assert segment_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert segment_bounds(5, 5) == [(i, i + 1) for i in range(5)]
    with pytest.raises(ValueError, match="segments"):
        segment_bounds(4, 5)


def test_tsn_indices_stay_in_their_segment_and_are_uniform():
    idx = sample_frame_indices(20000, 16, 4, "tsn", generator=torch.Generator().manual_seed(0))
    assert idx.shape == (20000, 4)
    for s in range(4):
        counts = torch.bincount(idx[:, s], minlength=16)
        inside = counts[4 * s:4 * s + 4]
        assert counts.sum() == inside.sum()  # never outside segment s
        # Uniform over the 4 frames: each about 5000 (binomial std about 61).
        assert (inside - 5000).abs().max() < 300


def test_first_frame_mode_and_bad_mode():
    assert sample_frame_indices(2, 16, 4, "first").tolist() == [[0, 4, 8, 12]] * 2
    with pytest.raises(ValueError, match="frame_sampling"):
        sample_frame_indices(1, 16, 4, "middle")


def test_gather_picks_the_right_frames():
    latents = torch.arange(2 * 16).float().view(2, 1, 16, 1, 1).expand(2, 4, 16, 2, 2)
    idx = torch.tensor([[0, 5, 9, 15], [3, 4, 11, 12]])
    picked = gather_frames(latents, idx)
    assert picked.shape == (8, 4, 2, 2)
    assert picked[:, 0, 0, 0].tolist() == [0, 5, 9, 15, 19, 20, 27, 28]


def test_decoding_picked_frames_equals_decoding_all(tiny_model):
    """The VAE decodes frame by frame, so decoding only SegVR's frames loses nothing."""
    m = tiny_model
    latents = torch.randn(2, 4, 16, 4, 4)
    idx = sample_frame_indices(2, 16, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        picked = decode_segments(m.vae, latents, idx)
        everything = m.decode_latents(latents.permute(0, 2, 1, 3, 4).reshape(32, 4, 4, 4))
    expected = everything.view(2, 16, 3, 32, 32)[torch.arange(2)[:, None], idx].reshape(8, 3, 32, 32)
    torch.testing.assert_close(picked, expected, rtol=1e-5, atol=1e-5)


def test_checkpointed_decode_has_the_same_gradient(tiny_model):
    m = tiny_model
    latents = torch.randn(1, 4, 16, 4, 4, requires_grad=True)
    idx = torch.tensor([[1, 6, 8, 13]])
    grads = []
    for use_checkpoint in (False, True):
        latents.grad = None
        decode_segments(m.vae, latents, idx, use_checkpoint=use_checkpoint).square().sum().backward()
        grads.append(latents.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0][:, :, [0, 2, 3]].abs().sum() == 0  # frames not picked get no gradient


def test_tar_weights_paper_values():
    c = tar_weights(torch.arange(16), 16, 1.0)
    assert c[8] == 1.0
    assert math.isclose(float(c[7]), math.exp(-1), rel_tol=1e-6)
    assert math.isclose(float(c[9]), math.exp(-1), rel_tol=1e-6)
    assert math.isclose(float(c[0]), math.exp(-8), rel_tol=1e-5)   # about 3e-4
    assert math.isclose(float(c[15]), math.exp(-7), rel_tol=1e-5)  # about 9e-4
    assert torch.all(tar_weights(torch.arange(16), 16, 0.0) == 1)  # lambda 0: no TAR
    half = tar_weights(torch.arange(16), 16, 0.5)
    assert math.isclose(float(half[6]), math.exp(-1), rel_tol=1e-6)
    with pytest.raises(ValueError, match="lambda_tar"):
        tar_weights(torch.arange(4), 4, -1.0)


def test_video_reward_and_loss():
    scores = torch.tensor([[0.2, 0.4, 0.3, 0.1]])
    idx = torch.tensor([[2, 7, 8, 13]])
    c = tar_weights(idx, 16, 1.0)
    expected = float((c * scores).sum() / 4)
    assert math.isclose(float(video_reward(scores, idx, 16, 1.0)), expected, rel_tol=1e-6)
    normalised = float((c * scores).sum() / c.sum())
    assert math.isclose(float(video_reward(scores, idx, 16, 1.0, normalize=True)), normalised,
                        rel_tol=1e-6)
    r = torch.tensor([0.25, 0.75], requires_grad=True)
    loss = reward_loss(r)
    loss.backward()
    assert float(loss.detach()) == 0.5 and r.grad.tolist() == [-0.5, -0.5]
