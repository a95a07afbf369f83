"""The book's run modes, and the helpers its chapters share beyond the figures of :mod:`.viz`.

Every chapter runs in one of two modes, decided in one place, :func:`run_mode`:

- ``"tiny"``: the shipped tiny-world text-to-video model and its tiny HPS reward, on a CPU, in
  minutes. The committed outputs of the chapters are tiny-mode outputs, and the tests (nbval)
  re-execute the chapters in tiny mode.
- ``"full"``: ModelScopeT2V (``damo-vilab/text-to-video-ms-1.7b``) and HPSv2 on a CUDA GPU, for
  example on Colab.

The environment variable ``IVLITE_BOOK_MODE`` (``tiny`` or ``full``) decides if set. Otherwise the
mode is ``full`` only if CUDA is available *and* the real weights are already in the local caches
(checked without touching the network, under either of the model's published names:
``damo-vilab/`` or ``ali-vilab/``), else ``tiny``. A chapter then asks :func:`book_model` and
:func:`book_reward` for the model and reward of its mode and makes the same calls in both.

Also here: the full-size ModelScopeT2V UNet built without weights (:func:`modelscope_unet`, for
parameter counts), where LoRA sits in a UNet (:func:`lora_sites`), and diffusers' own
video-to-video pipeline run next to :func:`ivlite.edit` (:func:`diffusers_edit_comparison`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .common import unet_in_eval_mode
from .hub import CONFIG_FILES, WEIGHT_FILES, find_cached
from .models import MODELSCOPE_REPO, MODELSCOPE_UNET

MODES = ("tiny", "full")
MODE_ENV = "IVLITE_BOOK_MODE"
MODELSCOPE_ID = MODELSCOPE_REPO

# ----------------------------------------------------------------------------- the mode


def _cached(repo_id: str, filename: str) -> bool:
    """Whether the hub cache already holds ``filename`` of ``repo_id`` (no network)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def modelscope_variant(repo_id: str = MODELSCOPE_ID) -> str | None:
    """Which weights of ModelScopeT2V the local hub cache holds completely (no network).

    ``"fp16"`` (the repository's half-precision files), ``"fp32"`` (its default ones), or
    ``None`` when a config, tokenizer or weight file is missing (:data:`ivlite.hub.CONFIG_FILES`).
    Files fetched under either published name count (``damo-vilab/`` or ``ali-vilab/``).
    """
    found = find_cached(repo_id)
    return found[1] if found else None


def modelscope_cached(repo_id: str = MODELSCOPE_ID) -> bool:
    """Whether ModelScopeT2V's configs and weights are all in the local hub cache."""
    return modelscope_variant(repo_id) is not None


def hpsv2_cached(version: str = "v2") -> bool:
    """Whether the HPSv2 checkpoint is in hpsv2's cache folder or the local hub cache."""
    from .rewards.hps import HPS_FILES, HPS_REPO

    folder = Path(os.environ.get("HPS_ROOT", os.path.expanduser("~/.cache/hpsv2")))
    return (folder / HPS_FILES[version]).is_file() or _cached(HPS_REPO, HPS_FILES[version])


def full_weights_cached() -> bool:
    """ModelScopeT2V and HPSv2 are both available offline."""
    return modelscope_cached() and hpsv2_cached()


def fetch_full_weights(version: str = "v2") -> None:
    """Download ModelScopeT2V's components and the HPSv2 checkpoint into the local hub cache.

    Only the files :func:`book_model` and :func:`ivlite.rewards.hps_reward` read: the configs,
    the tokenizer, and the half-precision (``fp16`` variant) weights where the repository has
    them, else the default ones. Afterwards :func:`run_mode` is ``"full"`` on a machine with CUDA.
    """
    from huggingface_hub import HfApi, hf_hub_download

    from .rewards.hps import HPS_FILES, HPS_REPO

    available = set(HfApi().list_repo_files(MODELSCOPE_ID))
    files = [f for f in CONFIG_FILES if f in available]
    files += [f for f in available if f.startswith(("tokenizer/", "scheduler/"))]
    for folder, names in WEIGHT_FILES.items():
        found = [f"{folder}/{n.format(suffix)}" for suffix in (".fp16", "") for n in names
                 if f"{folder}/{n.format(suffix)}" in available]
        if not found:
            raise FileNotFoundError(f"{MODELSCOPE_ID} has no weights in {folder}/")
        files.append(found[0])
    for name in sorted(set(files)):
        hf_hub_download(MODELSCOPE_ID, name)
    hf_hub_download(HPS_REPO, HPS_FILES[version])


def run_mode() -> str:
    """``"tiny"`` or ``"full"``: ``$IVLITE_BOOK_MODE`` if set, else full iff CUDA and the weights
    are cached locally (:func:`full_weights_cached`), else tiny."""
    forced = os.environ.get(MODE_ENV, "").strip().lower()
    if forced:
        if forced not in MODES:
            raise ValueError(f"{MODE_ENV}={forced!r}; allowed: {', '.join(MODES)}")
        return forced
    return "full" if torch.cuda.is_available() and full_weights_cached() else "tiny"


def choose_mode(full: bool) -> str:
    """The chapter's one switch: ``full=True`` asks for ModelScopeT2V and HPSv2 on a GPU.

    With ``full`` and a CUDA GPU, the weights are fetched once if the local caches lack them
    (:func:`fetch_full_weights`, about 5.4 GB); ``full`` without CUDA is refused with one line.
    Returns :func:`run_mode` (``IVLITE_BOOK_MODE``, when set, still decides).
    """
    if full and not os.environ.get(MODE_ENV, "").strip():
        if not torch.cuda.is_available():
            raise RuntimeError("FULL = True needs a CUDA GPU (on Colab: Runtime > Change "
                               "runtime type > GPU); set FULL = False for the tiny world")
        if not full_weights_cached():
            fetch_full_weights()
    return run_mode()


def _mode(mode: str | None) -> str:
    mode = run_mode() if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; allowed: {', '.join(MODES)}")
    return mode


def book_device(mode: str | None = None) -> torch.device:
    """Where the chapter's models live: the CPU in tiny mode, the GPU in full mode.

    Full mode without CUDA (only when forced with ``IVLITE_BOOK_MODE=full``, as the tests do on
    the published layout with tiny weights) runs on the CPU.
    """
    full = _mode(mode) == "full" and torch.cuda.is_available()
    return torch.device("cuda" if full else "cpu")


def book_dtype(mode: str | None = None) -> torch.dtype:
    """The weights' dtype of the mode: float16 on a GPU, float32 on the CPU."""
    return torch.float16 if book_device(mode).type == "cuda" else torch.float32


def book_model(mode: str | None = None, *, dtype: torch.dtype | None = None):
    """The text-to-video model of the mode, frozen, on :func:`book_device`.

    tiny: the shipped tiny-world model (float32, CPU). full: ModelScopeT2V loaded class by class
    with :func:`ivlite.registry.load_model` in ``dtype`` (:func:`book_dtype` by default) on
    :func:`book_device`: from the
    local cache when it is complete (no network), else downloaded (the fp16 files).
    """
    from .registry import WORLD_MODEL, load_model

    mode = _mode(mode)
    if mode == "tiny":
        return load_model(WORLD_MODEL)
    found = find_cached(MODELSCOPE_ID)
    name, cached = found if found is not None else (MODELSCOPE_ID, None)
    model = load_model(name, dtype=book_dtype(mode) if dtype is None else dtype,
                       variant=None if cached == "fp32" else "fp16",
                       local_files_only=cached is not None)
    return model.to(book_device(mode))


def book_reward(mode: str | None = None, *, dtype: torch.dtype | None = None):
    """The reward of the mode, frozen, on :func:`book_device`: tiny HPS, or HPSv2
    (:func:`book_dtype`)."""
    from .registry import WORLD_REWARD, build_reward

    mode = _mode(mode)
    reward = build_reward(WORLD_REWARD if mode == "tiny" else "hpsv2")
    reward.requires_grad_(False).eval()
    if mode == "full":
        reward.to(book_device(mode), book_dtype(mode) if dtype is None else dtype)
    return reward


# ----------------------------------------------------------------------------- model anatomy


def modelscope_unet(device: str | torch.device = "meta"):
    """ModelScopeT2V's UNet3DConditionModel from its config, without weights (``meta`` device).

    Enough to count parameters, list modules or inject LoRA, with no download and no memory.
    """
    from diffusers import UNet3DConditionModel

    with torch.device(device):
        return UNet3DConditionModel(**MODELSCOPE_UNET)


def attention_kind(name: str) -> str:
    """Which attention of a 3D UNet a module (by its qualified name) belongs to.

    ``spatial self`` (``attentions.*.attn1``: pixels of a frame attend to each other),
    ``spatial cross`` (``attentions.*.attn2``: pixels attend to the text), ``temporal``
    (``temp_attentions`` and ``transformer_in``: each pixel attends across the frames; in
    diffusers both of their attention layers are self-attention), or ``other``.
    """
    if ".temp_attentions." in f".{name}" or name.startswith("transformer_in."):
        return "temporal"
    if ".attentions." in f".{name}":
        if ".attn1." in name:
            return "spatial self"
        if ".attn2." in name:
            return "spatial cross"
    return "other"


def lora_sites(unet: torch.nn.Module) -> list[dict[str, Any]]:
    """Every layer of ``unet`` that carries LoRA: name, kind, shape and adapter size.

    One dict per adapted linear layer: ``name`` (as peft's state dict names it, without
    ``.base_layer``), ``kind`` (:func:`attention_kind`), ``target`` (``to_q`` ...), ``in`` and
    ``out`` features, ``rank``, ``base`` (parameters of the frozen layer) and ``lora``
    (parameters of A and B: rank * (in + out)).
    """
    from peft.tuners.lora import LoraLayer

    sites = []
    for name, module in unet.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        base = module.get_base_layer()
        a, b = module.lora_A["default"], module.lora_B["default"]
        target = "to_out.0" if name.endswith("to_out.0") else name.rsplit(".", 1)[-1]
        sites.append(dict(
            name=name, kind=attention_kind(name), target=target, rank=a.out_features,
            **{"in": base.in_features, "out": base.out_features},
            base=sum(p.numel() for p in base.parameters()),
            lora=a.weight.numel() + b.weight.numel()))
    return sites


def count_parameters(module: torch.nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (works on the ``meta`` device too)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# ----------------------------------------------------------------------------- diffusers parity


@torch.no_grad()
@unet_in_eval_mode
def diffusers_edit_comparison(model, frames: torch.Tensor, prompt: str, *, tau: float = 0.6,
                              ddim_steps: int = 20, guidance_scale: float = 3.0, seed: int = 0
                              ) -> dict[str, Any]:
    """Run diffusers' ``VideoToVideoSDPipeline`` and :func:`ivlite.edit` on the same inputs.

    ``frames`` (F, 3, H, W) in [-1, 1]. The pipeline (diffusers' own code: its VAE encoding, its
    ``DDIMScheduler`` loop, its guidance) edits the clip with ``strength=tau`` and returns latents.
    ivlite then redoes it with the random numbers the pipeline drew from the same seeded
    generator (first the VAE posterior sample, then the noise): ``edit`` with ``noise=`` given,
    no offset noise, no gradients. Returns both final latents (B, C, F, h, w), their largest
    absolute difference and the number of UNet calls of each.
    """
    from diffusers import DDIMScheduler, VideoToVideoSDPipeline
    from diffusers.utils import logging as diffusers_logging

    from .method.editing import edit

    calls = {"pipeline": 0, "ivlite": 0}
    current = "pipeline"

    def count(*_):
        calls[current] += 1

    handle = model.unet.register_forward_hook(count)
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # the pipeline announces its deprecation on creation
    try:
        pipe = VideoToVideoSDPipeline(vae=model.vae, text_encoder=model.text_encoder,
                                      tokenizer=model.tokenizer, unet=model.unet,
                                      scheduler=DDIMScheduler.from_config(model.scheduler.config))
        pipe.set_progress_bar_config(disable=True)
        video = [((f.permute(1, 2, 0).float().cpu().numpy() + 1) / 2).clip(0, 1) for f in frames]
        expected = pipe(prompt, video=video, strength=tau, num_inference_steps=ddim_steps,
                        guidance_scale=guidance_scale, output_type="latent",
                        generator=torch.Generator().manual_seed(seed)).frames

        current = "ivlite"
        gen = torch.Generator().manual_seed(seed)
        x0 = model.encode_video(pipe.video_processor.preprocess_video(video), gen)
        b, c, f, h, w = x0.shape
        noise = torch.randn((b * f, c, h, w), generator=gen).reshape(b, f, c, h, w)
        out = edit(model.unet, model.scheduler, x0, model.encode_prompts([prompt]),
                   model.encode_prompts([""]), tau=tau, ddim_steps=ddim_steps,
                   guidance_scale=guidance_scale, grad_steps=0,
                   noise=noise.permute(0, 2, 1, 3, 4).to(x0.device, x0.dtype))
    finally:
        handle.remove()
        diffusers_logging.set_verbosity(verbosity)
    expected, ours = expected.float().cpu(), out.latents.float().cpu()
    return dict(diffusers=expected, ivlite=ours, max_abs_diff=float((expected - ours).abs().max()),
                scale=float(expected.abs().max()), unet_calls=calls)


# ----------------------------------------------------------------------------- the repository


def use_repository() -> Path:
    """The repository checkout whose ``benchmarks/`` and ``tools/`` a chapter imports.

    Those folders are not part of the installed package: chapters that render committed benchmark
    results need a clone of the repository. If ``benchmarks`` is already importable (a clone on
    ``sys.path``, as the Colab cell arranges), its folder is returned; otherwise the current
    folder and its parents are searched and the one found is put first on ``sys.path``.
    """
    import importlib.util
    import sys

    try:  # find_spec imports the parent package, which is absent outside a clone's sys.path
        spec = importlib.util.find_spec("benchmarks.results_view")
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.origin:
        return Path(spec.origin).resolve().parents[1]
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "benchmarks" / "results_view.py").is_file():
            sys.path.insert(0, str(folder))
            return folder
    raise FileNotFoundError(
        f"no clone of the repository in {here} or above: this chapter renders its committed "
        "benchmark results, so run it inside a clone")


# ----------------------------------------------------------------------------- code on the page

SOURCE_HEADER = "# source: "   # first line of every block show_source prints; the tests find it


def source_block(obj: Any, *, start: str | None = None, end: str | None = None) -> str:
    """The current source of a function or class of ivlite, as the book prints it.

    The first line names where it lives (``# source: ivlite/method/tar.py, tar_weights, lines
    12-40``); then the lines themselves. ``start``/``end``: print only from the first line
    containing ``start`` through the first later line containing ``end`` (both included), for a
    long function whose one part a section explains. Raises if a marker is not found.
    """
    import inspect

    lines, first = inspect.getsourcelines(obj)
    lo, hi = 0, len(lines)
    if start is not None:
        found = [i for i, line in enumerate(lines) if start in line]
        if not found:
            raise ValueError(f"start={start!r} is not in the source of {obj.__qualname__}")
        lo = found[0]
    if end is not None:
        found = [i for i, line in enumerate(lines) if end in line and i >= lo]
        if not found:
            raise ValueError(f"end={end!r} is not in the source of {obj.__qualname__} "
                             f"after start={start!r}")
        hi = found[0] + 1
    path = Path(inspect.getsourcefile(obj)).resolve()
    package = Path(__file__).resolve().parent
    where = (path.relative_to(package.parent).as_posix() if package in path.parents
             else path.name)
    header = (f"{SOURCE_HEADER}{where}, {obj.__qualname__}, "
              f"lines {first + lo}-{first + hi - 1}")
    return header + "\n" + "".join(lines[lo:hi]).rstrip("\n")


def show_source(obj: Any, *, start: str | None = None, end: str | None = None):
    """Display :func:`source_block` as highlighted Python: the code that runs, on the page."""
    from IPython.display import Markdown

    return Markdown("```python\n" + source_block(obj, start=start, end=end) + "\n```")
