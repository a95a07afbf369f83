"""The tiny world's text-to-video model: ModelScopeT2V's classes at a CPU-friendly size.

Same diffusers/transformers classes as the real model, so every code path of the engine runs
unchanged on both: an ``AutoencoderKL`` (32x32 frames -> 4x8x8 latents), a
``UNet3DConditionModel`` with spatial and temporal convolutions and attention, a ``CLIPTextModel``
fed by the real CLIP BPE tokenizer, and ModelScope's DDIM noise schedule.

Shipped weights live in ``ivlite/assets/tiny_world/`` (fp16 safetensors, token tables trimmed to
the world's vocabulary, SHA-256 manifest); :func:`load_tiny_world` loads them offline.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from ..models import VideoModel, modelscope_scheduler
from ..tokenizer import clip_tokenizer
from .assets import ASSET_ROOT, is_shipped, load_weights, read_manifest, verify_manifest, \
    verify_shipped

WORLD_DIR = ASSET_ROOT / "tiny_world"
TOKEN_TABLE = "token_embedding.weight"  # a key suffix: see assets.save_weights
SCHEDULER_FILE = "scheduler/scheduler_config.json"

VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=32, layers_per_block=1,
    block_out_channels=(32, 64, 64), down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3, norm_num_groups=16, scaling_factor=1.0)

UNET_CONFIG = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D"),
    up_block_types=("CrossAttnUpBlock3D", "CrossAttnUpBlock3D"), cross_attention_dim=64,
    attention_head_dim=4, norm_num_groups=16)

TEXT_CONFIG = dict(
    vocab_size=49408, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
    num_attention_heads=4, max_position_embeddings=77, projection_dim=64, bos_token_id=49406,
    eos_token_id=49407, pad_token_id=0)


def build_vae(config: dict | None = None) -> AutoencoderKL:
    return AutoencoderKL(**(config or VAE_CONFIG))


def build_unet(config: dict | None = None) -> UNet3DConditionModel:
    """A UNet3DConditionModel from ``config`` (default :data:`UNET_CONFIG`). The extra key
    ``frame_positions`` (``"sinusoidal"``; absent or None: none) gives its temporal attention the
    frame index (:func:`add_frame_positions`)."""
    config = dict(config or UNET_CONFIG)
    positions = config.pop("frame_positions", None)
    unet = UNet3DConditionModel(**config)
    if positions is not None:
        add_frame_positions(unet, positions)
    return unet


def add_frame_positions(unet: UNet3DConditionModel, kind: str = "sinusoidal",
                        max_frames: int = 32) -> int:
    """Add a sinusoidal frame-index embedding to every temporal attention block of ``unet``, as
    AnimateDiff's motion modules do (diffusers' ``BasicTransformerBlock(positional_embeddings=
    "sinusoidal")``, which ``UNet3DConditionModel`` does not expose). Returns the blocks changed.

    Why: ModelScopeT2V's temporal attention has no position embedding, so its only frame index is
    the zero padding of its temporal convolutions at the clip's ends. A motion word must be drawn
    differently in every frame, so a UNet that cannot tell frame 3 from frame 12 cannot follow
    one; the real model learned it from millions of clips, while the tiny one, without it, had
    not after hours of CPU training (``tools/tiny_world/README.md``). The embedding has no weights
    and its table (up to ``max_frames`` frames) is not saved (a non-persistent buffer), so state
    dicts keep ModelScope's keys; the ``frame_positions`` entry of the model's config is what
    rebuilds it.
    """
    from diffusers.models.embeddings import SinusoidalPositionalEmbedding
    from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel

    if kind != "sinusoidal":
        raise ValueError(f"frame_positions={kind!r}; allowed: 'sinusoidal' or None")
    changed = 0
    for module in unet.modules():
        if isinstance(module, TransformerTemporalModel):
            for block in module.transformer_blocks:
                embed = SinusoidalPositionalEmbedding(block.dim, max_seq_length=max_frames)
                table = embed.pe
                del embed.pe
                embed.register_buffer("pe", table, persistent=False)
                block.pos_embed = embed.to(next(block.parameters()).device)
                block.positional_embeddings, block.num_positional_embeddings = kind, max_frames
                changed += 1
    return changed


def build_text_encoder(config: dict | None = None) -> CLIPTextModel:
    return CLIPTextModel(CLIPTextConfig(**(config or TEXT_CONFIG)))


def load_vae(folder: str | Path) -> AutoencoderKL:
    """A trained tiny-world VAE from its folder (``config.json`` + ``model.safetensors``), frozen."""
    folder = Path(folder)
    vae = build_vae(json.loads((folder / "config.json").read_text())["model"])
    vae.load_state_dict(load_weights(folder / "model.safetensors"))
    return vae.eval().requires_grad_(False)


def load_tiny_world(folder: str | Path | None = None, *, verify: bool = True) -> VideoModel:
    """The shipped tiny text-to-video model (no network). Checksums are verified first."""
    folder = Path(folder or WORLD_DIR)
    files = ["vae/config.json", "vae/model.safetensors", "unet/config.json",
             "unet/model.safetensors", "text_encoder/config.json",
             "text_encoder/model.safetensors"]
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"tiny world weights not found in {folder} (missing {missing[0]}); "
                                f"train them with `python -m tools.tiny_world.train_t2v`")
    if (folder / SCHEDULER_FILE).is_file():
        files.append(SCHEDULER_FILE)
    if verify and is_shipped(folder):
        verify_shipped(folder)  # every shipped file, the scheduler config included
    elif verify:
        verify_manifest(folder, files)

    def config(name: str) -> dict:
        return json.loads((folder / name / "config.json").read_text())["model"]

    vae, unet = build_vae(config("vae")), build_unet(config("unet"))
    text = build_text_encoder(config("text_encoder"))
    vae.load_state_dict(load_weights(folder / "vae" / "model.safetensors"))
    unet.load_state_dict(load_weights(folder / "unet" / "model.safetensors"))
    text.load_state_dict(load_weights(folder / "text_encoder" / "model.safetensors"))
    return VideoModel(unet, vae, text, clip_tokenizer(), world_scheduler(folder)).freeze()


def world_scheduler(folder: str | Path | None = None) -> DDIMScheduler:
    """The tiny world's DDIM scheduler: the folder's ``scheduler/scheduler_config.json`` if it
    has one (a model trained on another schedule, e.g. ``train_t2v --schedule zero-snr-v``),
    else ModelScopeT2V's. A folder that should have one (the shipped folder, or one whose
    manifest lists it) and lacks it is an error, not a silent switch of noise schedule."""
    folder = Path(folder or WORLD_DIR)
    path = folder / SCHEDULER_FILE
    if path.is_file():
        return DDIMScheduler.from_config(json.loads(path.read_text()))
    if is_shipped(folder) or SCHEDULER_FILE in (read_manifest(folder) or {}):
        raise FileNotFoundError(f"{path} is missing: the model was trained on the schedule it "
                                f"holds; reinstall ivlite (or restore the file)")
    return modelscope_scheduler()
