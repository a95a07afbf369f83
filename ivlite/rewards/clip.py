"""CLIP-style image-text rewards (HPSv2 and its tiny miniature), differentiable.

HPSv2 is an open_clip ViT-H-14 fine-tuned on human preference pairs; its score for a
frame and a caption is the cosine similarity of their L2-normalised embeddings (the
logit scale enters only its training loss, :func:`.base.bradley_terry_loss`). The
official InstructVideo code preprocesses decoded frames differentiably: x * 0.5 + 0.5,
clamp to [0, 1], bilinear resize to 224, CLIP mean/std normalisation.
:class:`ClipReward` does exactly that for any open_clip ``CLIP`` model, and encodes each
caption once (the reward model is frozen).

Each distinct caption is encoded on its own, never in a batch with others: a text
tower's output depends in the last bits on the batch it runs in (the matrix kernels
block the sums differently), so features cached from whichever batch a caption first
appeared in would make a run depend on the order of its batches, and a resumed run
differ from an uninterrupted one.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

# open_clip CLIP's text tower: what encode_text uses and encode_image does not.
TEXT_TOWER = ("transformer", "token_embedding", "positional_embedding", "ln_final",
              "text_projection", "attn_mask", "text")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipReward(torch.nn.Module):
    """score(frame, prompt) = <normalise(image_features), normalise(text_features)>.

    ``model`` is an open_clip ``CLIP``; ``tokenizer`` maps a list of strings to (N, 77)
    token ids.
    """

    def __init__(self, model: torch.nn.Module,
                 tokenizer: Callable[[list[str]], torch.Tensor]):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        size = getattr(model.visual, "image_size", 224)
        pair = isinstance(size, (tuple, list))
        self.image_size = tuple(size) if pair else (size, size)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1),
                             persistent=False)
        self._text_cache: dict[str, torch.Tensor] = {}
        # Set when the text tower is offloaded (offload_text_tower).
        self._text_device: torch.device | None = None

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (N, 3, H, W) in [-1, 1] -> normalised CLIP input (N, 3, 224, 224);
        differentiable."""
        x = (frames.float() * 0.5 + 0.5).clamp(0, 1)
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear",
                              align_corners=False)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def text_features(self, prompts: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings (N, E); each distinct prompt is encoded once,
        on its own (batch of 1, so its features do not depend on the other prompts),
        and cached. An offloaded text tower (:meth:`offload_text_tower`) encodes where
        it is."""
        device = self.mean.device
        for prompt in dict.fromkeys(prompts):
            if prompt not in self._text_cache:
                tokens = self.tokenizer([prompt]).to(self._text_device or device)
                feats = self.model.encode_text(tokens)
                normalised = F.normalize(feats.float(), dim=-1)
                self._text_cache[prompt] = normalised[0].to(device)
        return torch.stack([self._text_cache[p] for p in prompts])

    def offload_text_tower(self, prompts: Sequence[str], device="cpu") -> "ClipReward":
        """Cache the text features of ``prompts``, then move the text tower to
        ``device`` (off the GPU: 0.7 GB in fp16 for ViT-H-14's). Other prompts are still
        encoded, there."""
        self.text_features(prompts)
        for name in TEXT_TOWER:
            value = getattr(self.model, name, None)
            if isinstance(value, torch.nn.Module):
                value.to(device)
            elif isinstance(value, torch.nn.Parameter):
                moved = torch.nn.Parameter(value.detach().to(device),
                                           requires_grad=value.requires_grad)
                setattr(self.model, name, moved)
            elif isinstance(value, torch.Tensor):  # a buffer (the causal mask)
                setattr(self.model, name, value.to(device))
        self._text_device = torch.device(device)
        return self

    def image_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised image embeddings (N, E), differentiable in ``frames``."""
        dtype = next(self.model.parameters()).dtype
        feats = self.model.encode_image(self.preprocess(frames).to(dtype))
        return F.normalize(feats.float(), dim=-1)

    def forward(self, frames: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        if frames.shape[0] != len(prompts):
            raise ValueError(f"{frames.shape[0]} frames but {len(prompts)} prompts; "
                             "need one each")
        return (self.image_features(frames) * self.text_features(prompts)).sum(-1)

    def _apply(self, fn, *args, **kwargs):
        self._text_cache.clear()  # cached features live on the old device/dtype
        self._text_device = None  # moving the reward moves its text tower with it
        return super()._apply(fn, *args, **kwargs)


def tiny_random_clip(seed: int = 0) -> torch.nn.Module:
    """A randomly initialised open_clip ``CLIP`` (32x32 images, width 32): for tests
    only."""
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    return open_clip.CLIP(
        embed_dim=32,
        vision_cfg=CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8,
                                 image_size=32),
        text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2,
                             layers=2))


def clip_tokenizer_fn() -> Callable[[list[str]], torch.Tensor]:
    """open_clip's CLIP BPE tokenizer (the one HPSv2 uses); ships with open_clip, no
    download."""
    import open_clip

    return open_clip.get_tokenizer("ViT-H-14")
