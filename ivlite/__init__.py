"""ivlite: InstructVideo (arXiv 2312.12490) in a small, tested package.

Reward fine-tuning of a text-to-video diffusion model recast as editing (a partial DDIM chain with
gradients only in its last steps), image rewards adapted to video by SegVR and TAR, trained with
LoRA. Runs on ModelScopeT2V + HPSv2 on a GPU and on tiny models on a CPU.
"""

from .checkpointing import disable_unet_checkpointing, enable_unet_checkpointing
from .config import PRESETS, Config, ConfigError
from .data import LatentClips, folder_clips, generated_clips
from .ddim import chain_timesteps, ddim_scheduler, guided_noise, run_chain, sample_noise, \
    start_timestep
from .editing import edit, generate
from .evaluate import evaluate, evaluate_splits, sample_videos
from .lora import add_lora, load_adapter, lora_parameters, merge_lora, save_adapter, \
    set_lora_scale, unmerge_lora
from .models import VideoModel, load_video_model, modelscope_scheduler, random_modelscope_model, \
    save_video_model, tiny_random_model
from .objective import ObjectiveOutput, instructvideo_objective
from .pipeline import load_into_pipeline, set_pipeline_lora_scale
from .prompts import prompt_set
from .rewards import Reward, RewardGradientError, WeightedReward, build_reward, \
    check_reward_gradients
from .segvr import decode_segments, sample_frame_indices, segment_bounds
from .tar import reward_loss, tar_weights, video_reward
from .trainer import RunResult, finetune

__version__ = "0.1.0"
