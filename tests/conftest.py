"""Shared fixtures: tiny randomly initialised ModelScopeT2V-shaped components built in code."""

import os

import pytest
import torch

# The book's chapters run in tiny mode under test, whatever the machine (a GPU with cached
# ModelScopeT2V weights would otherwise switch them to full mode): their committed outputs are
# tiny-mode outputs. Set at import, before any nbval kernel starts, so the kernels inherit it.
os.environ.setdefault("IVLITE_BOOK_MODE", "tiny")
# The chapters' outputs were executed with one thread; float sums in another order could change
# the last printed digits after a training run, so the nbval kernels use one thread too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The tiny models are far too small for two threads to help; with another process busy on the
# second core, OpenMP spin-waiting made them 10-50x slower (measured). One thread is predictable.
torch.set_num_threads(1)


@pytest.fixture
def tiny_model():
    from ivlite.models import tiny_random_model

    return tiny_random_model(seed=0)


@pytest.fixture
def tiny_reward():
    from ivlite.rewards import ClipReward, tiny_random_clip
    from ivlite.rewards.clip import clip_tokenizer_fn

    return ClipReward(tiny_random_clip(seed=0), clip_tokenizer_fn())


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Generated clips and the tokenizer files go to a per-session folder, not the user's cache."""
    monkeypatch.setenv("IVLITE_CACHE", str(tmp_path_factory.getbasetemp() / "ivlite-cache"))
