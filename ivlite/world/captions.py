"""Vocabulary, scenes and prompt splits of the tiny world.

A scene is one object of a colour and a shape, moving in one of four directions over one of two
backgrounds. Its caption is a fixed template, e.g. ``"a red circle moving left"`` or
``"a red circle moving left on a striped background"`` (the plain background adds no words).

The prompt splits mirror InstructVideo's evaluation (arXiv 2312.12490, Table 1). A *category* is a
(colour, shape) pair, playing the role of the paper's animal species:

- ``in_domain``: the 12 categories used for reward fine-tuning ("in-domain animals");
- ``held_out``: 4 categories the base model is trained on but reward fine-tuning never sees
  ("new animals");
- ``out_of_domain``: 2 categories the base model never sees at all ("non-animals"). Every word of
  them does occur in training, so they test *composition* of known words, not unknown words.

Motions and backgrounds vary freely inside every split. The choice below is balanced: every colour
keeps exactly 2 in-domain categories, every shape exactly 4, the held-out categories use 4
different colours and all 3 shapes, and the 2 out-of-domain categories use the other 2 colours.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

# RGB in [0, 1]: HSV with hues 0, 60, ..., 300 degrees, saturation 0.8, value 0.95. Equal 60-degree
# hue spacing makes "nearest hue" a robust colour detector, and the colours survive wash-out
# (which moves towards grey but keeps the hue).
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.95, 0.19, 0.19),
    "yellow": (0.95, 0.95, 0.19),
    "green": (0.19, 0.95, 0.19),
    "cyan": (0.19, 0.95, 0.95),
    "blue": (0.19, 0.19, 0.95),
    "magenta": (0.95, 0.19, 0.95),
}
COLOUR_HUES: dict[str, float] = {
    "red": 0.0, "yellow": 60.0, "green": 120.0, "cyan": 180.0, "blue": 240.0, "magenta": 300.0,
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
MOTIONS: tuple[str, ...] = ("moving left", "moving right", "moving up", "moving down")
# Unit direction (dx, dy) in image coordinates: x to the right, y *down* the frame.
MOTION_DIRECTIONS: dict[str, tuple[int, int]] = {
    "moving left": (-1, 0), "moving right": (1, 0), "moving up": (0, -1), "moving down": (0, 1),
}
BACKGROUNDS: tuple[str, ...] = ("plain", "striped")
_BACKGROUND_SUFFIX = {"plain": "", "striped": " on a striped background"}

Category = tuple[str, str]  # (colour, shape)

OUT_OF_DOMAIN_CATEGORIES: tuple[Category, ...] = (("magenta", "circle"), ("cyan", "square"))
HELD_OUT_CATEGORIES: tuple[Category, ...] = (
    ("red", "triangle"), ("green", "circle"), ("blue", "square"), ("yellow", "triangle"),
)
SPLITS: tuple[str, ...] = ("in_domain", "held_out", "out_of_domain")


@dataclass(frozen=True)
class Scene:
    """What a clip shows; the caption is a pure function of it."""

    colour: str
    shape: str
    motion: str
    background: str = "plain"

    def __post_init__(self) -> None:
        for value, allowed, kind in (
            (self.colour, COLOURS, "colour"), (self.shape, SHAPES, "shape"),
            (self.motion, MOTIONS, "motion"), (self.background, BACKGROUNDS, "background"),
        ):
            if value not in allowed:
                raise ValueError(f"unknown {kind} {value!r}; expected one of {list(allowed)}")

    @property
    def category(self) -> Category:
        return (self.colour, self.shape)

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape} {self.motion}{_BACKGROUND_SUFFIX[self.background]}"

    @classmethod
    def from_caption(cls, text: str) -> Scene:
        """Parse a caption made by :attr:`caption` (case, spacing and a final '.' are ignored).

        Raises ValueError naming the first word that does not fit the template
        ``a <colour> <shape> moving <left|right|up|down>[ on a striped background]``.
        """
        words = text.strip().rstrip(".").lower().split()
        slots: list[tuple[str, set[str]]] = [
            ("article", {"a"}), ("colour", set(COLOURS)), ("shape", set(SHAPES)),
            ("word", {"moving"}), ("direction", {"left", "right", "up", "down"}),
        ]
        if len(words) > len(slots):  # only the striped background adds words
            slots += [("background word", {w}) for w in ("on", "a", "striped", "background")]
        for i, (kind, allowed) in enumerate(slots):
            if i >= len(words):
                raise ValueError(f"caption {text!r} ends after {len(words)} words; expected "
                                 f"a {kind} ({sorted(allowed)})")
            if words[i] not in allowed:
                raise ValueError(f"unknown {kind} {words[i]!r} in caption {text!r}; "
                                 f"expected one of {sorted(allowed)}")
        if len(words) > len(slots):
            raise ValueError(f"unexpected word {words[len(slots)]!r} in caption {text!r}")
        background = "striped" if len(words) > 5 else "plain"
        return cls(words[1], words[2], f"moving {words[4]}", background)


def parse_motions(text: str) -> tuple[str, ...]:
    """``"left,right"`` -> ("moving left", "moving right"), in the given order; ValueError naming
    the first word that is not a direction."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    bad = [w for w in words if f"moving {w}" not in MOTIONS]
    if bad or not words:
        what = repr(f"moving {bad[0]}") if bad else "nothing"
        raise ValueError(f"{what} is not a motion; allowed: a comma-separated subset of left, "
                         f"right, up, down")
    return tuple(f"moving {w}" for w in words)


def as_scene(scene_or_caption: Scene | str) -> Scene:
    """Accept either a Scene or its caption."""
    if isinstance(scene_or_caption, Scene):
        return scene_or_caption
    return Scene.from_caption(scene_or_caption)


def all_categories() -> list[Category]:
    """All 18 (colour, shape) pairs, in vocabulary order."""
    return list(itertools.product(COLOURS, SHAPES))


def split_categories(name: str) -> list[Category]:
    """The (colour, shape) categories of one split, in vocabulary order."""
    if name == "out_of_domain":
        return [c for c in all_categories() if c in OUT_OF_DOMAIN_CATEGORIES]
    if name == "held_out":
        return [c for c in all_categories() if c in HELD_OUT_CATEGORIES]
    if name == "in_domain":
        excluded = set(OUT_OF_DOMAIN_CATEGORIES) | set(HELD_OUT_CATEGORIES)
        return [c for c in all_categories() if c not in excluded]
    raise ValueError(f"unknown split {name!r}; expected one of {list(SPLITS)}")


def category_split(colour: str, shape: str) -> str:
    """Name of the split a (colour, shape) category belongs to."""
    for name in SPLITS:
        if (colour, shape) in split_categories(name):
            return name
    raise ValueError(f"unknown category {(colour, shape)!r}")


def scenes_for(categories: list[Category]) -> list[Scene]:
    """Every motion x background for the given categories (len = 8 per category)."""
    return [Scene(colour, shape, motion, background)
            for (colour, shape) in categories for motion in MOTIONS for background in BACKGROUNDS]


def split_scenes(name: str) -> list[Scene]:
    """All scenes of a split: in_domain 96, held_out 32, out_of_domain 16."""
    return scenes_for(split_categories(name))


def base_training_scenes() -> list[Scene]:
    """Scenes the base text-to-video model is trained on: in_domain + held_out (128 scenes)."""
    return split_scenes("in_domain") + split_scenes("held_out")


def all_scenes() -> list[Scene]:
    """All 6 x 3 x 4 x 2 = 144 scenes, in vocabulary order."""
    return scenes_for(all_categories())


def world_splits(per_split: int = 4, seed: int = 0) -> dict[str, list[str]]:
    """``per_split`` fixed prompts of each split (in_domain, held_out, out_of_domain), drawn with a
    seeded permutation: the prompts ``ivlite demo`` reports on."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for split in SPLITS:
        scenes = split_scenes(split)
        out[split] = [scenes[i].caption for i in rng.permutation(len(scenes))[:per_split]]
    return out


def is_world_prompt(prompt: str) -> bool:
    """Whether ``prompt`` is a caption of the world's template (one the oracle can judge)."""
    try:
        Scene.from_caption(prompt)
    except ValueError:
        return False
    return True
