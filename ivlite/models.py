"""The text-to-video model ivlite fine-tunes: ModelScopeT2V's components, by class.

A :class:`VideoModel` bundles the four diffusers/transformers components of ModelScopeT2V
(``UNet3DConditionModel``, ``AutoencoderKL``, ``CLIPTextModel`` + ``CLIPTokenizer``) and its
``DDIMScheduler``. They are loaded one by one, by class, so ivlite does not depend on the deprecated
``TextToVideoSDPipeline`` surviving. The same code runs on the 1.4B-parameter UNet and on tiny
random instances of the same classes built here for tests.
"""

from __future__ import annotations

import json
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


MODELSCOPE_REPO = "damo-vilab/text-to-video-ms-1.7b"
"""ModelScopeT2V's diffusers checkpoint, now also named ``ali-vilab/text-to-video-ms-1.7b``
(:data:`ivlite.hub.MODELSCOPE_NAMES`; the loaders find a cached copy under either name)."""

# The component configs of MODELSCOPE_REPO (unet/, vae/, text_encoder/ config.json), for building
# the full-size architecture with random weights (benchmarks) or scaled-down copies (tests).
MODELSCOPE_UNET = dict(
    sample_size=32, in_channels=4, out_channels=4, act_fn="silu", attention_head_dim=64,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=1024, layers_per_block=2,
    down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D",
                      "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
    norm_eps=1e-5, norm_num_groups=32)
MODELSCOPE_VAE = dict(
    act_fn="silu", block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
    sample_size=512, scaling_factor=0.18215)
MODELSCOPE_TEXT = dict(
    hidden_act="gelu", hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
    num_hidden_layers=23, projection_dim=512, vocab_size=49408, max_position_embeddings=77,
    layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1)

# ModelScope's architecture scaled down: the same block types (3 cross-attention down blocks and a
# plain one, mirrored up), two layers per block, cross-attention, temporal attention, 32 norm
# groups, an 8x VAE and a CLIP text encoder, with small widths. 64x64 frames -> 4x8x8 latents.
SMALL_MODELSCOPE_UNET = {**MODELSCOPE_UNET, "sample_size": 8,
                         "block_out_channels": (32, 32, 64, 64), "attention_head_dim": 4,
                         "cross_attention_dim": 32}
SMALL_MODELSCOPE_VAE = {**MODELSCOPE_VAE, "block_out_channels": (32, 32, 64, 64),
                        "layers_per_block": 1, "sample_size": 64}
SMALL_MODELSCOPE_TEXT = {**MODELSCOPE_TEXT, "hidden_size": 32, "intermediate_size": 64,
                         "num_attention_heads": 2, "num_hidden_layers": 2, "projection_dim": 32}

MODEL_INDEX = {
    "_class_name": "TextToVideoSDPipeline",
    "scheduler": ["diffusers", "DDIMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet3DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
"""``model_index.json`` of MODELSCOPE_REPO (plus ``_diffusers_version``)."""


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
        """Text embeddings (N, 77, D) as the pipeline computes them. Each distinct prompt is
        encoded once, on its own (batch of 1: the encoder's last bits depend on the batch it runs
        in, and a run must not depend on which batch a caption first came in), and cached.

        A prompt longer than the text encoder's positions is a ValueError, not cut: the model would
        see part of it while a reward scored all of it (entry points say which input held it)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._prompt_cache]
        limit = self.tokenizer.model_max_length
        for prompt in missing:
            count = len(self.tokenizer(prompt).input_ids)
            if count > limit:
                raise ValueError(f"prompt {prompt[:40]!r}... has {count} tokens (with start and "
                                 f"end tokens); the text encoder takes at most {limit}: shorten it")
        for prompt in missing:
            ids = self.tokenizer([prompt], padding="max_length", truncation=True, max_length=limit,
                                 return_tensors="pt").input_ids.to(self.text_encoder.device)
            # .to: the encoder may be offloaded (offload_text_encoder)
            self._prompt_cache[prompt] = self.text_encoder(ids)[0][0].to(self.device)
        return torch.stack([self._prompt_cache[p] for p in prompts])

    def offload_text_encoder(self, prompts: Sequence[str], device="cpu") -> "VideoModel":
        """Cache the embeddings of ``prompts``, then move the text encoder to ``device`` (off the
        GPU: 0.68 GB in fp16 for ModelScope's). Other prompts are still encoded, there."""
        self.encode_prompts(list(prompts))
        self.text_encoder.to(device)
        return self

    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor, generator: torch.Generator | None = None,
                     chunk: int = 16) -> torch.Tensor:
        """Frames (B, 3, F, H, W) in [-1, 1] -> scaled latents (B, C, F, h, w), sampled from q(z|x).

        Encoded ``chunk`` frames at a time: the encoder's activations at 256x256 are about 0.3 GB
        per frame in fp16, so a batch of clips at once would not fit a 16 GB GPU.
        """
        b, _, f, h, w = frames.shape
        flat = frames.permute(0, 2, 1, 3, 4).reshape(b * f, 3, h, w)
        scale = self.vae.config.scaling_factor
        latents = torch.cat([
            self.vae.encode(flat[i:i + chunk].to(self.vae.device, self.vae.dtype)).latent_dist
            .sample(generator) * scale for i in range(0, b * f, chunk)])
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


def random_modelscope_model(size: str = "small", *, seed: int = 0, device=None,
                            dtype: torch.dtype | None = None) -> VideoModel:
    """ModelScopeT2V's architecture with random weights: ``size="full"`` (the 1.41B-parameter UNet,
    the SD VAE, the 23-layer OpenCLIP-H text encoder; no download) or ``"small"`` (the same block
    types, layers and norm groups with narrow channels: about 2M parameters, for CPU tests).

    ``device``/``dtype`` are where the weights are created (``device="cuda"`` initialises a full
    model in seconds instead of a minute on the CPU).
    """
    configs = {"full": (MODELSCOPE_UNET, MODELSCOPE_VAE, MODELSCOPE_TEXT),
               "small": (SMALL_MODELSCOPE_UNET, SMALL_MODELSCOPE_VAE, SMALL_MODELSCOPE_TEXT)}
    if size not in configs:
        raise ValueError(f"size={size!r}; allowed: {sorted(configs)}")
    unet_cfg, vae_cfg, text_cfg = configs[size]
    torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        unet = UNet3DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
    model = VideoModel(unet, vae, text_encoder, clip_tokenizer(), modelscope_scheduler()).freeze()
    if dtype is not None:
        model.to(device or "cpu", dtype)
    return model


def save_video_model(model: VideoModel, folder: str | Path) -> Path:
    """Write ``model`` as a diffusers repository folder, laid out as MODELSCOPE_REPO is.

    ``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``:
    :func:`load_video_model` and ``diffusers.TextToVideoSDPipeline.from_pretrained`` both read it.
    """
    import diffusers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.unet.save_pretrained(folder / "unet")
    model.vae.save_pretrained(folder / "vae")
    model.text_encoder.save_pretrained(folder / "text_encoder")
    model.tokenizer.save_pretrained(folder / "tokenizer")
    model.scheduler.save_pretrained(folder / "scheduler")
    index = {"_class_name": MODEL_INDEX["_class_name"],
             "_diffusers_version": diffusers.__version__,
             **{k: v for k, v in MODEL_INDEX.items() if not k.startswith("_")}}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return folder


def _transformers_dtype_kw(dtype: torch.dtype) -> dict:
    """transformers renamed ``torch_dtype`` to ``dtype`` (4.56); the old name now warns."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def load_video_model(name_or_path: str, *, dtype: torch.dtype = torch.float32,
                     revision: str | None = None, variant: str | None = "auto",
                     local_files_only: bool = False) -> VideoModel:
    """Load ModelScopeT2V-style components from a diffusers folder or hub id, one class at a time.

    ``damo-vilab/text-to-video-ms-1.7b`` and zeroscope checkpoints share this layout
    (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``). The scheduler is the
    checkpoint's own config read into a ``DDIMScheduler``. ``dtype`` is the weights' precision
    (``torch.float16`` / ``torch.bfloat16`` on a GPU); ``variant="fp16"`` downloads the hub
    repository's half-precision files (half the bytes) instead of the float32 ones, ``None`` the
    default ones. ``"auto"`` takes a variant the local hub cache holds completely, under any of
    the model's published names (``damo-vilab/`` or ``ali-vilab/``), and then loads without
    network; with nothing cached it downloads the default files
    (:func:`ivlite.hub.resolve_weights`). Built-in models by name (``tiny-random``, ...):
    :func:`ivlite.registry.load_model`.
    """
    local = Path(name_or_path)
    if local.exists() and not (local / "unet").is_dir():
        raise FileNotFoundError(f"model={name_or_path!r}: a local model folder must contain unet/, "
                                f"vae/, text_encoder/, tokenizer/ and scheduler/ (diffusers layout)")
    from .hub import resolve_weights

    name_or_path, variant, cached = resolve_weights(name_or_path, dtype, variant, revision)
    hub = dict(revision=revision, local_files_only=local_files_only or cached)
    unet_class = UNet3DConditionModel.load_config(name_or_path, subfolder="unet", **hub) \
        .get("_class_name", "UNet3DConditionModel")
    if unet_class != "UNet3DConditionModel":
        raise ValueError(f"model={name_or_path!r}: its unet is a {unet_class}, not the "
                         f"UNet3DConditionModel of a ModelScopeT2V-style text-to-video model")
    kw = dict(torch_dtype=dtype, variant=variant, **hub)
    unet = UNet3DConditionModel.from_pretrained(name_or_path, subfolder="unet", **kw)
    vae = AutoencoderKL.from_pretrained(name_or_path, subfolder="vae", **kw)
    text_encoder = CLIPTextModel.from_pretrained(name_or_path, subfolder="text_encoder",
                                                 variant=variant, **_transformers_dtype_kw(dtype),
                                                 **hub)
    tokenizer = CLIPTokenizer.from_pretrained(name_or_path, subfolder="tokenizer", **hub)
    scheduler = DDIMScheduler.from_pretrained(name_or_path, subfolder="scheduler", **hub)
    return VideoModel(unet, vae, text_encoder, tokenizer, scheduler).freeze()
