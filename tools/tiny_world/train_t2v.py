"""Train the tiny world's text-to-video model: ``UNet3DConditionModel`` + CLIP text encoder.

    python -m tools.tiny_world.train_t2v --vae runs/world/vae/export --out runs/world/t2v [--resume]

World clips are VAE-encoded once into a latent pool. An **image stage** (``--image-steps``)
trains the UNet on single frames with its temporal layers held at an exact identity
(``--image-stage-temporal freeze``); a **video stage** then trains on whole clips. The loss is
Min-SNR weighted (``--snr-gamma``, ``--snr-floor``), with ``--high-noise-share`` of the
timesteps drawn from ``[--high-noise-from, 1000)``; captions are dropped 10% of the time for
classifier-free guidance; the EMA weights are evaluated with the world's oracle every
``--eval-every`` steps and exported at the end (fp16, token table trimmed) into
``OUT/export/{unet,text_encoder}/`` (and ``scheduler/`` for ``--schedule zero-snr-v``).

The recipe that trained the shipped model, what each option is for and what did not work are in
``tools/tiny_world/README.md`` of the repository; the shipped ``unet/config.json`` records the
exact arguments. Interrupted runs continue bit for bit with ``--resume``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from ivlite.common import resolve_device, save_safetensors
from ivlite.models import VideoModel, modelscope_scheduler
from ivlite.tokenizer import clip_tokenizer
from ivlite.world.assets import load_weights, save_weights
from ivlite.world.captions import Scene, base_training_scenes, parse_motions, scenes_for
from ivlite.world.render import make_dataset
from ivlite.world.report import oracle_report
from ivlite.world.tiny_models import SCHEDULER_FILE, TEXT_CONFIG, TOKEN_TABLE, UNET_CONFIG, \
    build_text_encoder, build_unet, load_vae
from .training import append_log, ema_update, has_state, load_state, save_state, step_rng, \
    truncate_log


@torch.no_grad()
def latent_pool(vae, clips: int, seed: int, cache: Path) -> tuple[torch.Tensor, list[str]]:
    """(N, 4, 16, 8, 8) scaled posterior means of N world clips, and their captions (cached)."""
    if cache.is_file():
        return load_file(cache)["latents"], json.loads(cache.with_suffix(".json").read_text())
    data, captions, _ = make_dataset(clips, seed, base_training_scenes())
    frames = torch.from_numpy(data).flatten(0, 1)  # (N * 16, 3, 32, 32)
    z = torch.cat([vae.encode(frames[i:i + 512].to(vae.device)).latent_dist.mean.cpu()
                   for i in range(0, len(frames), 512)]) * vae.config.scaling_factor
    latents = z.view(clips, -1, *z.shape[1:]).transpose(1, 2).contiguous()
    save_safetensors({"latents": latents}, cache)
    cache.with_suffix(".json").write_text(json.dumps(captions))
    return latents, captions


def training_scheduler(name: str):
    """The noise schedule to train with: ``modelscope`` (ModelScopeT2V's: epsilon prediction,
    abar = 0.0047 at t = 999) or ``zero-snr-v`` (Lin et al., 2024: the same betas rescaled to
    abar = 0 at t = 999, v prediction, sampling grids that start at t = 999)."""
    from diffusers import DDIMScheduler

    from ivlite.models import MODELSCOPE_SCHEDULER

    if name == "modelscope":
        return modelscope_scheduler()
    return DDIMScheduler.from_config({**MODELSCOPE_SCHEDULER, "prediction_type": "v_prediction",
                                      "rescale_betas_zero_snr": True,
                                      "timestep_spacing": "trailing"})


def unet_config_from(args: argparse.Namespace) -> dict:
    """The UNet's config for ``args`` (what ``tiny_models.build_unet`` takes and the export's
    ``unet/config.json`` records)."""
    config = {**UNET_CONFIG, "layers_per_block": args.layers_per_block}
    if args.frame_positions != "none":
        config["frame_positions"] = args.frame_positions
    return config


def training_device(name: str) -> torch.device:
    """``--device``: ``auto`` is CUDA when available, else the CPU; an unusable name exits."""
    try:
        return resolve_device(name, what="--device")
    except ValueError as err:
        raise SystemExit(str(err)) from None


def min_snr_weight(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float,
                   floor: float = 0.0) -> torch.Tensor:
    """(n,) epsilon-loss weights: clamp(SNR, floor, gamma) / SNR per sample.

    An epsilon error e is an error of sqrt(1 - a) / sqrt(a) * e in the clean-clip estimate x0_hat,
    so an epsilon loss weighted by w weights the x0 loss by w * SNR. Min-SNR-gamma (Hang et al.,
    2023; ``floor = 0``) gives x0 the weight min(SNR, gamma): at t = 951 (SNR 0.008) the x0 error
    counts 600x less than at SNR >= 5, although only there, where the noisy clip shows nothing,
    must the caption alone decide the object's place and path. ``floor > 0`` keeps the x0 weight
    at ``floor`` or more; ``floor = 1`` is the truncated-SNR weight max(SNR, 1) of Salimans & Ho
    (2022), capped at gamma."""
    ab = alphas_cumprod[t]
    snr = ab / (1 - ab)
    return snr.clamp(min=floor, max=gamma) / snr


def temporal_parameters(unet) -> list[torch.nn.Parameter]:
    """The parameters of the UNet's temporal layers: temporal convolutions and attentions."""
    return [p for n, p in unet.named_parameters() if "temp_" in n or n.startswith("transformer_in")]


def zero_temporal_attention_outputs(unet) -> int:
    """Zero the output projection of every temporal attention, making it an identity; returns
    how many were zeroed. Only for a fresh model: it discards what those layers learned."""
    count = 0
    for name, module in unet.named_modules():
        if name.endswith("proj_out") and ("temp_attentions" in name or name == "transformer_in.proj_out"):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)
            count += 1
    return count


def draw_timesteps(n: int, total: int, args, gen: torch.Generator) -> torch.Tensor:
    """(n,) training timesteps: uniform in [0, total), except that a share
    ``args.high_noise_share`` of them is uniform in [``args.high_noise_from``, total)."""
    t = torch.randint(0, total, (n,), generator=gen)
    if args.high_noise_share > 0:
        high = torch.randint(args.high_noise_from, total, (n,), generator=gen)
        t = torch.where(torch.rand(n, generator=gen) < args.high_noise_share, high, t)
    return t


def caption_means(latents: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """(N, C, F, h, w): for each clip of ``latents`` (N, C, F, h, w), the mean of all clips with its
    caption."""
    index = {c: i for i, c in enumerate(sorted(set(captions)))}
    which = torch.tensor([index[c] for c in captions])
    sums = torch.zeros(len(index), *latents.shape[1:]).index_add_(0, which, latents)
    counts = torch.bincount(which, minlength=len(index)).view(-1, *[1] * (latents.dim() - 1))
    return (sums / counts)[which]


def noisy_inputs(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, sched, args,
                 gen: torch.Generator, mean: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Model inputs x_t, epsilon targets, timesteps (B,) and the signal-free mask (B,) for clean
    latents x0 (B, 4, F, h, w); ``mean`` (B, 4, F, h, w), the mean clip of each sample's caption,
    is the clean-clip target of signal-free samples (default: x0 itself).

    Usually x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps with target eps. A share
    ``args.signal_free_share`` of the samples instead gets a timestep uniform in
    [``args.signal_free_from``, 1000) and a *signal-free* input x_t = eps, with the target
    (eps - sqrt(abar_t) x0) / sqrt(1 - abar_t): the epsilon from which the sampler's formula
    x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t) gives back x0 (or ``mean``).

    Why: ModelScope's schedule ends at abar = 0.0047, not 0, so a training input at t = 951 still
    carries sqrt(abar) = 9% of the clip. Spread over a whole clip that is enough to read the
    object's path: an epsilon model's clean-clip estimate at t = 951 retraces 8.6 of a real
    clip's 11.8 px of travel, and exactly as far with the motion word swapped
    (``motion_check.leak_reading``). Sampling starts from pure noise, where that leak is absent,
    so the model reads a path off the noise and never needed its caption for the direction (the
    "non-zero terminal SNR" flaw of Lin et al., 2024). Signal-free samples are the sampler's first
    step as it really is: only the caption, and the frame index, can place the object there.
    Their epsilon error is sqrt(SNR) ~ 0.09 times their clean-clip error, so the loss weights them
    by ``args.signal_free_floor`` (see :func:`min_snr_weight`), else they would teach nothing.
    With no signal in x_t the best estimate is the caption's mean clip, so ``mean`` as target
    teaches the same as x0 without the variance of where each clip happens to put its object:
    with x0 as target at floor 1 those samples' gradients were mostly that variance, and the
    colours collapsed. Mean targets at floor 1 cost colour too and taught no direction;
    ``--schedule zero-snr-v`` did (``tools/tiny_world/README.md``).
    """
    target = noise
    if args.signal_free_share > 0:
        free = torch.rand(len(t), generator=gen) < args.signal_free_share
        top = torch.randint(args.signal_free_from, sched.config.num_train_timesteps, (len(t),),
                            generator=gen)
        t = torch.where(free, top, t)
        ab = sched.alphas_cumprod[t].view(-1, *[1] * (x0.dim() - 1)).to(x0.device)
        goal = x0 if mean is None else mean
        signal_free_target = (noise - ab.sqrt() * goal) / (1 - ab).sqrt()
        mask = free.view(-1, *[1] * (x0.dim() - 1)).to(x0.device)
        xt = torch.where(mask, noise, sched.add_noise(x0, noise, t))
        return xt, torch.where(mask, signal_free_target, noise), t, free
    return sched.add_noise(x0, noise, t), target, t, torch.zeros(len(t), dtype=torch.bool)


def make_batch(latents, captions, step: int, args, gen: torch.Generator):
    """Pool rows (B, C, F, 8, 8) and captions; single frames (F = 1) in the image stage."""
    if step < args.image_steps:
        clip = torch.randint(len(captions), (args.image_batch,), generator=gen)
        frame = torch.randint(latents.shape[2], (args.image_batch,), generator=gen)
        x0 = latents[clip.to(latents.device), :, frame.to(latents.device)][:, :, None]
    else:
        clip = torch.randint(len(captions), (args.batch,), generator=gen)
        # Every ``frame_stride``-th frame from a random phase: F=8 at stride 2 keeps a clip's
        # whole travel in half the frames (motion per frame doubles, cost halves).
        span = (args.frames - 1) * args.frame_stride + 1
        first = int(torch.randint(latents.shape[2] - span + 1, (1,), generator=gen))
        x0 = latents[clip.to(latents.device)][:, :, first:first + span:args.frame_stride]
    drop = torch.rand(len(clip), generator=gen) < args.caption_dropout
    return x0, ["" if d else captions[i] for i, d in zip(clip.tolist(), drop.tolist())]


def train(args: argparse.Namespace) -> dict:
    if not 0.0 <= args.high_noise_share <= 1.0:
        raise SystemExit(f"--high-noise-share {args.high_noise_share} is out of range; allowed: "
                         f"0 <= share <= 1")
    training = {s.category for s in base_training_scenes()}
    if args.only_category is not None and tuple(args.only_category.split()) not in training:
        raise SystemExit(f"--only-category {args.only_category!r} is not a training category; "
                         f"allowed: {', '.join(sorted(' '.join(c) for c in training))}")
    motions = _parse_motions(args.motions)
    if not 1 <= args.layers_per_block <= 4:
        raise SystemExit(f"--layers-per-block {args.layers_per_block} is out of range; allowed: "
                         f"1 <= n <= 4")
    if not 0.0 < args.temporal_lr_scale <= 100.0:
        raise SystemExit(f"--temporal-lr-scale {args.temporal_lr_scale} is out of range; allowed: "
                         f"0 < scale <= 100")
    if not 0.0 <= args.snr_floor <= args.snr_gamma:
        raise SystemExit(f"--snr-floor {args.snr_floor} is out of range; allowed: "
                         f"0 <= floor <= --snr-gamma ({args.snr_gamma})")
    if not 0.0 <= args.signal_free_share <= 1.0:
        raise SystemExit(f"--signal-free-share {args.signal_free_share} is out of range; "
                         f"allowed: 0 <= share <= 1")
    if args.schedule == "zero-snr-v" and args.snr_floor <= 0:
        raise SystemExit("--schedule zero-snr-v needs --snr-floor > 0: its SNR is 0 at t = 999, "
                         "where Min-SNR would weight the clean-clip error by 0")
    if args.schedule == "zero-snr-v" and args.signal_free_share > 0:
        raise SystemExit("--signal-free-share needs --schedule modelscope (zero-snr-v has no "
                         "signal at t = 999 to remove)")
    if not 0.0 <= args.signal_free_floor <= args.snr_gamma:
        raise SystemExit(f"--signal-free-floor {args.signal_free_floor} is out of range; allowed: "
                         f"0 <= floor <= --snr-gamma ({args.snr_gamma})")
    if not 0 <= args.signal_free_from < 1000:
        raise SystemExit(f"--signal-free-from {args.signal_free_from} is out of range; allowed: "
                         f"0 <= t < 1000")
    if not 0 <= args.high_noise_from < 1000:
        raise SystemExit(f"--high-noise-from {args.high_noise_from} is out of range; allowed: "
                         f"0 <= t < 1000")
    if not 1 <= (args.frames - 1) * args.frame_stride + 1 <= 16:
        raise SystemExit(f"--frames {args.frames} x --frame-stride {args.frame_stride} needs "
                         f"more than the 16 rendered frames")
    device = training_device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    vae = load_vae(args.vae).to(device)
    unet_config = unet_config_from(args)
    unet, text = build_unet(unet_config).to(device), build_text_encoder().to(device)
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), \
        copy.deepcopy(text).requires_grad_(False)
    train_text = args.text_encoder == "train"
    text.requires_grad_(train_text)
    params = list(unet.parameters()) + (list(text.parameters()) if train_text else [])
    temporal = temporal_parameters(unet)
    groups = [{"params": params, "scale": 1.0}]
    if args.temporal_lr_scale != 1.0:  # a second group; one group keeps older runs resumable
        temporal_ids = {id(q) for q in temporal}
        groups = [{"params": [q for q in params if id(q) not in temporal_ids], "scale": 1.0},
                  {"params": temporal, "scale": args.temporal_lr_scale}]
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.0)
    modules = {"unet": unet, "text": text, "ema_unet": ema_unet, "ema_text": ema_text}
    start, seconds, ema_start = 0, 0.0, 0
    if args.resume and has_state(out):
        info = load_state(out, modules, opt)
        start, seconds = info["step"], info.get("seconds", 0.0)
        ema_start = info.get("ema_start", 0)
    elif args.init_from:
        # Continue from exported (EMA) weights, e.g. the shipped ones, with a fresh optimizer.
        start = _init_from(Path(args.init_from), args.init_parts, unet, text, ema_unet, ema_text)
        ema_start = start
    elif args.image_stage_temporal == "freeze":
        zero_temporal_attention_outputs(unet)
        ema_unet.load_state_dict(unet.state_dict())
    if args.export_only:
        return export(ema_unet, ema_text, out, args, seconds=seconds, steps=start)
    truncate_log(out, start)
    latents, captions = latent_pool(vae, args.clips, args.seed, out / "pool.safetensors")
    latents = latents.to(device)
    scenes = base_training_scenes()
    if args.only_category:  # a diagnostic: can the model learn its motion words in one category?
        scenes = scenes_for([tuple(args.only_category.split())])
    if args.only_category or motions is not None:
        scenes = [s for s in scenes if motions is None or s.motion in motions]
        wanted = set(scenes)
        keep = [i for i, c in enumerate(captions) if Scene.from_caption(c) in wanted]
        if not keep:
            raise SystemExit(f"--only-category / --motions: none of the pool's "
                             f"{len(captions)} clips shows it; use a larger --clips")
        latents, captions = latents[keep], [captions[i] for i in keep]
    pool = latents
    if args.signal_free_share > 0:  # channels 4-7: the caption's mean clip, 8-11: all clips' mean
        pool = torch.cat([latents, caption_means(latents, captions),
                          latents.mean(0, keepdim=True).expand_as(latents)], dim=1)
    tok = clip_tokenizer()
    ids = {c: tok(c, padding="max_length", max_length=77, return_tensors="pt").input_ids[0]
           .to(device) for c in set(captions) | {""}}
    sched = training_scheduler(args.schedule)
    alphas_cumprod = sched.alphas_cumprod.to(device)  # once, not per step
    if not train_text:  # a frozen encoder maps each caption to one fixed tensor: compute it once
        with torch.no_grad():
            table = {c: text(i[None])[0][0] for c, i in ids.items()}
    total = args.image_steps + args.video_steps
    t0 = time.time() - seconds
    for step in range(start, total):
        gen = step_rng(args.seed, step)
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=gen)))  # dropout masks
        # The warm-up counts from the optimizer's first step: an --init-parts all run starts a
        # fresh AdamW at the export's step count, and its first updates need the warm-up too.
        lr = args.lr * min(1.0, (step + 1 - ema_start) / args.warmup)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("scale", 1.0)
        frozen = step < args.image_steps and args.image_stage_temporal == "freeze"
        for param in temporal:
            param.requires_grad_(not frozen)
        x0, prompts = make_batch(pool, captions, step, args, gen)
        x0, mean = x0[:, :4], x0[:, 4:]  # the clips and their captions' mean clips
        if mean.shape[1]:
            dropped = torch.tensor([p == "" for p in prompts], device=device)
            mean = torch.where(dropped.view(-1, 1, 1, 1, 1), mean[:, 4:], mean[:, :4])
        t = draw_timesteps(len(prompts), sched.config.num_train_timesteps, args, gen)
        # Every draw comes from the CPU generator, so a run is the same on any device.
        noise = torch.randn(x0.shape, generator=gen).to(device)
        xt, target, t, free = noisy_inputs(x0, noise, t, sched, args, gen, mean)
        t, free = t.to(device), free.to(device)
        if train_text:
            emb = text(torch.stack([ids[p] for p in prompts]))[0]
        else:
            emb = torch.stack([table[p] for p in prompts])
        pred = unet(xt, t, encoder_hidden_states=emb).sample
        if args.schedule == "zero-snr-v":
            target = sched.get_velocity(x0, noise, t)
            # A v error e is an x0 error sqrt(1 - abar) e: weight x0 as Min-SNR does for epsilon.
            ab = alphas_cumprod[t]
            weight = (ab / (1 - ab)).clamp(min=args.snr_floor, max=args.snr_gamma) * (1 - ab)
        else:
            weight = min_snr_weight(alphas_cumprod, t, args.snr_gamma, args.snr_floor)
        per_sample = (pred - target).square().mean(dim=(1, 2, 3, 4))
        if free.any():
            weight = torch.where(free, min_snr_weight(alphas_cumprod, t, args.snr_gamma,
                                                      args.signal_free_floor), weight)
        weighted = weight * per_sample
        loss = weighted.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
        opt.step()
        # The EMA's warm-up counts from this run's first step: continuing exported weights on a
        # new objective (say eps -> v), a decay of 0.999 from the start would keep the old
        # model's weights in the average for thousands of steps.
        k = step - ema_start
        decay = min(args.ema, (1 + k) / (10 + k))
        ema_update(ema_unet, unet, decay)
        if train_text:
            ema_update(ema_text, text, decay)
        done = step + 1
        record = None
        if done % args.log_every == 0 or done == total:
            record = {"step": done, "stage": "image" if step < args.image_steps else "video",
                      "loss": float(loss.detach()), "grad_norm": grad_norm, "lr": lr,
                      **({"signal_free_loss": float(weighted[free].mean().detach())}
                         if free.any() else {}),
                      "seconds": round(time.time() - t0, 1)}
        if done > args.image_steps and (done % args.eval_every == 0 or done == total):
            model = VideoModel(ema_unet, vae, ema_text, tok, sched)
            record = {**(record or {"step": done}), "oracle": oracle_report(
                model, scenes, samples=args.eval_samples, seed=1,
                guidance_scale=args.guidance, num_frames=args.frames)}
            print(json.dumps(record), flush=True)
        if record:
            append_log(out, record)
        if done % args.save_every == 0 or done == total:
            save_state(out, done, modules, opt, {"args": vars(args), "ema_start": ema_start,
                                                  "seconds": round(time.time() - t0, 1)})
    return export(ema_unet, ema_text, out, args, seconds=time.time() - t0, steps=total)


def _parse_motions(text: str | None) -> set[str] | None:
    """``--motions`` as a set of motions; None keeps every motion."""
    if text is None:
        return None
    try:
        return set(parse_motions(text))
    except ValueError as err:
        raise SystemExit(f"--motions {text!r}: {err}") from None


def _init_from(folder: Path, parts: str, unet, text, ema_unet, ema_text) -> int:
    """Load an export folder's weights into model and EMA; return the step to continue from.

    ``parts="all"`` continues the export's schedule (its step count); ``parts="unet"`` keeps this
    run's own text encoder and restarts the schedule at step 0 (image stage included), since the
    UNet must first learn to read the new encoder."""
    config = json.loads((folder / "unet" / "config.json").read_text())
    trained = config.get("model", {}).get("frame_positions")
    # Adding frame positions to a UNet trained without them is a choice (it retrains); dropping
    # them would load fine and silently blind a UNet that relies on them.
    if trained and unet.transformer_in.transformer_blocks[0].pos_embed is None:
        raise SystemExit(f"--init-from {folder}: its UNet was trained with --frame-positions "
                         f"{trained}; pass --frame-positions {trained}")
    names = ("unet", "text_encoder") if parts == "all" else ("unet",)
    pairs = {"unet": (unet, ema_unet), "text_encoder": (text, ema_text)}
    for name in names:
        state = load_weights(folder / name / "model.safetensors")
        for module in pairs[name]:
            module.load_state_dict(state)
    if parts == "unet":
        return 0
    return config.get("steps", 0)


def export(unet, text, out: Path, args: argparse.Namespace, seconds: float, steps: int) -> dict:
    folder = out / "export"
    info = {"training": vars(args), "seconds": round(seconds, 1), "steps": steps}
    save_weights(unet.state_dict(), folder / "unet" / "model.safetensors")
    config = unet_config_from(args)
    (folder / "unet" / "config.json").write_text(json.dumps({"model": config, **info},
                                                            indent=2, default=str))
    scheduler_file = folder / SCHEDULER_FILE
    if args.schedule != "modelscope":  # a world without this file samples with ModelScope's
        scheduler_file.parent.mkdir(parents=True, exist_ok=True)
        scheduler_file.write_text(json.dumps(dict(training_scheduler(args.schedule).config),
                                             indent=2))
    else:
        scheduler_file.unlink(missing_ok=True)
    save_weights(text.state_dict(), folder / "text_encoder" / "model.safetensors",
                 token_tables=(TOKEN_TABLE,))
    (folder / "text_encoder" / "config.json").write_text(json.dumps(
        {"model": TEXT_CONFIG, **info}, indent=2, default=str))
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vae", required=True, help="the VAE export folder from train_vae")
    p.add_argument("--out", required=True)
    p.add_argument("--image-steps", type=int, default=1000)
    p.add_argument("--video-steps", type=int, default=4000)
    p.add_argument("--image-batch", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=16, help="frames per clip in the video stage")
    p.add_argument("--frame-stride", type=int, default=1,
                   help="take every n-th frame of the 16 rendered ones (frames * stride <= 16)")
    p.add_argument("--image-stage-temporal", choices=("freeze", "train"), default="freeze",
                   help="freeze the temporal layers (at an identity) during the image stage, "
                        "or train them on single frames")
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--temporal-lr-scale", type=float, default=1.0,
                   help="learning rate of the temporal convolutions and attentions, in units of --lr")
    p.add_argument("--snr-gamma", type=float, default=5.0)
    p.add_argument("--snr-floor", type=float, default=0.0,
                   help="least weight of the x0 error at any t (0: plain Min-SNR; see min_snr_weight)")
    p.add_argument("--high-noise-share", type=float, default=0.5,
                   help="share of timesteps drawn from [--high-noise-from, 1000) (0: uniform)")
    p.add_argument("--high-noise-from", type=int, default=600)
    p.add_argument("--schedule", choices=("modelscope", "zero-snr-v"), default="modelscope",
                   help="noise schedule and prediction (see training_scheduler)")
    p.add_argument("--signal-free-share", type=float, default=0.0,
                   help="share of samples trained on pure-noise inputs at t >= "
                        "--signal-free-from, as the sampler's first step sees them "
                        "(see noisy_inputs)")
    p.add_argument("--signal-free-from", type=int, default=900)
    p.add_argument("--signal-free-floor", type=float, default=1.0,
                   help="least weight of the clean-clip error of signal-free samples")
    p.add_argument("--caption-dropout", type=float, default=0.1)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--clips", type=int, default=6144, help="world clips in the latent pool")
    p.add_argument("--only-category", default=None, metavar="'COLOUR SHAPE'",
                   help="train and evaluate on one category's clips only (a diagnostic, e.g. "
                        "'red circle')")
    p.add_argument("--motions", default=None, metavar="left,right,...",
                   help="train and evaluate on these motions only (a diagnostic)")
    p.add_argument("--frame-positions", choices=("none", "sinusoidal"), default="none",
                   help="give the temporal attention a sinusoidal frame index (AnimateDiff's "
                        "positional_embeddings; see tiny_models.add_frame_positions)")
    p.add_argument("--layers-per-block", type=int, default=UNET_CONFIG["layers_per_block"],
                   help="UNet layers per block (more: a deeper temporal path)")
    p.add_argument("--guidance", type=float, default=3.0, help="guidance for the oracle check")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-samples", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto",
                   help="auto (CUDA if available, else CPU), cpu, cuda or cuda:N; every random "
                        "draw is made on the CPU, so a run follows the same batches anywhere")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--export-only", action="store_true",
                   help="export the EMA weights of the saved state (with --resume) and stop")
    p.add_argument("--init-from", default=None,
                   help="start from an export folder's weights (fresh optimizer) instead")
    p.add_argument("--init-parts", choices=("all", "unet"), default="all",
                   help="with --init-from: load both models and continue their schedule, or "
                        "only the UNet (this run's text encoder; schedule from step 0)")
    p.add_argument("--text-encoder", choices=("freeze", "train"), default="freeze",
                   help="keep the text encoder at its seeded random init, or train it jointly")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    info = train(parse_args(argv))
    print(json.dumps({"seconds": info["seconds"]}))
    return info


if __name__ == "__main__":
    main()
