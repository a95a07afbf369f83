"""Prompt sets modelled on the paper's fine-tuning and evaluation splits (arXiv 2312.12490, Sec. 4).

InstructVideo fine-tunes on WebVid clips of 45 animal species (about 20 clips each) and evaluates
on three splits: in-domain animals, *new* animals never seen in fine-tuning (snail, hippopotamus,
cheetah, crocodile, lobster, octopus) and non-animal, COCO-style captions. The species below are
the 45 of the official code's in-domain list; the captions are ivlite's own, written in the
short, plain style of WebVid and COCO captions (the official lists are not redistributed here).

``prompt_set("animals")`` (one caption per in-domain species), ``prompt_set("new-animals")`` and
``prompt_set("non-animals")`` return lists of strings; :data:`PROMPT_SETS` names them all.
"""

from __future__ import annotations

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


def prompt_set(name: str) -> list[str]:
    """The prompts of a named set (see :data:`PROMPT_SETS`); ValueError naming the choices."""
    if name not in PROMPT_SETS:
        raise ValueError(f"prompts={name!r}: unknown prompt set; available: {sorted(PROMPT_SETS)}")
    return list(PROMPT_SETS[name])


def paper_splits() -> dict[str, list[str]]:
    """The three evaluation splits of the paper's Table 1, by name (for split evaluations)."""
    return {name: list(prompts) for name, prompts in PROMPT_SETS.items()}


def resolve_prompts(value: str | list[str]) -> list[str]:
    """A config's ``prompts`` value: a set name (``"animals"``) or a list of prompts, as a list.

    A list may mix set names and literal prompts: ``["new-animals", "a red car"]``.
    """
    if isinstance(value, str):
        return prompt_set(value)
    out: list[str] = []
    for item in value:
        out.extend(prompt_set(item) if item in PROMPT_SETS else [item])
    return out


__all__ = ["ANIMALS", "ANIMAL_CAPTIONS", "NEW_ANIMALS", "NEW_ANIMAL_CAPTIONS",
           "NON_ANIMAL_CAPTIONS", "PROMPT_SETS", "paper_splits", "prompt_set", "resolve_prompts"]
