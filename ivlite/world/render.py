"""Procedural renderer of the tiny world: one coloured shape moving over a dark background.

Clips are float32 arrays of shape (frames, 3, size, size) in [-1, 1], the range the diffusion model
sees. Shapes are drawn with analytic anti-aliasing (coverage = clip(0.5 - signed distance, 0, 1)),
so a circle, a square and a triangle of radius ~6 px stay distinguishable at 32x32, and the object
moves in sub-pixel steps without popping.

Like web video, clips vary in quality (:class:`Quality`): most are decent, some are blurred,
washed out, low in contrast, shaky (per-frame camera offsets), flickering or noisy. Reward
fine-tuning is meant to move the model towards the good end of that range.

Everything is pure numpy and deterministic in ``seed``: about 0.3 ms for a clean 16x32x32 clip,
~500 clips/s for :func:`make_dataset` with sampled qualities on 2 busy CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .captions import COLOURS, MOTION_DIRECTIONS, Scene, base_training_scenes

BACKGROUND_LEVEL = 0.12    # grey level of the plain background, in [0, 1]
STRIPE_AMPLITUDE = 0.035   # +- grey variation of the striped background: faint, and achromatic so
STRIPE_PERIOD = 6.0        # that it never changes the object's hue after blur or wash-out
RADIUS_RANGE = (0.17, 0.20)        # object radius as a fraction of the frame size
DISPLACEMENT_RANGE = (0.30, 0.45)  # total travel over the clip, fraction of the frame size
TRIANGLE_SCALE = 1.3       # triangle circumradius / radius: a triangle of circumradius r looks tiny
SQUARE_SCALE = 0.9         # square half-side / radius: about the area of the circle


@dataclass(frozen=True)
class Quality:
    """How a clip is degraded. The default is a crisp, clean clip.

    blur: gaussian sigma in pixels (per frame, whole frame).
    saturation: 1 = full colour, 0 = grey (mix towards per-pixel luminance).
    contrast: 1 = full; values scale around mid-grey 0.5, lifting the dark background.
    jitter: camera shake, per-frame offsets uniform in [-jitter, jitter] pixels on each axis.
    flicker: per-frame brightness gain uniform in 1 +- flicker (plus 30% of it per channel).
    noise: std of additive gaussian pixel noise, in [0, 1] units.
    """

    blur: float = 0.0
    saturation: float = 1.0
    contrast: float = 1.0
    jitter: float = 0.0
    flicker: float = 0.0
    noise: float = 0.0

    @property
    def degradations(self) -> tuple[str, ...]:
        """Names of the fields that differ noticeably from a crisp clip."""
        out = []
        if self.blur >= 0.6:
            out.append("blur")
        if self.saturation <= 0.75:
            out.append("washed_out")
        if self.contrast <= 0.75:
            out.append("low_contrast")
        if self.jitter >= 0.5:
            out.append("jitter")
        if self.flicker >= 0.04:
            out.append("flicker")
        if self.noise >= 0.02:
            out.append("noise")
        return tuple(out)

    @property
    def is_decent(self) -> bool:
        return not self.degradations

    def as_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


CLEAN = Quality()

# One sampler per kind of degradation, drawn uniformly. The ranges keep the object recognisable:
# the oracle reads colour, shape and motion right on 100% of such clips (see tests/test_world.py).
_DEGRADATIONS = {
    "blur": lambda rng: {"blur": rng.uniform(0.8, 1.6)},
    "washed_out": lambda rng: {"saturation": rng.uniform(0.3, 0.6),
                               "contrast": rng.uniform(0.7, 0.9)},
    "low_contrast": lambda rng: {"contrast": rng.uniform(0.35, 0.6)},
    "jitter": lambda rng: {"jitter": rng.uniform(0.7, 1.5)},
    "flicker": lambda rng: {"flicker": rng.uniform(0.06, 0.15)},
    "noise": lambda rng: {"noise": rng.uniform(0.02, 0.05)},
}


def sample_quality(rng: np.random.Generator, decent_fraction: float = 0.5) -> Quality:
    """Draw a web-video-like quality: ``decent_fraction`` nearly crisp, the rest with one
    degradation (70%) or two (30%) of blur, wash-out, low contrast, jitter, flicker, noise."""
    if rng.random() < decent_fraction:
        return Quality(blur=rng.uniform(0.0, 0.3), saturation=rng.uniform(0.9, 1.0),
                       contrast=rng.uniform(0.9, 1.0), noise=rng.uniform(0.0, 0.01))
    names = list(_DEGRADATIONS)
    count = 1 if rng.random() < 0.7 else 2
    chosen = rng.choice(len(names), size=count, replace=False)
    params: dict[str, float] = {}
    for i in sorted(chosen):
        for key, value in _DEGRADATIONS[names[i]](rng).items():
            # washed_out + low_contrast both set contrast: keep the stronger degradation.
            params[key] = min(params.get(key, value), value) if key == "contrast" else value
    return Quality(**{k: float(v) for k, v in params.items()})


def shape_half_extent(shape: str, radius: float) -> tuple[float, float]:
    """Half width and half height (px) of a shape's bounding box for a given radius."""
    if shape == "circle":
        return radius, radius
    if shape == "square":
        return SQUARE_SCALE * radius, SQUARE_SCALE * radius
    big = TRIANGLE_SCALE * radius  # circumradius of an equilateral triangle
    return np.sqrt(3.0) / 2.0 * big, 0.75 * big


def shape_sdf(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    """Exact signed distance (px, negative inside) of points at offsets (dx, dy) from the shape's
    bounding-box centre. dx, dy broadcast together (e.g. (F, 1, W) and (F, H, 1)).

    Exactness matters for anti-aliasing: an underestimate outside a vertex (e.g. the max over a
    triangle's edge half-planes) would smear the apex a pixel beyond the bounding box.
    """
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy) - radius
    if shape == "square":
        qx, qy = np.abs(dx) - SQUARE_SCALE * radius, np.abs(dy) - SQUARE_SCALE * radius
        outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0.0)
    if shape == "triangle":
        return _triangle_sdf(dx, dy, TRIANGLE_SCALE * radius)
    raise ValueError(f"unknown shape {shape!r}")


def _triangle_sdf(dx: np.ndarray, dy: np.ndarray, circumradius: float) -> np.ndarray:
    """Exact distance to an equilateral triangle pointing up, centred on its bounding box.

    After I. Quilez's sdEquilateralTriangle: fold the plane onto one edge by symmetry, then
    measure the distance to that segment. The bbox spans [-0.75, 0.75] x circumradius vertically
    and the centroid sits 0.25 x circumradius below the bbox centre (image y grows down).
    """
    k = np.sqrt(3.0)
    half_side = k / 2.0 * circumradius
    px = np.abs(dx) - half_side
    py = -(dy - 0.25 * circumradius) + half_side / k  # y up, base edge on py = 0
    fold = px + k * py > 0.0
    qx = np.where(fold, (px - k * py) / 2.0, px)
    qy = np.where(fold, (-k * px - py) / 2.0, py)
    qx = qx - np.clip(qx, -2.0 * half_side, 0.0)
    return -np.sqrt(qx * qx + qy * qy) * np.sign(qy)


def gaussian_blur_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) matrix M so that M @ x blurs x along its first axis; rows renormalised at the
    borders (no darkening at the frame edge)."""
    idx = np.arange(size, dtype=np.float64)
    weights = np.exp(-0.5 * ((idx[:, None] - idx[None, :]) / sigma) ** 2)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def gaussian_blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Separable blur of the last two axes of (..., H, W) images; sigma in pixels."""
    if sigma <= 0:
        return frames
    mh = gaussian_blur_matrix(frames.shape[-2], sigma)
    mw = gaussian_blur_matrix(frames.shape[-1], sigma)
    return mh @ frames @ mw.T


def _trajectory(scene: Scene, radius: float, jitter: float, frames: int, size: int,
                rng: np.random.Generator) -> np.ndarray:
    """Object centres (frames, 2) as (x, y) in pixel units, kept fully in frame (1 px margin plus
    the jitter amplitude). The travel is shortened if the frame is too small for it."""
    direction = np.array(MOTION_DIRECTIONS[scene.motion], dtype=np.float64)
    axis = 0 if direction[0] != 0 else 1
    half = np.array(shape_half_extent(scene.shape, radius))
    margin = 1.0 + jitter
    lo, hi = half + margin, size - half - margin  # allowed centre range per axis
    travel = max(min(rng.uniform(*DISPLACEMENT_RANGE) * size, hi[axis] - lo[axis]), 0.0)
    start = rng.uniform(lo, hi)
    # Place the start along the motion axis so that start + travel * direction stays in range.
    start[axis] = rng.uniform(lo[axis], hi[axis] - travel)
    if direction[axis] < 0:
        start[axis] += travel
    steps = np.linspace(0.0, 1.0, frames)[:, None]
    return start[None, :] + steps * travel * direction[None, :]


def render_clip(scene: Scene, quality: Quality = CLEAN, *, frames: int = 16, size: int = 32,
                seed: int = 0) -> np.ndarray:
    """Render one clip: float32 (frames, 3, size, size) in [-1, 1].

    ``seed`` fixes the object's radius, brightness, start point, travel, background phase and every
    random part of the degradation; the scene fixes colour, shape, direction and background.
    """
    rng = np.random.default_rng(seed)
    radius = rng.uniform(*RADIUS_RANGE) * size
    colour = np.asarray(COLOURS[scene.colour], dtype=np.float32) * rng.uniform(0.9, 1.0)
    background = BACKGROUND_LEVEL + rng.uniform(-0.03, 0.03)
    stripe_phase = rng.uniform(0.0, 2 * np.pi)
    shake = rng.uniform(-quality.jitter, quality.jitter, size=(frames, 2))
    centres = _trajectory(scene, radius, quality.jitter, frames, size, rng) + shake

    # Pixel centres at i + 0.5, so a centre at size / 2 is the middle of the frame.
    coords = np.arange(size, dtype=np.float32) + 0.5
    dx = coords[None, None, :] - centres[:, 0, None, None].astype(np.float32)  # (F, 1, W)
    dy = coords[None, :, None] - centres[:, 1, None, None].astype(np.float32)  # (F, H, 1)
    coverage = np.clip(0.5 - shape_sdf(scene.shape, dx, dy, radius), 0.0, 1.0)  # (F, H, W)

    bg = np.full((frames, size, size), background, dtype=np.float32)
    if scene.background == "striped":
        # Camera shake moves the background with the object: shift stripe coordinates too.
        gx = coords[None, None, :] - shake[:, 0, None, None]
        gy = coords[None, :, None] - shake[:, 1, None, None]
        bg = bg + STRIPE_AMPLITUDE * np.sin(2 * np.pi * (gx + gy) / STRIPE_PERIOD + stripe_phase)
    cov = coverage[:, None]  # (F, 1, H, W)
    clip = bg[:, None] * (1.0 - cov) + colour[None, :, None, None] * cov  # (F, 3, H, W)
    clip = degrade(clip.astype(np.float32), quality, rng)
    return (2.0 * clip - 1.0).astype(np.float32)


def degrade(clip: np.ndarray, quality: Quality, rng: np.random.Generator) -> np.ndarray:
    """Apply a Quality to a clean clip (F, 3, H, W) in [0, 1]; returns [0, 1]."""
    frames = clip.shape[0]
    clip = gaussian_blur(clip, quality.blur)
    if quality.saturation != 1.0:
        luma = (0.299 * clip[:, 0] + 0.587 * clip[:, 1] + 0.114 * clip[:, 2])[:, None]
        clip = luma + quality.saturation * (clip - luma)
    if quality.contrast != 1.0:
        clip = 0.5 + quality.contrast * (clip - 0.5)
    if quality.flicker > 0:
        gain = 1.0 + quality.flicker * rng.uniform(-1.0, 1.0, size=(frames, 1))
        gain = gain + 0.3 * quality.flicker * rng.uniform(-1.0, 1.0, size=(frames, 3))
        clip = clip * gain[:, :, None, None].astype(np.float32)
    if quality.noise > 0:
        clip = clip + rng.normal(0.0, quality.noise, size=clip.shape).astype(np.float32)
    return np.clip(clip, 0.0, 1.0)


def make_dataset(n: int, seed: int, scenes: list[Scene] | None = None, *, frames: int = 16,
                 size: int = 32, clean: bool = False,
                 ) -> tuple[np.ndarray, list[str], list[Quality]]:
    """Render ``n`` clips of the given scenes (default: the base model's training scenes).

    Scenes are drawn in shuffled rounds, so every scene appears ``n // len(scenes)`` or one more
    times. ``clean=True`` renders every clip crisp instead of sampling a web-like quality.
    Returns (clips float32 (n, frames, 3, size, size) in [-1, 1], captions, qualities).
    """
    scenes = base_training_scenes() if scenes is None else list(scenes)
    rng = np.random.default_rng(seed)
    rounds = -(-n // len(scenes))
    order = np.concatenate([rng.permutation(len(scenes)) for _ in range(rounds)])[:n]
    clips = np.empty((n, frames, 3, size, size), dtype=np.float32)
    captions: list[str] = []
    qualities: list[Quality] = []
    for i, scene_index in enumerate(order):
        scene = scenes[scene_index]
        quality = CLEAN if clean else sample_quality(rng)
        clips[i] = render_clip(scene, quality, frames=frames, size=size,
                               seed=int(rng.integers(2**31 - 1)))
        captions.append(scene.caption)
        qualities.append(quality)
    return clips, captions, qualities
