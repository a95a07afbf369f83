"""Train the tiny world's VAE: 32x32 frames <-> 4x8x8 latents (``AutoencoderKL``).

    python -m tools.tiny_world.train_vae --out runs/world/vae [--steps 1500] [--resume]

Single frames of world clips (every scene, every quality) are reconstructed with an MSE loss and a
small KL term, as Stable Diffusion's VAE (minus its perceptual and adversarial losses, which a
world of flat shapes does not need). At the end the latent scale is measured so that scaled
latents have unit standard deviation, like SD's 0.18215, and the weights are exported.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from ivlite.world.assets import save_weights
from ivlite.world.captions import all_scenes
from ivlite.world.render import make_dataset
from ivlite.world.tiny_models import VAE_CONFIG, build_vae
from .training import append_log, has_state, load_state, save_state, step_rng, truncate_log


def frame_pool(clips: int, seed: int) -> torch.Tensor:
    """All frames of ``clips`` world clips of every scene: (clips * 16, 3, 32, 32) in [-1, 1]."""
    data, _, _ = make_dataset(clips, seed, all_scenes())
    return torch.from_numpy(data.reshape(-1, *data.shape[2:]))


def train(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    vae = build_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    start = 0
    if args.resume and has_state(out):
        start = load_state(out, {"vae": vae}, opt)["step"]
    truncate_log(out, start)
    frames = frame_pool(args.clips, args.seed)
    t0 = time.time()
    for step in range(start, args.steps):
        gen = step_rng(args.seed, step)
        lr = args.lr if step < args.steps * 0.7 else args.lr / 2
        for group in opt.param_groups:
            group["lr"] = lr
        x = frames[torch.randint(len(frames), (args.batch,), generator=gen)]
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon = vae.decode(z).sample
        mse = (recon - x).square().mean()
        kl = posterior.kl().mean() / x[0].numel()
        loss = mse + args.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            mse, kl = float(mse.detach()), float(kl.detach())
            psnr = 10 * math.log10(4.0 / max(mse, 1e-12))  # range [-1, 1] has peak 2
            append_log(out, {"step": step + 1, "mse": mse, "kl": kl, "psnr": psnr,
                             "lr": lr, "seconds": round(time.time() - t0, 1)})
        if (step + 1) % args.save_every == 0 or step + 1 == args.steps:
            save_state(out, step + 1, {"vae": vae}, opt, {"args": vars(args)})
    return export(vae, frames, out, args)


@torch.no_grad()
def export(vae, frames: torch.Tensor, out: Path, args: argparse.Namespace) -> dict:
    """Measure held-out PSNR and the latent scale; write ``export/{config.json, model.safetensors}``."""
    vae.eval()
    held_out = frame_pool(args.held_out_clips, args.seed + 10_000)
    latents = torch.cat([vae.encode(held_out[i:i + 256]).latent_dist.mean
                         for i in range(0, len(held_out), 256)])
    recon = torch.cat([vae.decode(latents[i:i + 256]).sample for i in range(0, len(latents), 256)])
    mse = float((recon.clamp(-1, 1) - held_out).square().mean())
    scale = 1.0 / float(latents.std())
    config = {**VAE_CONFIG, "scaling_factor": round(scale, 5)}
    vae.register_to_config(scaling_factor=config["scaling_factor"])
    metrics = {"held_out_psnr_db": round(10 * math.log10(4.0 / mse), 2),
               "latent_mean": round(float(latents.mean()), 4),
               "latent_std": round(float(latents.std()), 4), "scaling_factor": config["scaling_factor"],
               "parameters": sum(p.numel() for p in vae.parameters())}
    folder = out / "export"
    save_weights(vae.state_dict(), folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(
        {"model": config, "training": vars(args), "metrics": metrics}, indent=2, default=str))
    return metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--kl-weight", type=float, default=3e-5)
    p.add_argument("--clips", type=int, default=1024, help="world clips in the frame pool")
    p.add_argument("--held-out-clips", type=int, default=64, help="clips for the final PSNR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--resume", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    metrics = train(parse_args(argv))
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
