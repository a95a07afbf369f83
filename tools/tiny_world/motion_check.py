"""Why the tiny world's model ignores its motion words: diagnostics for ``report --motion-check``.

Each function answers one question about a text-to-video model of the tiny world (or, for
:func:`word_signal`, about its training data): does the sampled clip move as its caption says
(:func:`motion_word_effect`), does the denoiser's loss depend on the motion word
(:func:`word_sensitivity`), does the text encoder keep the words apart (:func:`word_distances`),
does the first sampling step already move (:func:`first_step_travel`), does the denoiser read
the path off the noisy clip rather than off the caption (:func:`leak_reading`), how much would
an ideal denoiser gain from each word (:func:`word_signal`), and can the UNet's features tell its
frames apart at all (:func:`frame_index_probe`).
"""

from __future__ import annotations

import numpy as np
import torch

from ivlite.method.ddim import sample_noise
from ivlite.models import VideoModel
from ivlite.world.captions import Scene


def clean_estimate(scheduler, x_t: torch.Tensor, t: int, out: torch.Tensor) -> torch.Tensor:
    """The clean-clip estimate x0_hat from the UNet's output ``out`` at timestep ``t``, for the
    scheduler's prediction type: (x_t - sqrt(1 - abar) eps) / sqrt(abar) for epsilon,
    sqrt(abar) x_t - sqrt(1 - abar) v for v (which stays finite where abar = 0)."""
    abar = scheduler.alphas_cumprod[t].to(x_t)
    if scheduler.config.prediction_type == "v_prediction":
        return abar.sqrt() * x_t - (1 - abar).sqrt() * out
    return (x_t - (1 - abar).sqrt() * out) / abar.sqrt()


@torch.no_grad()
def motion_word_effect(model: VideoModel, *, seed: int = 7, ddim_steps: int = 20,
                       guidance_scale: float = 3.0,
                       categories: list[tuple[str, str]] | None = None, repeats: int = 1,
                       motions: tuple[str, ...] | None = None, num_frames: int = 16
                       ) -> dict[str, list[float]]:
    """Does the motion word steer the clip? Mean centroid displacement (dx, dy) in px over
    ``categories`` x ``repeats`` clips per motion (default: six categories, red/blue/green x
    circle/square, once each), every motion sampled from the same noises (``seed``).

    A model that follows its prompts moves left for "moving left" (dx < 0) and right for "moving
    right"; identical numbers for all four motions mean the motion words are ignored and the noise
    alone decides where the object drifts.
    """
    from ivlite.world.captions import MOTIONS
    from ivlite.world.oracle import analyse_frames, detect_motion
    from ivlite.evaluation import sample_clips

    categories = categories or [(c, s) for c in ("red", "blue", "green")
                                for s in ("circle", "square")]
    out = {}
    for motion in motions or MOTIONS:
        prompts = [f"a {c} {s} {motion}" for c, s in categories] * repeats
        clips = sample_clips(model, prompts, ddim_steps=ddim_steps, guidance_scale=guidance_scale,
                             seed=seed, num_frames=num_frames, height=32, width=32)
        moves = []
        for clip in clips:
            frames = analyse_frames(clip.numpy())
            moves.append(detect_motion(frames.centroid, frames.present, clip.shape[-1])[1])
        out[motion] = [round(float(v), 2) for v in np.mean(moves, axis=0)]
    return out


OPPOSITE_MOTION = {"moving left": "moving right", "moving right": "moving left",
                   "moving up": "moving down", "moving down": "moving up"}


@torch.no_grad()
def word_sensitivity(model: VideoModel, *, clips: int = 48, seed: int = 0,
                     timesteps: tuple[int, ...] = (900, 700, 500, 300), num_frames: int = 16,
                     frame_stride: int = 1) -> dict[str, dict]:
    """Does the denoiser read its motion words? Per timestep t, the denoiser's MSE (against the
    noise, or against v for a ``v_prediction`` scheduler) on
    ``clips`` in-domain renders noised to t, conditioned on the true caption, on the caption with
    the opposite motion ("left" <-> "right", "up" <-> "down") and on the caption with the next
    colour. A model that ignores a word scores the same with it swapped; one that reads it, worse.

    Sharper than :func:`motion_word_effect`: no sampling, so no noise-decided drift, and a
    difference of 0.1% in the loss is visible. Returns ``{str(t): {"true", "motion_swapped",
    "colour_swapped": mse}}``. ``num_frames`` frames every ``frame_stride``-th of the 16 rendered
    ones, as ``train_t2v --frames --frame-stride`` trains (at most 16 rendered frames).
    """
    from ivlite.world.data import world_clips

    span = (num_frames - 1) * frame_stride + 1
    if not (num_frames >= 1 and frame_stride >= 1 and span <= 16):
        raise ValueError(f"num_frames={num_frames}, frame_stride={frame_stride}: need "
                         f"(num_frames - 1) * frame_stride + 1 <= 16 rendered frames")
    data = world_clips(model, clips=clips, seed=seed)
    swaps = [_swapped(c) for c in data.captions]
    captions = {"true": list(data.captions),
                "motion_swapped": [w["motion"] for w in swaps],
                "colour_swapped": [w["colour"] for w in swaps]}
    embeddings = {k: model.encode_prompts(v) for k, v in captions.items()}
    x0 = data.latents[:, :, :span:frame_stride].to(model.device)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for t in timesteps:
        noise = sample_noise(x0.shape, generator=gen, device=x0.device)
        tt = torch.full((len(x0),), t, device=x0.device)
        xt = model.scheduler.add_noise(x0, noise, tt)
        target = model.scheduler.get_velocity(x0, noise, tt) \
            if model.scheduler.config.prediction_type == "v_prediction" else noise
        out[str(t)] = {k: float((model.unet(xt, tt, encoder_hidden_states=e).sample - target)
                                .square().mean()) for k, e in embeddings.items()}
    return out


def _swapped(caption: str) -> dict[str, str]:
    """The caption with its motion word replaced by the opposite one, and with the next colour."""
    import dataclasses

    from ivlite.world.captions import COLOURS

    scene, colours = Scene.from_caption(caption), list(COLOURS)
    return {"motion": dataclasses.replace(scene, motion=OPPOSITE_MOTION[scene.motion]).caption,
            "colour": dataclasses.replace(
                scene, colour=colours[(colours.index(scene.colour) + 1) % len(colours)]).caption}


@torch.no_grad()
def word_distances(model: VideoModel, caption: str = "a red circle moving left"
                   ) -> dict[str, float]:
    """How far apart the text encoder keeps a word's alternatives: the largest per-token distance
    between the hidden states (77, D) of ``caption`` and of the caption with its motion word
    (or its colour) swapped, and the mean per-token norm for scale."""
    swaps = _swapped(caption)
    h = model.encode_prompts([caption, swaps["motion"], swaps["colour"]])
    return {"motion": float((h[0] - h[1]).norm(dim=-1).max()),
            "colour": float((h[0] - h[2]).norm(dim=-1).max()),
            "token_norm": float(h[0].norm(dim=-1).mean())}


@torch.no_grad()
def first_step_travel(model: VideoModel, prompts: list[str], *, t: int | None = None,
                      draws: int = 32, seed: int = 0) -> dict[str, list[float]]:
    """Does the model's mean clip move at the sampler's first timestep? Per prompt, the travel
    (dx, dy) in px of the oracle's centroid over the decoded mean of the clean-clip estimate
    (:func:`clean_estimate`) over ``draws`` pure-noise inputs at ``t`` (default: the first
    timestep of a 20-step grid, 951 on ModelScope's schedule; the world's clips travel 9.6 ..
    14.4 px)."""
    from ivlite.world.oracle import analyse_frames

    if t is None:
        from ivlite.method.ddim import ddim_scheduler

        t = int(ddim_scheduler(model.scheduler, 20).timesteps[0])
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for prompt in prompts:
        x = sample_noise(model.latent_shape(draws, 16, 32, 32), generator=gen, device=model.device)
        tt = torch.full((draws,), t, device=model.device)
        eps = model.unet(x, tt, encoder_hidden_states=model.encode_prompts([prompt] * draws)).sample
        x0 = clean_estimate(model.scheduler, x, t, eps).mean(0, keepdim=True)
        frames = analyse_frames(model.decode_video(x0).transpose(1, 2)[0].cpu().numpy())
        c = frames.centroid
        out[prompt] = [round(float(v), 2) for v in c[-1] - c[0]]
    return out


@torch.no_grad()
def leak_reading(model: VideoModel, *, clips: int = 24, draws: int = 8, seed: int = 5,
                 timesteps: tuple[int, ...] = (999, 951, 901, 801)) -> dict[str, dict]:
    """Does the denoiser read the path off the noisy clip instead of off its caption?

    ``clips`` in-domain renders are noised to each t (``draws`` noise draws each); the clean-clip
    estimate (:func:`clean_estimate`), averaged over the draws and decoded, is scored by its
    centroid travel in px along the clip's true direction (positive: the way the clip moves).
    Three inputs: the noised clip with its caption (``"caption"``), the same with the motion word
    reversed (``"reversed"``), and pure noise with the caption (``"pure_noise"``, the sampler's
    first step); ``"clip"`` is the clips' own travel.

    ModelScope's schedule keeps abar = 0.0047 at t = 999, so the noised clip still shows its path
    faintly. Equal ``caption`` and ``reversed`` travel means the direction comes from that leak,
    not from the caption; a small ``pure_noise`` travel, that from pure noise (where sampling
    starts) nothing decides it. On a zero-terminal-SNR schedule (``train_t2v --schedule
    zero-snr-v``) t = 999 has no leak by construction. Returns ``{str(t): {key: mean travel in
    px, "snr": abar / (1 - abar)}}``.
    """
    from ivlite.world.captions import MOTION_DIRECTIONS
    from ivlite.world.data import world_clips
    from ivlite.world.oracle import analyse_frames

    data = world_clips(model, clips=clips, seed=seed)
    gen = torch.Generator().manual_seed(seed)

    def travel(x0: torch.Tensor, axis: np.ndarray) -> float:
        frames = analyse_frames(model.decode_video(x0[None]).transpose(1, 2)[0].cpu().numpy())
        return float(np.dot(frames.centroid[-1] - frames.centroid[0], axis))

    out = {}
    for t in timesteps:
        abar = model.scheduler.alphas_cumprod[t]
        tt = torch.full((draws,), t, device=model.device)
        rows: dict[str, list[float]] = {"caption": [], "reversed": [], "pure_noise": [], "clip": []}
        for x0, caption in zip(data.latents.to(model.device), data.captions):
            axis = np.asarray(MOTION_DIRECTIONS[Scene.from_caption(caption).motion], float)
            noise = sample_noise((draws, *x0.shape), generator=gen, device=x0.device)
            xt = model.scheduler.add_noise(x0.expand(draws, *x0.shape), noise, tt)
            reversed_caption = _swapped(caption)["motion"]
            for key, text, x in (("caption", caption, xt), ("reversed", reversed_caption, xt),
                                 ("pure_noise", caption, noise)):
                emb = model.encode_prompts([text] * draws)
                eps = model.unet(x, tt, encoder_hidden_states=emb).sample
                rows[key].append(travel(clean_estimate(model.scheduler, x, t, eps).mean(0), axis))
            rows["clip"].append(travel(x0, axis))
        out[str(t)] = {k: round(float(np.mean(v)), 2) for k, v in rows.items()}
        out[str(t)]["snr"] = float(abar / (1 - abar))
    return out


def word_signal(latents: torch.Tensor, captions: list[str]) -> dict[str, float]:
    """How much of the clean clips' variance each caption word explains, given the other words.

    ``latents`` (N, C, F, h, w) of world clips, ``captions`` their N captions. Per kind of word
    (colour, shape, motion, background): the mean squared distance between the mean clip of a
    caption and the mean clip of all captions that agree with it on the other three words, as a
    share of the clips' total variance. That is what a denoiser's clean-clip (x0) error at high
    noise, where the noisy clip shows nothing and the caption is all there is, loses by ignoring
    that word. The clips of every caption alternate between two halves and the distance is the dot
    product of the two halves' estimates: unbiased even for a few clips per caption (a plain
    squared distance of means would add the within-caption variance over the clip count).
    """
    kinds = ("colour", "shape", "motion", "background")
    scenes = [Scene.from_caption(c) for c in captions]
    flat = latents.flatten(1).double()
    seen: dict[Scene, int] = {}
    half = []
    for scene in scenes:
        half.append(seen.get(scene, 0) % 2)
        seen[scene] = seen.get(scene, 0) + 1

    def means(keys: list) -> tuple[dict, dict]:
        """Per key, the mean of half 0 and of half 1."""
        out = ({}, {})
        for h in (0, 1):
            groups: dict = {}
            for i, key in enumerate(keys):
                if half[i] == h:
                    groups.setdefault(key, []).append(i)
            out[h].update({k: flat[idx].mean(0) for k, idx in groups.items()})
        return out

    total = float(flat.var(0).mean())
    by_caption = means(scenes)
    result = {}
    for kind in kinds:
        keys = [tuple(getattr(s, k) for k in kinds if k != kind) for s in scenes]
        coarse = means(keys)
        gain = 0.0
        for scene, key in set(zip(scenes, keys)):
            a = by_caption[0][scene] - coarse[0][key]
            b = by_caption[1][scene] - coarse[1][key]
            gain += seen[scene] * float(a @ b) / flat.shape[1]
        result[kind] = gain / len(scenes) / total
    result["total_variance"] = total
    return result


@torch.no_grad()
def frame_index_probe(model: VideoModel, latents: torch.Tensor, captions: list[str], *,
                      t: int = 951, seed: int = 0) -> dict[str, float]:
    """Can the UNet's features tell its frames apart? Held-out R^2 of a ridge regression from each
    block's output, averaged over space to (C,) per frame, to the frame index 0 .. F-1.

    ``latents`` (N, 4, F, h, w) clean clips, noised to ``t`` and denoised with their ``captions``;
    the probe is fitted on the first three quarters of the clips and scored on the rest. The
    temporal attention has no position embedding, so the frame index can only come from the
    temporal convolutions' zero padding at the clip's ends; the noisy input itself scores ~0
    (``"input"``). A direction word can only be drawn where the features know the frame. The
    blocks' outputs are (N * F, C, h, w) in diffusers' 3D UNet; averaging them over space keeps a
    frame code but hides a frame-dependent spatial shift, so a low score is a lower bound.
    Returns ``{"input" | block name: R^2}``.
    """
    unet = model.unet
    names = [f"down_blocks.{i}" for i in range(len(unet.down_blocks))] + ["mid_block"] + \
        [f"up_blocks.{i}" for i in range(len(unet.up_blocks))]
    modules = dict(unet.named_modules())
    feats: dict[str, torch.Tensor] = {}
    hooks = [modules[n].register_forward_hook(
        lambda _m, _i, out, n=n: feats.__setitem__(n, out[0] if isinstance(out, tuple) else out))
        for n in names]
    try:
        x0 = latents.to(model.device, next(unet.parameters()).dtype)
        noise = sample_noise(x0.shape, generator=torch.Generator().manual_seed(seed),
                             device=x0.device, dtype=x0.dtype)
        tt = torch.full((len(x0),), t, device=x0.device)
        xt = model.scheduler.add_noise(x0, noise, tt)
        unet(xt, tt, encoder_hidden_states=model.encode_prompts(captions))
    finally:
        for hook in hooks:
            hook.remove()
    n, f = x0.shape[0], x0.shape[2]
    pooled = {"input": xt.transpose(1, 2).flatten(0, 1).mean(dim=(-1, -2))}
    pooled.update({k: v.mean(dim=(-1, -2)) for k, v in feats.items()})  # (N * F, C) each
    target = torch.arange(f, dtype=torch.float64).repeat(n)
    split = (3 * n // 4) * f
    out = {}
    for name in ["input"] + names:
        x = torch.cat([pooled[name].double().cpu(), torch.ones(n * f, 1, dtype=torch.float64)], 1)
        fit, test = slice(0, split), slice(split, None)
        w = torch.linalg.solve(x[fit].T @ x[fit] + 1e-3 * torch.eye(x.shape[1], dtype=x.dtype),
                               x[fit].T @ target[fit])
        residual = (x[test] @ w - target[test]).square().mean()
        out[name] = round(float(1 - residual / target[test].var(unbiased=False)), 3)
    return out
