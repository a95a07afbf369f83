"""Files and reproducibility: a run folder holds only safetensors and JSON (plus a YAML copy of
the config), nothing is ever unpickled, shipped assets are checked against their checksums,
corrupt or mismatched adapters and checkpoints give clear errors, and the same seed and config
give the same adapter, with the config, versions and input checksums recorded."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ivlite.cli import main
from ivlite.config import Config
from ivlite.adapters import load_adapter, read_adapter, save_adapter
from ivlite.method.lora import add_lora, lora_config
from ivlite.models import tiny_random_model
from ivlite.run_folder import provenance
from ivlite.trainer import finetune

PACKAGE = Path(__file__).resolve().parent.parent / "ivlite"
FAST = dict(num_frames=4, segments=2, ddim_steps=5, prompts=["a red circle moving left"],
            max_steps=3, save_every=2)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One finished run (seed 0), shared by the tests of this file."""
    base = tmp_path_factory.mktemp("repro")
    with pytest.MonkeyPatch.context() as mp:  # the module fixture precedes conftest's cache fixture
        mp.setenv("IVLITE_CACHE", str(base / "cache"))
        cfg = Config.preset("tiny-random", out_dir=str(base / "run"), **FAST)
        result = finetune(cfg, progress=False)
    return cfg, result


def _strict_json(text: str):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_run_folder_holds_only_safetensors_and_json(first_run):
    cfg, result = first_run
    kinds = {}
    for path in sorted(p for p in result.out_dir.rglob("*") if p.is_file()):
        name = str(path.relative_to(result.out_dir))
        if path.suffix == ".safetensors":
            with safe_open(path, framework="pt") as fh:
                assert list(fh.keys()), name
        elif path.suffix == ".json":
            _strict_json(path.read_text())
        elif path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                _strict_json(line)
        elif name == "config.yaml":  # the human-readable copy of config.json, plain data only
            assert yaml.safe_load(path.read_text()) == _strict_json(
                (result.out_dir / "config.json").read_text())
        elif name == ".lock":  # ivlite.folders.FolderLock's file: the last writer's pid
            assert path.read_text().strip().isdigit()
        else:
            pytest.fail(f"{name}: ivlite wrote a file that is neither safetensors nor JSON")
        kinds[name] = path.suffix
    assert {"config.json", "run_info.json", "log.jsonl", "adapter/adapter_model.safetensors",
            "checkpoints/latest.json", "checkpoints/step-000003/optimizer.safetensors",
            "checkpoints/step-000003/training_state.json"} <= set(kinds)


def test_run_records_config_versions_and_input_checksums(first_run):
    cfg, result = first_run
    assert _strict_json((result.out_dir / "config.json").read_text()) == cfg.to_dict()
    assert Config.from_yaml(result.out_dir / "config.yaml").to_dict() == cfg.to_dict()
    info = _strict_json((result.out_dir / "run_info.json").read_text())
    for package in ("torch", "diffusers", "peft", "transformers", "accelerate", "open_clip_torch",
                    "ivlite", "safetensors", "python"):
        assert info["versions"][package] not in ("", None, "not installed"), package
    assert info["versions"]["torch"] == torch.__version__
    assert info["inputs"]["model"] == "tiny-random" and info["inputs"]["sha256"] == {}

    # The shipped tiny world: the files a run reads, with the checksums of its manifest.
    world = provenance(Config.preset("tiny-world"))["sha256"]
    manifest = json.loads((PACKAGE / "assets/tiny_world/manifest.json").read_text())
    for name in ("unet/model.safetensors", "vae/model.safetensors",
                 "text_encoder/model.safetensors", "reward/model.safetensors"):
        assert world[str(PACKAGE / "assets/tiny_world" / name)] == manifest[name]


def test_same_seed_and_config_give_the_same_adapter(first_run, tmp_path):
    cfg, result = first_run
    again = finetune(cfg.override({"out_dir": str(tmp_path / "again")}), progress=False)
    other = finetune(cfg.override({"out_dir": str(tmp_path / "seed1"), "seed": 1}),
                     progress=False)
    a, b, c = (load_file(r.adapter_dir / "adapter_model.safetensors")
               for r in (result, again, other))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [l["loss"] for l in again.log] == [l["loss"] for l in result.log]
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the seed matters, so the test can fail


def test_the_package_never_unpickles():
    """Every torch.load in ivlite passes weights_only=True; no pickle, no allow_pickle."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.end():_closing_paren(text, match.end())]
            if not re.search(r"weights_only\s*=\s*True", call):
                offenders.append(f"{path.relative_to(PACKAGE)}: torch.load({call})")
        for pattern in (r"^\s*import pickle", r"^\s*from pickle ", r"pickle\.loads?\(",
                        r"allow_pickle\s*=\s*True", r"weights_only\s*=\s*False"):
            for hit in re.finditer(pattern, text, flags=re.M):
                offenders.append(f"{path.relative_to(PACKAGE)}: {hit.group(0).strip()}")
    assert not offenders, offenders


def _closing_paren(text: str, start: int) -> int:
    depth = 1
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return len(text)


def test_tampered_shipped_assets_are_refused(tmp_path):
    from ivlite.world.assets import verify_manifest
    from ivlite.world.reward_model import load_tiny_hps
    from ivlite.world.tiny_models import load_tiny_world

    copy = shutil.copytree(PACKAGE / "assets" / "tiny_world", tmp_path / "tiny_world")
    verify_manifest(copy)  # the untouched copy passes
    weights = copy / "unet" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit pattern in the last weight
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"unet/model.safetensors does not match its checksum"):
        load_tiny_world(copy)
    config = copy / "reward" / "config.json"
    config.write_text(config.read_text().replace("}", ' , "extra": 1}', 1))
    with pytest.raises(ValueError, match=r"reward/config.json does not match its checksum"):
        load_tiny_hps(copy / "reward")
    (copy / "vae" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"vae/model.safetensors is missing"):
        verify_manifest(copy, ["vae/config.json", "vae/model.safetensors"])


def test_corrupt_truncated_or_mismatched_adapters_give_clear_errors(first_run, tmp_path):
    _, result = first_run
    adapter = shutil.copytree(result.adapter_dir, tmp_path / "adapter")
    weights = adapter / "adapter_model.safetensors"
    good = weights.read_bytes()

    weights.write_bytes(good[:len(good) // 2])  # truncated
    with pytest.raises(ValueError, match=r"adapter '.*adapter' is corrupt or unreadable") as err:
        read_adapter(adapter)
    assert "\n" not in str(err.value)
    weights.write_bytes(b"\x00" * 64)  # garbage
    with pytest.raises(ValueError, match=r"adapter '.*adapter' is corrupt or unreadable"):
        read_adapter(adapter)

    state = load_file(result.adapter_dir / "adapter_model.safetensors")
    first = sorted(state)[0]
    save_file({**state, first: torch.full_like(state[first], float("nan"))}, weights)
    with pytest.raises(ValueError, match=r"adapter '.*adapter' holds NaN or infinite values"):
        load_adapter(tiny_random_model().unet, adapter)

    weights.write_bytes(good)
    (adapter / "adapter_config.json").write_text('{"r": 4, ')
    with pytest.raises(ValueError, match=r"adapter '.*adapter' is corrupt or unreadable"):
        read_adapter(adapter)


def test_corrupt_or_mismatched_checkpoints_give_clear_errors(first_run, tmp_path, capsys):
    cfg, result = first_run
    run = Path(shutil.copytree(result.out_dir, tmp_path / "run"))
    resume = cfg.override({"out_dir": str(run), "resume": True, "max_steps": 4})
    ckpt = run / "checkpoints" / "step-000003"

    optimizer = ckpt / "optimizer.safetensors"
    good = optimizer.read_bytes()
    optimizer.write_bytes(good[:len(good) // 3])
    with pytest.raises(ValueError, match=r"checkpoint '.*step-000003' is corrupt or unreadable"):
        finetune(resume, progress=False)
    argv = ["finetune", "--preset", "tiny-random", "--out-dir", str(run), "--resume", "true",
            "--max-steps", "4", "--num-frames", "4", "--segments", "2", "--ddim-steps", "5",
            "--prompts", "[a red circle moving left]", "--save-every", "2"]
    assert main(argv) == 2
    info, error = capsys.readouterr().err.strip().splitlines()   # the thread count, then one line
    assert info.startswith("torch threads:") and "step-000003' is corrupt" in error
    optimizer.write_bytes(good)

    # A checkpoint whose LoRA has another rank than this run's.
    unet = tiny_random_model().unet
    add_lora(unet, lora_config(rank=2))
    save_adapter(unet, ckpt)
    with pytest.raises(ValueError, match=r"checkpoint '.*step-000003' does not fit this UNet: "
                                         r".*another rank or base model"):
        finetune(resume, progress=False)

    (run / "checkpoints" / "latest.json").write_text("step 3")
    with pytest.raises(ValueError, match=r"latest.json is corrupt"):
        finetune(resume, progress=False)
