"""Peak GPU memory of a training step, measured on the CPU: live tensor bytes while ops run.

:class:`LiveBytes` is a dispatch mode that counts every tensor storage on one device once, from
the op that creates it until the last reference dies (a weakref on the storage), and keeps the peak
per named phase. On the meta device tensors hold no data, so a full-size step (a 1.4B-parameter
UNet, 16 frames at 256x256) is traced in a minute or two; on real CPU tensors the same mode
measures a real run, which is how the trace is checked (``benchmarks/memory_model.py --check``).
(Meta rather than ``FakeTensorMode``: fake CUDA tensors cannot run backward without a GPU, and
``nn.Module.to`` cannot convert fake parameters.)

What a CUDA step does differently from a CPU one is emulated by :class:`CudaAutocast`, a
function mode above autograd (so that its casts are saved for backward as autocast's are):

- CUDA autocast's op lists for float16: matmuls and convolutions in float16; normalisations,
  ``exp``, softmax and sums in float32;
- ``scaled_dot_product_attention``'s choice of kernel on a given GPU generation. On a T4 or V100
  (``sm75``) flash attention is unavailable and the memory-efficient kernel needs head widths
  divisible by 8 in float16, else the math kernel runs, in float32, holding the (L x L)
  probabilities; ``sm80`` (A100, L4, H100) runs flash attention. ModelScope's heads (64 wide
  spatially, 40-160 temporally) take the memory-efficient kernel on a T4.

``nn.MultiheadAttention`` (open_clip's towers) is one call at this level: it runs in its inputs'
dtype, which is what autocast gives it there (float16 activations and weights).

Not counted: the CUDA context, cuBLAS/cuDNN workspaces and the caching allocator's fragmentation
(typically a few hundred MiB to 10-15 % on top of live tensors).
"""

from __future__ import annotations

import weakref
from contextlib import ExitStack, contextmanager, nullcontext

import torch
import torch.utils.checkpoint
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

GIB = 2 ** 30
F = torch.nn.functional

# CUDA autocast's policies (torch's autocast op reference), by the Python function's name.
_LOW_PRECISION = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                  "conv_transpose3d", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm",
                  "baddbmm", "addmm", "addbmm", "addmv", "mv", "einsum", "prelu"}
_FLOAT32 = {"group_norm", "layer_norm", "exp", "log", "log1p", "expm1", "pow", "__pow__",
            "rsqrt", "reciprocal", "softplus", "cosine_similarity", "mse_loss", "l1_loss",
            "erfinv", "acos", "asin", "cosh", "sinh", "tan", "log10", "log2", "cdist", "dist",
            "binary_cross_entropy_with_logits", "nll_loss", "kl_div", "smooth_l1_loss"}
_FLOAT32_DTYPE_ARG = {"softmax", "log_softmax", "sum", "cumsum", "cumprod", "prod"}

SDPA_POLICIES = ("sm75", "sm80", "cpu")


def _cast(tree, dtype: torch.dtype):
    def cast(x):
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype not in (
                dtype, torch.float64):
            return x.to(dtype)
        return x
    return tree_map(cast, tree)


def _has_low(tree) -> bool:
    return any(isinstance(x, torch.Tensor) and x.dtype in (torch.float16, torch.bfloat16)
               for x in tree_leaves(tree))


def sdpa_backend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask, policy: str) -> str:
    """The kernel torch picks on a CUDA GPU of ``policy``'s generation: math, efficient or flash."""
    half = q.dtype in (torch.float16, torch.bfloat16)
    dq, dk, dv = q.shape[-1], k.shape[-1], v.shape[-1]
    if policy == "sm80" and half and mask is None and dq == dk == dv <= 256:
        return "flash"  # torch pads the head dimension to a multiple of 8 first
    if policy == "sm75" and q.dtype == torch.bfloat16:
        return "math"
    # The memory-efficient kernel's GEMM alignment: 8 in half precision (tensor cores), in
    # float32 1 before sm80 and 4 from sm80 on.
    align = 8 if half else (1 if policy == "sm75" else 4)
    if dq == dk and dq % align == 0 and dv % align == 0:
        return "efficient"
    return "math"


def emulated_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                  scale=None, enable_gqa=False, *, policy: str = "sm75"):
    """``F.scaled_dot_product_attention`` as the chosen CUDA kernel runs it (same saved tensors)."""
    if enable_gqa:
        raise NotImplementedError("grouped-query attention is not emulated")
    aten = torch.ops.aten
    if policy == "cpu":  # torch's CPU flash kernel, which takes any head width
        return aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)[0]
    backend = sdpa_backend(query, key, value, attn_mask, policy)
    if backend == "math":
        return aten._scaled_dot_product_attention_math(query, key, value, attn_mask, dropout_p,
                                                       is_causal, scale=scale)[0]
    if backend == "efficient":
        grad = query.requires_grad or key.requires_grad or value.requires_grad
        return aten._scaled_dot_product_efficient_attention(
            query, key, value, attn_mask, grad, dropout_p, is_causal, scale=scale)[0]
    d = query.shape[-1]
    pad = (-d) % 8
    scale = d ** -0.5 if scale is None else scale
    q, k, v = (F.pad(t, (0, pad)) if pad else t for t in (query, key, value))
    out = aten._scaled_dot_product_flash_attention(q, k, v, dropout_p, is_causal, False,
                                                   scale=scale)[0]
    return out[..., :d] if pad else out


@contextmanager
def _both(first, second):
    with ExitStack() as stack:
        stack.enter_context(first)
        stack.enter_context(second)
        yield


class CudaAutocast(TorchFunctionMode):
    """CUDA's ``torch.autocast(dtype=float16)`` and attention kernel choice, on any device.

    ``dtype=None`` emulates no autocast, ``sdpa="cpu"`` the CPU's attention kernel: what a real
    float32 CPU run does, for tensors on the meta device.

    Keep it active through backward: checkpointed layers recompute under it, as under autocast.
    """

    def __init__(self, dtype: torch.dtype | None = torch.float16, sdpa: str = "sm75"):
        super().__init__()
        if sdpa not in SDPA_POLICIES:
            raise ValueError(f"sdpa={sdpa!r}; allowed: {SDPA_POLICIES}")
        self.dtype, self.sdpa = dtype, sdpa
        self._depth = 0

    def __enter__(self):
        self._depth += 1  # re-entered by the recomputations below
        if self._depth > 1:
            return super().__enter__()
        # Checkpointed layers recompute in backward, where this mode is not on the stack: run
        # their recomputation under it, as torch.utils.checkpoint restores autocast's state.
        self._checkpoint = torch.utils.checkpoint.checkpoint
        original, mode = self._checkpoint, self

        def checkpoint(function, *args, context_fn=None, **kwargs):
            def contexts():
                forward, recompute = context_fn() if context_fn else (nullcontext(),
                                                                      nullcontext())
                return forward, _both(recompute, mode)
            return original(function, *args, context_fn=contexts, **kwargs)

        torch.utils.checkpoint.checkpoint = checkpoint
        return super().__enter__()

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0:
            torch.utils.checkpoint.checkpoint = self._checkpoint
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == "scaled_dot_product_attention":
            if self.dtype is not None:
                args, kwargs = _cast((args, kwargs), self.dtype)
            return emulated_sdpa(*args, **kwargs, policy=self.sdpa)
        if self.dtype is None:
            return func(*args, **kwargs)
        if name in _LOW_PRECISION:
            args, kwargs = _cast((args, kwargs), self.dtype)
        elif name in _FLOAT32:
            args, kwargs = _cast((args, kwargs), torch.float32)
        elif name in _FLOAT32_DTYPE_ARG and kwargs.get("dtype") is None and _has_low(args):
            kwargs = {**kwargs, "dtype": torch.float32}
        return func(*args, **kwargs)


class LiveBytes(TorchDispatchMode):
    """Live bytes of tensor storages (each once) on ``device``, the peak overall and per phase.

    ``track`` registers tensors that exist before the mode starts (weights, inputs); every op's
    outputs are registered as they are made. ``phase(name)`` names what runs from now on.
    """

    def __init__(self, device: str = "meta"):
        super().__init__()
        self.device = torch.device(device).type
        self.live = 0
        self.peak = 0
        self.peak_phase = "start"
        self.current = "start"
        self.peaks: dict[str, int] = {}
        self._sizes: dict[int, int] = {}

    def track(self, tensors) -> None:
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self._add(t)

    def phase(self, name: str) -> None:
        self.current = name
        self.peaks[name] = max(self.peaks.get(name, 0), self.live)

    def _add(self, t: torch.Tensor) -> None:
        try:
            storage = t.untyped_storage()
        except (NotImplementedError, RuntimeError):  # sparse or storage-less tensors
            return
        key = id(storage)
        if key in self._sizes or storage.device.type != self.device:
            return
        size = storage.nbytes()
        self._sizes[key] = size
        self.live += size
        weakref.finalize(storage, self._free, key)
        if self.live > self.peaks.get(self.current, 0):
            self.peaks[self.current] = self.live
        if self.live > self.peak:
            self.peak, self.peak_phase = self.live, self.current

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._add(t)
        return out

    def report(self) -> dict:
        """Peak GiB overall and per phase (phases in the order they first ran)."""
        return {"peak_gib": round(self.peak / GIB, 3), "peak_phase": self.peak_phase,
                "phases_gib": {k: round(v / GIB, 3) for k, v in self.peaks.items()}}


def _in_backward() -> bool:
    return torch._C._current_autograd_node() is not None


def _wrap(obj, name: str, before, after=None) -> None:
    """Replace ``obj.name`` by a call that runs ``before(args)`` / ``after(args, out)`` around it,
    except when called during backward (a checkpoint recomputing its forward)."""
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        if _in_backward():
            return original(*args, **kwargs)
        state = before(args)
        out = original(*args, **kwargs)
        if after is not None:
            after(args, out, state)
        return out

    setattr(obj, name, wrapper)


def _hook_phase(tensor, tracker: LiveBytes, name: str) -> None:
    """Switch ``tracker`` to phase ``name`` once backward has produced ``tensor``'s gradient."""
    if isinstance(tensor, torch.Tensor) and tensor.requires_grad:
        tensor.register_hook(lambda grad: tracker.phase(name))


def instrument(tracker: LiveBytes, unet, vae, reward, text_encoders=()) -> None:
    """Name the phases of a step by the module that runs (forward) and by the gradients that
    arrive at the module boundaries (backward): text encoders, no-grad chain, grad step forward,
    VAE decode forward, reward forward, then (after ``tracker.phase("reward backward")`` before
    ``loss.backward()``) VAE decode backward and grad step backward."""
    _wrap(unet, "forward", lambda a: tracker.phase(
        "grad step forward" if torch.is_grad_enabled() else "no-grad chain"))

    def decoded(args, out, state):
        _hook_phase(args[0], tracker, "grad step backward")
        _hook_phase(getattr(out, "sample", out), tracker, "VAE decode backward")

    _wrap(vae, "decode", lambda a: tracker.phase("VAE decode forward"), decoded)
    _wrap(reward, "forward", lambda a: tracker.phase("reward forward"))
    def text_phase(args):
        previous = tracker.current
        tracker.phase("text encoders")
        return previous

    for module in text_encoders:  # then back to the phase that asked for the features
        _wrap(module, "forward", text_phase, lambda a, out, previous: tracker.phase(previous))
