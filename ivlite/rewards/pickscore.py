"""PickScore: a second public human-preference model, used as a held-out judge.

InstructVideo trains against HPSv2, so HPSv2 gains after fine-tuning partly measure how well the
model learned to please that one network. A preference model it never saw gives a less biased
reading. PickScore (Kirstain et al., 2023; ``yuvalkirstain/PickScore_v1``) is a CLIP ViT-H-14
fine-tuned on the Pick-a-Pic preferences, published as a transformers ``CLIPModel`` with the
processor of ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``.

Its score is ``logit_scale.exp() * cos(image, text)`` (about 100 x the cosine; typical values
18-23), as the authors compute it. Preprocessing follows the processor (resize the shortest side
to 224 with bicubic filtering, centre crop, CLIP mean/std) but on tensors, so the score stays
differentiable in the frames: it satisfies the reward protocol and can also be trained against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from .clip import CLIP_MEAN, CLIP_STD

PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json")


def _features(out) -> torch.Tensor:
    """transformers 4 returns the projected features; 5 returns an output with ``pooler_output``."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class HFClipReward(torch.nn.Module):
    """A transformers ``CLIPModel`` as a reward: ``scale * <normalise(img), normalise(txt)>``.

    ``scale`` is ``logit_scale.exp()`` when ``use_logit_scale`` (PickScore's definition), else 1
    (a plain cosine, like HPSv2). ``resize`` is the shortest side after resizing, ``crop`` the
    centre crop (both 224 for ViT-H-14).
    """

    def __init__(self, model: torch.nn.Module, tokenizer, *, resize: int, crop: tuple[int, int],
                 mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD,
                 use_logit_scale: bool = True):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.resize = int(resize)
        self.crop = (int(crop[0]), int(crop[1]))
        self.use_logit_scale = use_logit_scale
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, 3, 1, 1), persistent=False)
        self._text_cache: dict[str, torch.Tensor] = {}

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (N, 3, H, W) in [-1, 1] -> normalised model input (N, 3, crop); differentiable.

        As ``CLIPImageProcessor``: shortest side to ``resize`` (bicubic, antialiased, then clipped
        to [0, 1] as an 8-bit image would be), centre crop, mean/std.
        """
        x = (frames.float() * 0.5 + 0.5).clamp(0, 1)
        h, w = x.shape[-2:]
        if min(h, w) != self.resize:
            s = self.resize / min(h, w)
            size = (max(self.resize, round(h * s)), max(self.resize, round(w * s)))
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True,
                              align_corners=False).clamp(0, 1)
        ch, cw = self.crop
        top, left = (x.shape[-2] - ch) // 2, (x.shape[-1] - cw) // 2
        if top < 0 or left < 0:
            raise ValueError(f"frames of {tuple(x.shape[-2:])} after resizing are smaller than "
                             f"the crop {self.crop}")
        x = x[..., top:top + ch, left:left + cw]
        return (x - self.mean) / self.std

    def _scale(self) -> torch.Tensor:
        if not self.use_logit_scale:
            return torch.ones((), device=self.mean.device)
        return self.model.logit_scale.detach().float().exp()

    @torch.no_grad()
    def text_features(self, prompts: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings (N, E). Each distinct prompt is encoded once, on its own
        and without padding, so that its features do not depend on the other prompts of the
        batch it first came in (padding to the batch's longest prompt and the batch's size both
        change the last bits), and cached."""
        for prompt in dict.fromkeys(prompts):
            if prompt not in self._text_cache:
                tok = self.tokenizer([prompt], truncation=True, max_length=77,
                                     return_tensors="pt").to(self.mean.device)
                feats = _features(self.model.get_text_features(
                    input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]))
                self._text_cache[prompt] = F.normalize(feats.float(), dim=-1)[0]
        return torch.stack([self._text_cache[p] for p in prompts])

    def image_features(self, frames: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        feats = _features(self.model.get_image_features(
            pixel_values=self.preprocess(frames).to(dtype)))
        return F.normalize(feats.float(), dim=-1)

    def forward(self, frames: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        if frames.shape[0] != len(prompts):
            raise ValueError(f"{frames.shape[0]} frames but {len(prompts)} prompts; need one each")
        cos = (self.image_features(frames) * self.text_features(prompts)).sum(-1)
        return self._scale() * cos

    def _apply(self, fn, *args, **kwargs):
        self._text_cache.clear()
        return super()._apply(fn, *args, **kwargs)


def _size(value, key: str, default: int) -> int:
    """A processor size field: an int, a dict or (transformers 5) a ``SizeDict``."""
    if isinstance(value, (int, float)):
        return int(value)
    found = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
    return default if found is None else int(found)


def _has_tokenizer(folder: str) -> bool:
    return Path(folder).is_dir() and any((Path(folder) / f).is_file() for f in _TOKENIZER_FILES)


def pickscore_reward(model: str | None = None, processor: str | None = None, *,
                     dtype: torch.dtype | None = None, use_logit_scale: bool = True,
                     local_files_only: bool = False) -> HFClipReward:
    """PickScore (or any transformers ``CLIPModel`` folder / hub id) as a reward.

    ``model`` defaults to ``yuvalkirstain/PickScore_v1``. ``processor`` (tokenizer and image
    settings) defaults to the model folder when it holds a tokenizer, else
    ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` as the PickScore authors load it. Without a
    ``preprocessor_config.json`` the image settings fall back to the model's input size and the
    CLIP mean/std.
    """
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    model = model or PICKSCORE_MODEL
    if Path(model).exists() and not (Path(model) / "config.json").is_file():
        raise FileNotFoundError(f"reward_checkpoint={model!r}: a local CLIP folder needs "
                                f"config.json and the weights (CLIPModel.save_pretrained's "
                                f"layout)")
    if processor is None:
        processor = model if _has_tokenizer(model) else PICKSCORE_PROCESSOR
    hub = dict(local_files_only=local_files_only)
    kw = {} if dtype is None else {"dtype": dtype}
    clip = CLIPModel.from_pretrained(model, **kw, **hub)
    tokenizer = CLIPTokenizer.from_pretrained(processor, **hub)
    size = clip.config.vision_config.image_size
    resize, crop, mean, std = size, (size, size), CLIP_MEAN, CLIP_STD
    try:
        image_proc = CLIPImageProcessor.from_pretrained(processor, **hub)
    except OSError:  # no preprocessor_config.json: the model's own input size, CLIP statistics
        image_proc = None
    if image_proc is not None:
        resize = _size(image_proc.size, "shortest_edge", size)
        crop_size = getattr(image_proc, "crop_size", None) or size
        crop = (_size(crop_size, "height", size), _size(crop_size, "width", size))
        mean, std = list(image_proc.image_mean), list(image_proc.image_std)
    if crop != (size, size):
        raise ValueError(f"processor {processor!r} crops to {crop} but the model {model!r} takes "
                         f"{size}x{size} images")
    return HFClipReward(clip, tokenizer, resize=resize, crop=crop, mean=mean, std=std,
                        use_logit_scale=use_logit_scale)
