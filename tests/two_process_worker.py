"""Run by test_trainer under torch.distributed.run with two CPU processes.

Each process draws different clips (the step generator is seeded with its rank), so without the
gradient all-reduce their LoRA weights would drift apart. Each writes its final weights.
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from ivlite.config import Config
from ivlite.method.lora import lora_state_dict
from ivlite.models import tiny_random_model
from ivlite.trainer import finetune

torch.set_num_threads(1)
out = Path(sys.argv[1])
model = tiny_random_model()
cfg = Config.preset("tiny-random", out_dir=str(out / "run"), max_steps=3, num_frames=8,
                    ddim_steps=10, device="cpu")
finetune(cfg, model=model, progress=False)
rank = torch.distributed.get_rank()
save_file({k: v.contiguous() for k, v in lora_state_dict(model.unet).items()},
          out / f"lora-rank{rank}.safetensors")
