"""Segmental Video Reward, SegVR (Sec. 3.2.2, Eq. 6-7): score a few frames, not all.

The F frames are split into S equal temporal segments and one frame is taken from each:
uniformly at random inside the segment during training (TSN-style,
g(i) ~ U[(i-1)F/S, iF/S - 1]), or the first frame of each segment for evaluation. Only
those S frames go through the VAE decoder and the image reward model. ModelScopeT2V's
decoder is a per-frame 2D VAE, so decoding only the picked frames gives exactly the
pixels that decoding the whole clip would: the saving is free.
"""

from __future__ import annotations

import torch
import torch.utils.checkpoint


def segment_bounds(num_frames: int, segments: int) -> list[tuple[int, int]]:
    """Half-open [start, end) frame ranges of the S segments; equal when S divides F."""
    if not 1 <= segments <= num_frames:
        raise ValueError(f"segments={segments} must satisfy "
                         f"1 <= segments <= num_frames={num_frames}")
    edges = [(i * num_frames) // segments for i in range(segments + 1)]
    return list(zip(edges[:-1], edges[1:]))


def sample_frame_indices(batch: int, num_frames: int, segments: int,
                         mode: str = "tsn", *, generator: torch.Generator | None = None,
                         device=None) -> torch.Tensor:
    """Frame indices (B, S), one per segment: ``tsn`` = uniform in the segment,
    ``first`` = its start."""
    bounds = torch.tensor(segment_bounds(num_frames, segments))
    starts, lengths = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
    if mode == "first":
        idx = starts.expand(batch, -1)
    elif mode == "tsn":
        u = torch.rand((batch, segments), generator=generator)
        idx = starts + (u * lengths).long().clamp(max=lengths - 1)
    else:
        raise ValueError(f"frame_sampling={mode!r}; allowed: 'tsn' or 'first'")
    return idx.to(device)


def gather_frames(latents: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Pick frames: latents (B, C, F, h, w) and indices (B, S) -> (B * S, C, h, w),
    clip-major."""
    b, c, f, h, w = latents.shape
    idx = indices.to(latents.device)[:, None, :, None, None].expand(b, c, -1, h, w)
    picked = latents.gather(2, idx)  # (B, C, S, h, w)
    return picked.permute(0, 2, 1, 3, 4).reshape(-1, c, h, w)


def decode_segments(vae: torch.nn.Module, latents: torch.Tensor, indices: torch.Tensor,
                    *, use_checkpoint: bool = False) -> torch.Tensor:
    """Decode only the picked frames: (B, C, F, h, w), (B, S) ->
    frames (B * S, 3, H, W).

    ``use_checkpoint`` recomputes the decoder's activations in backward: at 256x256 the
    SD decoder stores about a gigabyte of activations per frame otherwise. A decoder
    that checkpoints its own blocks
    (:func:`ivlite.grad_checkpointing.enable_vae_checkpointing`) is called as it is; any
    other is checkpointed as a whole.
    """
    z = gather_frames(latents, indices).to(vae.dtype) / vae.config.scaling_factor
    if (use_checkpoint and torch.is_grad_enabled()
            and not decoder_checkpoints_itself(vae)):
        return torch.utils.checkpoint.checkpoint(lambda x: vae.decode(x).sample, z,
                                                 use_reentrant=False)
    return vae.decode(z).sample


def decoder_checkpoints_itself(vae: torch.nn.Module) -> bool:
    """True when the VAE's decoder recomputes its own blocks in backward."""
    return bool(getattr(getattr(vae, "decoder", None), "gradient_checkpointing", False))
