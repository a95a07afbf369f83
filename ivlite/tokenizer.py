"""The real CLIP BPE tokenizer as a transformers ``CLIPTokenizer``, built offline.

ModelScopeT2V's text encoder uses OpenCLIP's BPE vocabulary. open_clip ships that vocabulary as
``bpe_simple_vocab_16e6.txt.gz``; rebuilding ``vocab.json`` and ``merges.txt`` from it the way CLIP
does gives a 49,408-token tokenizer whose ids equal open_clip's, with no download. Tiny models use
it so that their prompts are tokenised exactly like the real model's.
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

from transformers import CLIPTokenizer

from .common import atomic_write_dir, cache_dir

# CLIP keeps the first 49152 - 256 - 2 merges; 256 byte tokens, their "</w>" twins, the merges and
# the two special tokens make 49408 ids.
_NUM_MERGES = 49152 - 256 - 2


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable-unicode table (GPT-2's)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes)))


def _write_vocab_files(folder: Path) -> None:
    import open_clip.tokenizer

    lines = gzip.open(open_clip.tokenizer.default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:_NUM_MERGES + 1]]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges))


@functools.lru_cache(maxsize=1)
def clip_tokenizer() -> CLIPTokenizer:
    """CLIP's BPE tokenizer (49,408 tokens, 77 positions, lower case), built from open_clip's file."""
    folder = cache_dir("clip-tokenizer")
    if not (folder / "merges.txt").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        # Built in a private folder and renamed, so concurrent processes never read half a file;
        # when another process got there first, its (complete) folder stays.
        atomic_write_dir(folder, _write_vocab_files, replace=False)
    # Padding with "!" (id 0) as ModelScopeT2V's own tokenizer does (and open_clip); without
    # model_max_length=77 the diffusers pipelines overflow when they pad.
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                         pad_token="!", model_max_length=77)
