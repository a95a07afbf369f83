"""The method of InstructVideo (arXiv 2312.12490), free of everything else in ivlite.

- :mod:`.ddim`: DDIM with classifier-free guidance and truncated backpropagation;
- :mod:`.editing`: reward fine-tuning as editing (Eq. 3-4) and the full-chain baseline;
- :mod:`.segvr`: Segmental Video Reward (Eq. 6-7); :mod:`.tar`: Temporally Attenuated
  Reward (Eq. 8);
- :mod:`.objective`: one training objective end to end, set by
  :class:`.settings.MethodSettings`;
- :mod:`.lora`: LoRA on the UNet's attention through peft;
- :mod:`.protocols`: what the method needs of a model and a reward.

These modules import torch, diffusers and peft but no other part of ivlite (a test
checks it): the method can be read, and reused, on its own.
"""
