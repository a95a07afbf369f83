"""The text-to-video model ivlite fine-tunes: ModelScopeT2V's components, by class.

A :class:`VideoModel` bundles the four diffusers/transformers components of ModelScopeT2V
(``UNet3DConditionModel``, ``AutoencoderKL``, ``CLIPTextModel`` + ``CLIPTokenizer``) and its
``DDIMScheduler``. They are loaded one by one, by class, so ivlite does not depend on the deprecated
``TextToVideoSDPipeline`` surviving. The same code runs on the 1.4B-parameter UNet and on tiny
random instances of the same classes built here for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .tokenizer import clip_tokenizer

# ModelScopeT2V's noise schedule ("linear_sd": betas on a sqrt-linear ramp, eps prediction).
MODELSCOPE_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
    thresholding=False, timestep_spacing="leading")


def modelscope_scheduler() -> DDIMScheduler:
    """The DDIM scheduler of ``damo-vilab/text-to-video-ms-1.7b`` (20 steps: 951, 901, ..., 1)."""
    return DDIMScheduler(**MODELSCOPE_SCHEDULER)


@dataclass
class VideoModel:
    """ModelScopeT2V-style components. Latents are (B, C, F, h, w); frames (B, 3, F, H, W) in [-1, 1]."""

    unet: UNet3DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: DDIMScheduler
    _prompt_cache: dict = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell (8 for the SD VAE)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def latent_shape(self, batch: int, frames: int, height: int, width: int) -> tuple[int, ...]:
        f = self.vae_scale_factor
        if height % f or width % f:
            raise ValueError(f"height={height}, width={width}: both must be multiples of {f} "
                             f"(the VAE downsamples by {f})")
        return (batch, self.unet.config.in_channels, frames, height // f, width // f)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "VideoModel":
        """Move every component (the text/VAE/UNet weights to ``dtype`` if given)."""
        for module in (self.unet, self.vae, self.text_encoder):
            # Only pass a dtype that changes something: diffusers warns on any dtype argument.
            module.to(device)
            if dtype is not None and dtype != module.dtype:
                module.to(dtype=dtype)
        self._prompt_cache.clear()
        return self

    def freeze(self) -> "VideoModel":
        """Eval mode and no gradients for any base weight (LoRA brings its own trainable ones).

        Eval mode matters: the 3D UNet's temporal convolutions carry dropout 0.1, which sampling
        must not apply. The trainer switches the UNet back to train mode, as the official code.
        """
        for module in (self.unet, self.vae, self.text_encoder):
            module.requires_grad_(False).eval()
        return self

    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text embeddings (N, 77, D) as the pipeline computes them; each prompt is encoded once."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._prompt_cache]
        if missing:
            ids = self.tokenizer(missing, padding="max_length", truncation=True,
                                 max_length=self.tokenizer.model_max_length,
                                 return_tensors="pt").input_ids.to(self.text_encoder.device)
            embeds = self.text_encoder(ids)[0]
            self._prompt_cache.update(zip(missing, embeds))
        return torch.stack([self._prompt_cache[p] for p in prompts])

    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
        """Frames (B, 3, F, H, W) in [-1, 1] -> scaled latents (B, C, F, h, w), sampled from q(z|x)."""
        b, _, f, h, w = frames.shape
        flat = frames.permute(0, 2, 1, 3, 4).reshape(b * f, 3, h, w).to(self.vae.device, self.vae.dtype)
        latents = self.vae.encode(flat).latent_dist.sample(generator) * self.vae.config.scaling_factor
        return latents.reshape(b, f, *latents.shape[1:]).permute(0, 2, 1, 3, 4)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (N, C, h, w) -> frames (N, 3, H, W), roughly in [-1, 1]; differentiable."""
        return self.vae.decode(latents / self.vae.config.scaling_factor).sample

    @torch.no_grad()
    def decode_video(self, latents: torch.Tensor, chunk: int = 16) -> torch.Tensor:
        """Latents (B, C, F, h, w) -> frames (B, 3, F, H, W) clamped to [-1, 1], in chunks of frames."""
        b, c, f, h, w = latents.shape
        flat = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w).to(self.vae.dtype)
        frames = torch.cat([self.decode_latents(flat[i:i + chunk]) for i in range(0, b * f, chunk)])
        frames = frames.clamp(-1, 1).float()
        return frames.reshape(b, f, *frames.shape[1:]).permute(0, 2, 1, 3, 4)


def tiny_random_model(seed: int = 0, *, text_dim: int = 32) -> VideoModel:
    """A ModelScopeT2V-shaped model, randomly initialised, of about 3M parameters.

    Same classes and code paths as the real model: a 3D UNet with spatial and temporal attention,
    an 8x-downsampling AutoencoderKL, a CLIP text encoder with the real CLIP tokenizer. 32x32 frames
    give 4x4x4 latents. Meant for tests and seconds-long runs, not for pretty videos.
    """
    torch.manual_seed(seed)
    unet = UNet3DConditionModel(
        sample_size=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=text_dim, attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=8,
        layers_per_block=1, sample_size=32)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=text_dim, intermediate_size=2 * text_dim,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
        projection_dim=text_dim, bos_token_id=49406, eos_token_id=49407, pad_token_id=0))
    return VideoModel(unet, vae, text_encoder, clip_tokenizer(), modelscope_scheduler()).freeze()


def load_video_model(name_or_path: str, *, dtype: torch.dtype = torch.float32,
                     revision: str | None = None) -> VideoModel:
    """Load ModelScopeT2V-style components from a diffusers folder or hub id, one class at a time.

    ``damo-vilab/text-to-video-ms-1.7b`` and zeroscope checkpoints share this layout
    (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``). The scheduler is the
    checkpoint's own config read into a ``DDIMScheduler``.
    """
    if name_or_path == "tiny-random":
        return tiny_random_model()
    if name_or_path == "tiny-world":
        from .world.tiny_models import load_tiny_world

        return load_tiny_world()
    local = Path(name_or_path)
    if local.exists() and not (local / "unet").is_dir():
        raise FileNotFoundError(f"model={name_or_path!r}: a local model folder must contain unet/, "
                                f"vae/, text_encoder/, tokenizer/ and scheduler/ (diffusers layout)")
    kw = dict(revision=revision, torch_dtype=dtype)
    unet = UNet3DConditionModel.from_pretrained(name_or_path, subfolder="unet", **kw)
    vae = AutoencoderKL.from_pretrained(name_or_path, subfolder="vae", **kw)
    text_encoder = CLIPTextModel.from_pretrained(name_or_path, subfolder="text_encoder", **kw)
    tokenizer = CLIPTokenizer.from_pretrained(name_or_path, subfolder="tokenizer", revision=revision)
    scheduler = DDIMScheduler.from_pretrained(name_or_path, subfolder="scheduler", revision=revision)
    return VideoModel(unet, vae, text_encoder, tokenizer, scheduler).freeze()
