"""Prompt sets modelled on the paper's fine-tuning and evaluation splits (arXiv 2312.12490, Sec. 4).

InstructVideo fine-tunes on WebVid clips of 45 animal species (about 20 clips each) and evaluates
on three splits: in-domain animals, *new* animals never seen in fine-tuning (snail, hippopotamus,
cheetah, crocodile, lobster, octopus) and non-animal, COCO-style captions. The species below are
the 45 of the official code's in-domain list; the captions are ivlite's own, written in the
short, plain style of WebVid and COCO captions (the official lists are not redistributed here).

``prompt_set("animals")`` (one caption per in-domain species), ``prompt_set("new-animals")`` and
``prompt_set("non-animals")`` return lists of strings; :data:`PROMPT_SETS` names them all.

The paper's own lists (263 in-domain, 22 new-animal and 46 non-animal evaluation captions, and
the training list of 881 WebVid rows, 878 distinct, with 450 distinct captions) live in the
authors' repository and are read from a local copy:
``prompt_set("paper-in-domain", root=VGEN_CHECKOUT)`` (names in :data:`OFFICIAL_LISTS`).
:func:`training_overlap` counts the evaluation captions that are also training captions: in the
official lists 127 of the 263 in-domain ones, none of the others; with the ``modelscope`` preset
(generated clips for ``animals``) all 45 in-domain prompts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

# The 45 in-domain species, each with one caption of a typical WebVid-style clip.
ANIMAL_CAPTIONS: dict[str, str] = {
    "cat": "a cat walking slowly across a sunny living room",
    "dog": "a happy dog running on a green lawn",
    "horse": "a black horse galloping across a meadow",
    "monkey": "a monkey eating fruit on a tree branch",
    "rabbit": "a white rabbit nibbling grass in a garden",
    "zebra": "a zebra grazing on the savanna",
    "spider": "a spider weaving its web in the morning light",
    "bird": "a small blue bird perched on a branch, looking around",
    "sheep": "a flock of sheep grazing on a hillside",
    "deer": "a red deer standing in a forest clearing",
    "cow": "a cow grazing in a pasture on a farm",
    "goat": "a goat climbing on rocks in the mountains",
    "lion": "a lion resting in the tall grass",
    "tiger": "a bengal tiger walking through the jungle",
    "bear": "a brown bear catching fish in a river",
    "raccoon": "a raccoon searching for food at night",
    "fox": "a red fox trotting through the snow",
    "wolf": "a grey wolf howling in the forest",
    "lizard": "a lizard basking on a warm rock",
    "beetle": "a beetle crawling on a green leaf, macro shot",
    "ant": "ants carrying food along a branch",
    "butterfly": "a colourful butterfly flapping its wings on a flower",
    "fish": "a colourful fish swimming in an aquarium",
    "shark": "a shark swimming over a coral reef",
    "whale": "a humpback whale surfacing in the ocean",
    "dolphin": "a dolphin jumping out of the sea",
    "squirrel": "a red squirrel eating a nut on a tree trunk",
    "mouse": "a small mouse sniffing around in the hay",
    "rat": "a rat running along a wall",
    "snake": "a green snake slithering through the grass",
    "turtle": "a sea turtle swimming underwater",
    "frog": "a green frog sitting on a lily pad",
    "chicken": "chickens pecking at grain on a farm",
    "duck": "a duck swimming on a calm lake",
    "goose": "a goose flying over a river",
    "bee": "a honey bee collecting pollen from a flower",
    "pig": "a pig eating in a muddy pen",
    "turkey": "a wild turkey walking in a field",
    "fly": "a fly cleaning its legs on a window, close up",
    "llama": "a hairy llama chewing in the mountains",
    "camel": "a camel walking through the desert",
    "bat": "a fruit bat hanging upside down from a branch",
    "gorilla": "a silverback gorilla sitting in the forest",
    "hedgehog": "a hedgehog walking through fallen leaves",
    "kangaroo": "a kangaroo hopping across a field",
}

ANIMALS: tuple[str, ...] = tuple(ANIMAL_CAPTIONS)
"""The 45 in-domain species of the paper's fine-tuning data."""

NEW_ANIMALS: tuple[str, ...] = ("snail", "hippopotamus", "cheetah", "crocodile", "lobster",
                                "octopus")
"""The paper's held-out species: never in the fine-tuning prompts."""

# 22 captions over the six new species, as the official new-animal split has 22 prompts.
NEW_ANIMAL_CAPTIONS: tuple[str, ...] = (
    "a snail crawling on a wet leaf",
    "a snail climbing up a plant stem after the rain",
    "a garden snail moving slowly across a stone, close up",
    "a snail with a striped shell on a mossy log",
    "a hippopotamus wading in a river",
    "a hippopotamus opening its huge mouth",
    "a baby hippopotamus walking next to its mother",
    "a hippopotamus resting in muddy water",
    "a cheetah running at full speed across the savanna",
    "a cheetah sitting on a termite mound, looking around",
    "a cheetah cub playing in the grass",
    "a cheetah stalking its prey",
    "a crocodile lying on a river bank with its mouth open",
    "a crocodile swimming slowly through murky water",
    "a crocodile basking in the sun",
    "a crocodile snapping its jaws",
    "a lobster walking on the sea floor",
    "a red lobster in an aquarium",
    "a lobster hiding between rocks underwater",
    "an octopus swimming in the ocean",
    "an octopus changing colour on a coral reef",
    "an octopus crawling over rocks on the sea bed",
)

# COCO-style captions of scenes without animals (the paper's third split).
NON_ANIMAL_CAPTIONS: tuple[str, ...] = (
    "a red double decker bus driving down a city street",
    "a man riding a surfboard on a large wave",
    "a plate of pasta with tomato sauce on a wooden table",
    "a train pulling into a station at sunset",
    "a woman flying a kite on a windy beach",
    "a kitchen with white cabinets and a stainless steel fridge",
    "a skateboarder doing a trick on a ramp",
    "a sailboat on a calm lake in front of mountains",
    "a bowl of fresh fruit on a kitchen counter",
    "a tennis player swinging a racket on a clay court",
    "an airplane taking off from a runway",
    "a busy street at night with cars and neon signs",
    "a child blowing out candles on a birthday cake",
    "a man cutting a pizza in a restaurant",
    "a clock tower in the middle of a town square",
    "a snowboarder sliding down a snowy slope",
    "a motorcycle parked on the side of a country road",
    "a living room with a couch, a lamp and a television",
    "fireworks exploding over a city skyline",
    "a waterfall flowing into a clear pool in the forest",
)

PROMPT_SETS: dict[str, tuple[str, ...]] = {
    "animals": tuple(ANIMAL_CAPTIONS.values()),
    "new-animals": NEW_ANIMAL_CAPTIONS,
    "non-animals": NON_ANIMAL_CAPTIONS,
}
"""Prompt sets by name: fine-tuning / in-domain evaluation, new animals, non-animals."""


VGEN_REPOSITORY = "https://github.com/ali-vilab/VGen"
OFFICIAL_LISTS: dict[str, str] = {
    "paper-in-domain": "data/instructvideo/eval/simple_animals_2_webvid_videos_selected_eval.txt",
    "paper-new-animals":
        "data/instructvideo/eval/eval_simple_animals_2_webvid_videos_selected_eval.txt",
    "paper-non-animals": "data/instructvideo/eval/eval_non-animals_hps_v2_all_eval.txt",
    "paper-train":
        "data/instructvideo/webvid_simple_animals_2_selected_20_train_file_list/00000.txt",
}
"""The authors' caption lists, by name: path inside a checkout of :data:`VGEN_REPOSITORY`. The
evaluation lists are those of its ``configs/instructvideo/eval/*.yaml`` (``webvid_eval_text``);
the training list is ``data_list`` of its InstructVideo training config."""
OFFICIAL_TERMS = ("licence: none stated in VGen; the animal captions are WebVid's stock-footage "
                  "titles, so ivlite does not ship them")


def read_caption_list(path: str | Path) -> list[str]:
    """Captions of a list in the official format: one ``video|||caption`` (training) or
    ``video|||caption|||frames`` (evaluation) per line; blank lines skipped, captions stripped.
    ValueError naming the file and line for a line without a caption."""
    captions = []
    with open(path, encoding="utf-8-sig") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("|||")
            if len(fields) not in (2, 3) or not fields[1].strip():
                raise ValueError(f"{path}, line {number}: expected 'video|||caption' or "
                                 f"'video|||caption|||frames', got {line.strip()[:60]!r}")
            captions.append(fields[1].strip())
    if not captions:
        raise ValueError(f"{path} holds no captions")
    return captions


def official_prompt_set(name: str, root: str | Path | None) -> list[str]:
    """Captions of the official list ``name`` (:data:`OFFICIAL_LISTS`) from ``root``: a checkout
    of VGen (the list at its path there) or a folder holding the file itself. FileNotFoundError
    in one line saying where to get the file when it is not there."""
    rel = OFFICIAL_LISTS[name]
    candidates = [] if root is None else [Path(root) / rel, Path(root) / Path(rel).name]
    for path in candidates:
        if path.is_file():
            return read_caption_list(path)
    where = "no root given" if root is None else f"{candidates[0]} not found"
    raise FileNotFoundError(f"prompts={name!r}: {where}; get {rel} from {VGEN_REPOSITORY} and "
                            f"pass the checkout's folder (root=DIR, --splits vgen:DIR) "
                            f"({OFFICIAL_TERMS})")


def prompt_set(name: str, root: str | Path | None = None) -> list[str]:
    """The prompts of a named set: one of :data:`PROMPT_SETS`, or of :data:`OFFICIAL_LISTS` read
    from ``root`` (:func:`official_prompt_set`); ValueError naming the choices."""
    if name in OFFICIAL_LISTS:
        return official_prompt_set(name, root)
    if name not in PROMPT_SETS:
        raise ValueError(f"prompts={name!r}: unknown prompt set; available: {sorted(PROMPT_SETS)}"
                         f", or with a VGen checkout {sorted(OFFICIAL_LISTS)}")
    return list(PROMPT_SETS[name])


def official_splits(root: str | Path) -> dict[str, list[str]]:
    """The paper's three evaluation splits from a VGen checkout: in-domain (263 captions), new
    animals (22), non-animals (46)."""
    return {name.removeprefix("paper-"): official_prompt_set(name, root)
            for name in ("paper-in-domain", "paper-new-animals", "paper-non-animals")}


def normalise_caption(caption: str) -> str:
    """Lower case, runs of whitespace as one space, no leading or trailing space."""
    return " ".join(caption.split()).lower()


def training_overlap(eval_captions: Sequence[str], train_captions: Iterable[str]) -> dict:
    """How many evaluation captions are also training captions (exact match after
    :func:`normalise_caption`): ``{"count": n, "of": len(eval_captions), "shared": [...]}``, a
    repeated evaluation caption counted each time."""
    train = {normalise_caption(c) for c in train_captions}
    shared = [c for c in eval_captions if normalise_caption(c) in train]
    return {"count": len(shared), "of": len(eval_captions), "shared": shared}


def paper_splits() -> dict[str, list[str]]:
    """The three evaluation splits of the paper's Table 1, by name (for split evaluations)."""
    return {name: list(prompts) for name, prompts in PROMPT_SETS.items()}


def resolve_prompts(value: str | list[str]) -> list[str]:
    """A config's ``prompts`` value: a set name (``"animals"``) or a list of prompts, as a list.

    A list may mix set names and literal prompts: ``["new-animals", "a red car"]``.
    """
    items = [value] if isinstance(value, str) else value
    official = [item for item in items if item in OFFICIAL_LISTS]
    if official:  # never a literal prompt; a config has no root to read them from
        raise ValueError(f"prompts={official[0]!r} is read from a local VGen checkout: "
                         f"prompt_set({official[0]!r}, root=DIR) in Python, or ivlite evaluate "
                         f"--splits vgen:DIR")
    if isinstance(value, str):
        return prompt_set(value)
    out: list[str] = []
    for item in value:
        out.extend(prompt_set(item) if item in PROMPT_SETS else [item])
    return out


__all__ = ["ANIMALS", "ANIMAL_CAPTIONS", "NEW_ANIMALS", "NEW_ANIMAL_CAPTIONS",
           "NON_ANIMAL_CAPTIONS", "OFFICIAL_LISTS", "PROMPT_SETS", "VGEN_REPOSITORY",
           "normalise_caption", "official_prompt_set", "official_splits", "paper_splits",
           "prompt_set", "read_caption_list", "resolve_prompts", "training_overlap"]
