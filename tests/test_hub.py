"""The real hub layout, offline: ModelScopeT2V's and HPSv2's published files with tiny weights.

A fixture lays the published repositories out in a temporary hub cache (ivlite.fake_hub), and
the loaders, the weights-complete check, ``ivlite finetune --preset modelscope`` and the book's
mode switch run against it with the network off, under both names of the model's repository.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path

import pytest
import torch

from ivlite import fake_hub
from ivlite.hub import CONFIG_FILES, DOWNLOAD_COMMANDS, MODELSCOPE_NAMES, find_cached

ROOT = Path(__file__).resolve().parents[1]
DAMO, ALI = MODELSCOPE_NAMES


@pytest.fixture(scope="module")
def published_files() -> dict[str, bytes]:
    """Every file of the tiny ModelScopeT2V repository (built once: about 10 s)."""
    return fake_hub.modelscope_files()


@pytest.fixture(scope="module")
def hps_bytes() -> bytes:
    return fake_hub.hps_checkpoint_bytes()


@pytest.fixture
def hub(tmp_path):
    with fake_hub.offline_hub(tmp_path / "hub") as cache:
        yield cache


def _write(cache, name, files, omit=(), only=None):
    keep = {k: v for k, v in files.items() if k not in omit and (only is None or only(k))}
    return fake_hub.write_snapshot(cache, name, keep)


def test_layout_is_the_published_one(hub, published_files):
    snapshot = _write(hub, ALI, published_files)
    repo = hub / "models--ali-vilab--text-to-video-ms-1.7b"
    assert (repo / "refs" / "main").read_text() == snapshot.name
    for name in ("unet/diffusion_pytorch_model.fp16.safetensors",
                 "unet/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.fp16.bin", "text_encoder/model.fp16.safetensors",
                 "text_encoder/pytorch_model.bin", *CONFIG_FILES):
        path = snapshot / name
        assert path.is_symlink() and path.resolve().parent == repo / "blobs", name
    index = json.loads((snapshot / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet3DConditionModel"]
    special = json.loads((snapshot / "tokenizer/special_tokens_map.json").read_text())
    config = json.loads((snapshot / "tokenizer/tokenizer_config.json").read_text())
    assert special["pad_token"] == "!" and config["pad_token"] == "<|endoftext|>"
    from safetensors.torch import load_file

    half = load_file(snapshot / "unet/diffusion_pytorch_model.fp16.safetensors")
    full = load_file(snapshot / "unet/diffusion_pytorch_model.safetensors")
    assert half.keys() == full.keys() and {t.dtype for t in half.values()} == {torch.float16}
    key = next(iter(full))
    assert torch.equal(half[key], full[key].half())


@pytest.mark.parametrize("cached_as", [DAMO, ALI])
def test_loader_finds_either_name_and_pads_with_id_0(hub, published_files, cached_as):
    from ivlite.models import MODELSCOPE_REPO, load_video_model

    assert MODELSCOPE_REPO == DAMO  # the preset's name; ALI is where downloads land now
    assert find_cached(DAMO) is None and find_cached(ALI) is None
    _write(hub, cached_as, published_files)
    assert find_cached(DAMO) == find_cached(ALI) == (cached_as, "fp16")
    for asked in MODELSCOPE_NAMES:
        model = load_video_model(asked, dtype=torch.float16)
        assert model.unet.dtype == torch.float16 and model.text_encoder.dtype == torch.float16
        ids = model.tokenizer(["a cat"], padding="max_length", max_length=77).input_ids[0]
        assert model.tokenizer.pad_token_id == 0 and ids[:4] == [49406, 320, 2368, 49407]
        assert ids[4:] == [0] * 73
        assert model.scheduler.config.steps_offset == 1


def test_fp16_only_copy_loads_in_float32_without_network(hub, published_files):
    """`hf download --include "*fp16.safetensors"` gives no default weights: float32 training
    must still load the cached fp16 files, not look for float32 files on the network."""
    from ivlite.models import load_video_model

    _write(hub, ALI, published_files, only=lambda k: k.endswith(".json") or k.endswith(".txt")
           or k.endswith("fp16.safetensors"))
    assert find_cached(DAMO, prefer="fp32") == (ALI, "fp16")
    model = load_video_model(DAMO, dtype=torch.float32)
    assert model.unet.dtype == torch.float32
    with pytest.raises(OSError):  # the default files are neither cached nor downloadable
        load_video_model(DAMO, dtype=torch.float32, variant=None)


def test_float32_prefers_the_default_files(hub, published_files):
    from safetensors.torch import load_file

    from ivlite.models import load_video_model

    snapshot = _write(hub, DAMO, published_files)
    full = load_file(snapshot / "unet/diffusion_pytorch_model.safetensors")
    model = load_video_model(ALI, dtype=torch.float32)
    key = next(k for k, v in full.items() if v.dtype == torch.float32 and v.numel() > 100)
    assert torch.equal(model.unet.state_dict()[key], full[key])  # not rounded through fp16


def test_complete_means_with_special_tokens_map(hub, published_files):
    """Without special_tokens_map.json the tokenizer pads with 49407: the copy is incomplete."""
    from transformers import CLIPTokenizer

    import ivlite.book as book

    snapshot = _write(hub, ALI, published_files, omit=("tokenizer/special_tokens_map.json",))
    assert find_cached(DAMO) is None and book.modelscope_variant() is None
    tokenizer = CLIPTokenizer.from_pretrained(str(snapshot), subfolder="tokenizer")
    assert tokenizer.pad_token_id == 49407  # what loading the incomplete copy would do
    snapshot = _write(hub, ALI, published_files)
    assert book.modelscope_variant() == "fp16"
    (snapshot / "text_encoder/model.fp16.safetensors").unlink()
    assert book.modelscope_variant() == "fp16"  # pytorch_model.fp16.bin is still there
    (snapshot / "text_encoder/pytorch_model.fp16.bin").unlink()
    assert book.modelscope_variant() == "fp32"  # the default files are all there
    (snapshot / "tokenizer/tokenizer_config.json").unlink()
    assert book.modelscope_variant() is None


def test_hps_checkpoint_in_published_format_loads_from_the_hub_cache(hub, hps_bytes):
    from ivlite.registry import build_reward
    from ivlite.rewards.hps import HPS_REPO, find_hps_checkpoint, load_state_dict

    path = fake_hub.write_snapshot(hub, HPS_REPO, {"HPS_v2_compressed.pt": hps_bytes}) \
        / "HPS_v2_compressed.pt"
    raw = torch.load(path, weights_only=True)
    assert list(raw) == ["state_dict"] and raw["state_dict"]["logit_scale"].dtype == torch.float16
    assert find_hps_checkpoint("v2", local_files_only=True) == path
    assert len(load_state_dict(path)) == len(raw["state_dict"])
    reward = build_reward("hpsv2")  # inside offline_hub: the small ViT-H-14-shaped arch
    frames = torch.rand(2, 3, 64, 48) * 2 - 1
    scores = reward(frames, ["a cat", "a dog"])
    assert scores.shape == (2,) and torch.isfinite(scores).all() and scores.abs().max() <= 1
    with pytest.raises(FileNotFoundError, match="HPS v2.1"):
        find_hps_checkpoint("v2.1", local_files_only=True)


def test_finetune_preset_modelscope_runs_offline(hub, published_files, hps_bytes, tmp_path,
                                                 capsys):
    """`ivlite finetune --preset modelscope`, sizes overridden, against the cached layout."""
    from ivlite.cli import main
    from ivlite.rewards.hps import HPS_REPO

    _write(hub, ALI, published_files, only=lambda k: not k.endswith(".bin"))
    fake_hub.write_snapshot(hub, HPS_REPO, {"HPS_v2_compressed.pt": hps_bytes})
    out = tmp_path / "run"
    code = main(["finetune", "--preset", "modelscope", "--mixed-precision", "no",
                 "--device", "cpu", "--height", "64", "--width", "64", "--num-frames", "2",
                 "--segments", "2", "--ddim-steps", "4", "--tau", "0.5", "--max-steps", "2",
                 "--grad-accum", "1", "--warmup-steps", "0", "--save-every", "2",
                 "--prompts", "[a cat walking, a dog running]", "--out-dir", str(out)])
    assert code == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    assert log[0]["unet_calls"] == 2  # int(0.5 * 4) guided steps of the edit chain
    assert json.loads((out / "config.json").read_text())["model"] == DAMO
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert "done: 2 steps" in capsys.readouterr().out


@pytest.mark.parametrize("cached_as", [DAMO, ALI])
def test_book_switches_to_full_mode_under_either_name(hub, published_files, hps_bytes,
                                                      monkeypatch, cached_as):
    import ivlite.book as book
    from ivlite.rewards.hps import HPS_REPO

    monkeypatch.delenv("IVLITE_BOOK_MODE", raising=False)
    monkeypatch.setattr(book.torch.cuda, "is_available", lambda: True)
    assert book.run_mode() == "tiny"
    _write(hub, cached_as, published_files)
    assert book.modelscope_cached() and book.run_mode() == "tiny"  # no HPS checkpoint yet
    fake_hub.write_snapshot(hub, HPS_REPO, {"HPS_v2_compressed.pt": hps_bytes})
    assert book.run_mode() == "full"
    monkeypatch.setattr(book, "book_device", lambda mode=None: torch.device("cpu"))
    model = book.book_model("full", dtype=torch.float32)
    assert model.tokenizer.pad_token_id == 0
    assert book.book_reward("full", dtype=torch.float32)(
        torch.zeros(1, 3, 64, 64), ["a cat"]).shape == (1,)


def _planned_downloads(command: str, files: list[str], monkeypatch) -> list[str]:
    """The files of ``files`` that ``command`` (an ``hf download`` line) would fetch: the real
    CLI parses it, its download functions are replaced by a recorder."""
    import huggingface_hub.cli.download as download
    from click.testing import CliRunner
    from huggingface_hub.cli.hf import app

    calls = []
    monkeypatch.setattr(download, "snapshot_download",
                        lambda **kw: calls.append(("snapshot", kw)) or "/tmp")
    monkeypatch.setattr(download, "hf_hub_download",
                        lambda **kw: calls.append(("file", kw)) or "/tmp")
    result = CliRunner().invoke(app, shlex.split(command)[1:])
    assert result.exit_code == 0, result.output
    (kind, kw), = calls
    if kind == "file":
        return [kw["filename"]]
    assert not kw.get("ignore_patterns")
    patterns = kw.get("allow_patterns") or ["*"]
    return [f for f in files if any(fnmatch.fnmatch(f, p) for p in patterns)]


def test_download_commands_fetch_a_complete_copy(hub, published_files, hps_bytes, monkeypatch):
    from ivlite.rewards.hps import HPS_REPO, find_hps_checkpoint

    model_cmd, hps_cmd = DOWNLOAD_COMMANDS
    fetched = _planned_downloads(model_cmd, sorted(published_files), monkeypatch)
    assert not any(f.endswith(".bin") or f.endswith("/model.safetensors") for f in fetched)
    _write(hub, shlex.split(model_cmd)[2], published_files, only=lambda k: k in fetched)
    assert find_cached(DAMO) == (ALI, "fp16")
    assert _planned_downloads(hps_cmd, [], monkeypatch) == ["HPS_v2_compressed.pt"]
    assert shlex.split(hps_cmd)[2] == HPS_REPO
    fake_hub.write_snapshot(hub, HPS_REPO, {"HPS_v2_compressed.pt": hps_bytes})
    assert find_hps_checkpoint("v2", local_files_only=True).is_file()
    # the form `--include "*.json" "*.txt"` makes "*.txt" a file name and drops --include
    bad = 'hf download ali-vilab/text-to-video-ms-1.7b --include "*.json" "*.txt"'
    assert _planned_downloads(bad, sorted(published_files), monkeypatch) == ["*.txt"]


def test_docs_name_the_current_cli():
    """README and the GPU tests show hf download lines that exist in huggingface_hub >= 1.0."""
    old_cli = "huggingface" + "-cli"

    def text(path):  # shell lines continued with a backslash read as one
        return re.sub(r"\\\n\s*", "", (ROOT / path).read_text())

    readme, gpu_tests = text("README.md"), text("tests/test_fullscale_gpu.py")
    assert old_cli not in readme and old_cli not in gpu_tests
    for command in DOWNLOAD_COMMANDS:
        assert command in readme and command in gpu_tests
    for line in re.findall(r"^\s*(hf download .*?)\s*(?:#.*)?$", readme + gpu_tests, flags=re.M):
        words = shlex.split(line)
        # one pattern per --include: a second bare word would be taken as a file name
        for i, word in enumerate(words[:-1]):
            if word == "--include":
                assert i + 2 >= len(words) or words[i + 2].startswith("--"), line
