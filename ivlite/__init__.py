"""ivlite: InstructVideo (arXiv 2312.12490) in a small, tested package.

Reward fine-tuning of a text-to-video diffusion model recast as editing (a partial DDIM chain with
gradients only in its last steps), image rewards adapted to video by SegVR and TAR, trained with
LoRA. Runs on ModelScopeT2V + HPSv2 on a GPU and on tiny models on a CPU.

The names below are imported on first use (PEP 562), so that ``import ivlite`` and the ``ivlite``
command's argument checks do not wait seconds for torch and diffusers to load.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # The method (ivlite.method: imports nothing else of ivlite).
    "method.ddim": ("chain_timesteps", "ddim_scheduler", "guided_noise", "run_chain",
                    "sample_noise", "start_timestep"),
    "method.editing": ("edit", "generate"),
    "method.lora": ("add_lora", "lora_parameters", "merge_lora", "set_lora_scale",
                    "unmerge_lora"),
    "method.objective": ("ObjectiveOutput", "instructvideo_objective"),
    "method.segvr": ("decode_segments", "sample_frame_indices", "segment_bounds"),
    "method.settings": ("MethodSettings",),
    "method.tar": ("reward_loss", "tar_weights", "video_reward"),
    # Running it: configuration, models, rewards, data, training, evaluation.
    "adapters": ("load_adapter", "save_adapter"),
    "config": ("PRESETS", "Config", "ConfigError"),
    "data": ("LatentClips", "folder_clips", "generated_clips"),
    "evaluation": ("evaluate", "evaluate_splits", "sample_videos"),
    "grad_checkpointing": ("disable_unet_checkpointing", "enable_unet_checkpointing",
                           "enable_vae_checkpointing"),
    "memory": ("reduce_step_memory",),
    "models": ("VideoModel", "load_video_model", "modelscope_scheduler",
               "random_modelscope_model", "save_video_model", "tiny_random_model"),
    "pipeline": ("load_into_pipeline", "set_pipeline_lora_scale"),
    "prompts": ("prompt_set",),
    "registry": ("available_rewards", "build_judge", "build_reward", "load_model",
                 "register_reward"),
    "rewards": ("Reward", "RewardGradientError", "WeightedReward", "check_reward_gradients"),
    "trainer": ("RunResult", "finetune"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)
__version__ = "0.1.0"


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'ivlite' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
