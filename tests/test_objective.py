"""The whole objective (chain -> SegVR decode -> reward -> TAR -> loss) and its gradient."""

import pytest
import torch

from ivlite.config import Config
from ivlite.method.lora import add_lora
from ivlite.method.objective import instructvideo_objective
from ivlite.method.tar import tar_weights


def brightness(frames, prompts):
    return frames.mean(dim=(1, 2, 3))


def _setup(tiny_model, **cfg_changes):
    m = tiny_model
    params = add_lora(m.unet)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-zero B so that every LoRA matrix has a gradient
        for n, p in m.unet.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    cfg = Config.preset("tiny-random", num_frames=8, ddim_steps=10, **cfg_changes).validate()
    return m, params, cfg.method()


def test_objective_reports_tar_weighted_reward(tiny_model):
    m, _, cfg = _setup(tiny_model)
    out = instructvideo_objective(m, brightness, torch.randn(2, 4, 8, 4, 4), ["a", "b"], cfg,
                                  generator=torch.Generator().manual_seed(0))
    assert out.frame_scores.shape == out.frame_indices.shape == (2, 4)
    expected = (tar_weights(out.frame_indices, 8, 1.0) * out.frame_scores).mean(-1)
    torch.testing.assert_close(out.reward, expected)
    torch.testing.assert_close(out.loss.detach(), (1 - expected).mean())
    assert out.unet_calls == 6 and out.loss.requires_grad


@pytest.mark.parametrize("chain", ["edit", "full"])
def test_gradient_matches_finite_differences(tiny_model, chain):
    """With gradients through every step (K = all), autograd's LoRA gradient is the true
    derivative of the loss: compare it with a central finite difference in float64."""
    steps = 6 if chain == "edit" else 10
    m, params, cfg = _setup(tiny_model, grad_steps=steps, chain=chain)
    for module in (m.unet, m.vae, m.text_encoder):
        module.double().eval()  # eval: no dropout, so the loss is a deterministic function
    x0 = torch.randn(1, 4, 8, 4, 4, dtype=torch.float64)

    def loss():
        return instructvideo_objective(m, brightness, x0, ["a red circle"], cfg,
                                       generator=torch.Generator().manual_seed(5)).loss

    loss().backward()
    direction = [torch.randn_like(p) for p in params]
    analytic = sum((p.grad * d).sum() for p, d in zip(params, direction))
    eps = 1e-4
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(eps * d)
        plus = loss()
        for p, d in zip(params, direction):
            p.sub_(2 * eps * d)
        minus = loss()
    numeric = (plus - minus) / (2 * eps)
    assert abs(float(analytic)) > 1e-8
    assert float(analytic) == pytest.approx(float(numeric), rel=1e-4)
