"""Bad input: every invalid configuration, prompt, data folder or adapter a user can type gives
one clear error naming the input, the value and what is allowed, before any heavy work starts
(no model is trained, no clip generated, no run folder filled); the command line turns each into
one line on stderr and a non-zero exit status, never a traceback."""

import json
import math
import subprocess
import sys

import pytest
import torch

from ivlite.cli import main
from ivlite.config import Config, ConfigError
from ivlite.adapters import load_adapter, save_adapter
from ivlite.method.lora import add_lora, lora_config
from ivlite.models import tiny_random_model
from ivlite.trainer import finetune

FAST = dict(num_frames=8, segments=4, ddim_steps=10, max_steps=2)
LONG_PROMPT = " ".join(["a red circle moving left over a striped background"] * 10)
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")


def _cfg(tmp_path, **kw):
    return Config.preset("tiny-random", **{"out_dir": str(tmp_path / "run"), **FAST, **kw})


def _assert_no_work_done(tmp_path):
    """Nothing heavy ran: no run folder with a log, a checkpoint or an adapter."""
    run = tmp_path / "run"
    assert not (run / "log.jsonl").exists() and not (run / "checkpoints").exists()
    assert not (run / "adapter").exists()


# (config changes, fragments the message must hold: the input's name, its value, what is allowed)
BAD_CONFIGS = [
    ({"tau": 0.0}, ["tau=0.0", "0 < tau <= 1"]),
    ({"tau": 1.5}, ["tau=1.5", "0 < tau <= 1"]),
    ({"tau": "strong"}, ["tau='strong'", "0 < tau <= 1"]),
    ({"tau": 0.05}, ["tau * ddim_steps", "need tau >= 0.1"]),
    ({"ddim_steps": 0}, ["ddim_steps=0", "1 <= ddim_steps <= 1000"]),
    ({"ddim_steps": 5000}, ["ddim_steps=5000", "1 <= ddim_steps <= 1000"]),
    ({"grad_steps": 7}, ["grad_steps=7", "1 <= grad_steps <= 6", "int(tau * ddim_steps) = 6"]),
    ({"grad_steps": 0}, ["grad_steps=0", "1 <= grad_steps"]),
    ({"segments": 9}, ["segments=9", "1 <= segments <= 8", "num_frames"]),
    ({"segments": 0}, ["segments=0", "1 <= segments"]),
    ({"lambda_tar": -0.5}, ["lambda_tar=-0.5", "a finite number >= 0"]),
    ({"lambda_tar": math.inf}, ["lambda_tar=inf", "a finite number >= 0"]),
    ({"learning_rate": 0.0}, ["learning_rate=0.0", "0 < learning_rate <= 1"]),
    ({"learning_rate": 3.0}, ["learning_rate=3.0", "0 < learning_rate <= 1"]),
    ({"learning_rate": "fast"}, ["learning_rate='fast'", "0 < learning_rate <= 1"]),
    ({"height": 30}, ["height=30", "multiple of 8"]),
    ({"width": 4}, ["width=4", "8 <= width <= 4096"]),
    ({"num_frames": 0}, ["num_frames=0", "1 <= num_frames"]),
    ({"num_frames": 2}, ["segments=4", "1 <= segments <= 2"]),  # fewer frames than segments
    ({"prompts": []}, ["prompts=[]", "a non-empty list of strings"]),
    ({"prompts": ["a red circle", "   "]}, ["prompts[1]='   '", "a non-empty string"]),
    ({"prompts": ["a red circle", 7]}, ["prompts[1]=7", "a non-empty string"]),
    ({"prompts": [LONG_PROMPT]}, ["prompts[0] has 92 tokens", "at most 77"]),
    ({"reward": "no-such-reward"}, ["reward='no-such-reward'", "unknown reward",
                                    "tiny-random-clip"]),
    ({"reward": "tiny-random-clip:lots"}, ["weight 'lots'", "not a number"]),
    ({"device": "tpu"}, ["device='tpu'", "'auto', 'cpu', 'cuda' or 'cuda:N'"]),
    ({"mixed_precision": "fp8"}, ["mixed_precision='fp8'", "'no', 'fp16' or 'bf16'"]),
    ({"mixed_precision": "fp16", "device": "cpu"}, ["mixed_precision='fp16'", "CUDA device",
                                                    "'bf16' or 'no'"]),
    ({"data": "/nonexistent/clips"}, ["data='/nonexistent/clips'", "captions.csv"]),
    ({"model": "/nonexistent/model"}, ["model='/nonexistent/model'", "hub id"]),
    ({"reward": "tiny-hps", "reward_checkpoint": "/nonexistent/hps"},
     ["reward_checkpoint='/nonexistent/hps'", "does not exist"]),
    ({"reward_checkpoint": "/nonexistent/hps.pt"}, ["reward_checkpoint='/nonexistent/hps.pt'",
                                                   "reward='tiny-random-clip' reads no checkpoint",
                                                   "allowed only with ['hpsv2'"]),
    ({"reward": "tiny-hps:0.5,tiny-random-clip:0.5", "reward_checkpoint": "/some/hps"},
     ["reward_checkpoint='/some/hps'", "a sum of several rewards does not read a checkpoint"]),
    ({"reward": "tiny-random-clip:0.5,tiny-random-clip:1"}, ["'tiny-random-clip' appears twice",
                                                              "each reward once"]),
    ({"reward": "tiny-random-clip:nan"}, ["weight 'nan'", "not a finite number"]),
    ({"early_stop_judge": "oracle-quality", "early_stop_prompts": [LONG_PROMPT]},
     ["early_stop_prompts[0] has 92 tokens", "at most 77"]),
    ({"data": "world", "height": 64, "width": 64}, ["height=64", "data='world'", "32x32"]),
    ({"batch_size": 0}, ["batch_size=0", "1 <= batch_size"]),
    ({"grad_accum": 1.5}, ["grad_accum=1.5", "an integer"]),
    ({"lora_rank": 0}, ["lora_rank=0", "1 <= lora_rank"]),
    ({"lora_targets": []}, ["lora_targets=[]", "non-empty list"]),
    ({"max_grad_norm": 0.0}, ["max_grad_norm=0.0", "> 0"]),
    ({"max_bad_steps": 0}, ["max_bad_steps=0", "1 <= max_bad_steps"]),
    ({"save_every": 0}, ["save_every=0", "1 <= save_every"]),
    ({"seed": -1}, ["seed=-1", "0 <= seed"]),
    ({"resume": "yes please"}, ["resume='yes please'", "true or false"]),
    ({"chain": "partial"}, ["chain='partial'", "'edit' or 'full'"]),
]


@pytest.mark.parametrize("changes, fragments", BAD_CONFIGS,
                         ids=[",".join(c) + f"-{i}" for i, (c, _) in enumerate(BAD_CONFIGS)])
def test_bad_config_fails_before_any_work(tmp_path, changes, fragments):
    with pytest.raises(ConfigError) as err:
        finetune(_cfg(tmp_path, **changes), progress=False)
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    _assert_no_work_done(tmp_path)


@NO_CUDA
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_asked_for_without_cuda(tmp_path, device):
    with pytest.raises(ConfigError, match=f"device='{device}' but no CUDA device is available"):
        finetune(_cfg(tmp_path, device=device), progress=False)
    _assert_no_work_done(tmp_path)


@pytest.mark.parametrize("variable", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_sharded_accelerate_configs_are_refused(tmp_path, monkeypatch, variable):
    monkeypatch.setenv(variable, "true")
    with pytest.raises(ConfigError, match=f"{variable} is set: .*data-parallel only"):
        finetune(_cfg(tmp_path), progress=False)
    _assert_no_work_done(tmp_path)


def test_out_dir_that_is_a_file(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(ConfigError, match="out_dir=.*run' is a file"):
        finetune(_cfg(tmp_path), progress=False)
    with pytest.raises(ConfigError, match="out_dir=.*run/sub' cannot be created: Not a directory"):
        finetune(_cfg(tmp_path, out_dir=str(tmp_path / "run" / "sub")), progress=False)


@pytest.mark.parametrize("changes, fragment", [
    ({"data": "FILE"}, "data='FILE' is a file but not a .csv"),
    ({"data": "DIR"}, "data='DIR' has no captions.csv"),
    ({"model": "FILE"}, "model='FILE' is a file: a local model folder"),
])
def test_paths_of_the_wrong_kind_say_so(tmp_path, changes, fragment):
    """A path that exists but is a file where a folder is wanted (or a folder without the file it
    needs) is named as such, not as missing."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    paths = {"FILE": str(tmp_path / "file"), "DIR": str(tmp_path / "dir")}
    changes = {k: paths[v] for k, v in changes.items()}
    with pytest.raises(ConfigError) as err:
        finetune(_cfg(tmp_path, **changes), progress=False)
    for key, path in paths.items():
        fragment = fragment.replace(key, path)
    assert fragment in str(err.value)
    _assert_no_work_done(tmp_path)


# --- run folders: never overwritten, one process at a time, same inputs on resume ----------

def _bytes(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_a_finished_run_without_checkpoints_is_not_overwritten(tmp_path, tiny_model):
    """Deleting checkpoints/ used to make a finished run look like a fresh folder: the next run
    replaced its config, truncated its log and replaced its adapter."""
    import shutil

    run = tmp_path / "run"
    finetune(_cfg(tmp_path), model=tiny_model, progress=False)
    shutil.rmtree(run / "checkpoints")
    saved = _bytes(run)
    for resume in (False, True):
        with pytest.raises(ConfigError, match=r"out_dir=.*run' already holds config.json, "
                                              r"config.yaml, run_info.json, log.jsonl, adapter "
                                              r"of a run and no checkpoint to resume from; pass "
                                              r"force \(--force\)"):
            finetune(_cfg(tmp_path, seed=1, resume=resume), progress=False)
        assert _bytes(run) == saved
    (run / "notes.txt").write_text("mine")
    result = finetune(_cfg(tmp_path, seed=1), model=tiny_random_model(), progress=False,
                      force=True)
    assert result.steps == 2 and json.loads((run / "config.json").read_text())["seed"] == 1
    assert (run / "notes.txt").read_text() == "mine"  # force replaces the run's files only
    with pytest.raises(ConfigError, match="force=True with resume=true: give one"):
        finetune(_cfg(tmp_path, resume=True), progress=False, force=True)


def test_a_run_that_died_before_its_first_checkpoint_can_start_over(tmp_path, tiny_model):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(_cfg(tmp_path).to_dict()))
    (run / "log.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(ConfigError, match="no checkpoint to resume from"):
        finetune(_cfg(tmp_path), progress=False)
    assert finetune(_cfg(tmp_path, resume=True), model=tiny_model, progress=False).steps == 2


_HOLD_LOCK = """
import sys, time
from ivlite.folders import FolderLock
lock = FolderLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_process_on_a_run_folder_is_refused(tmp_path, tiny_model):
    """Two runs on one folder used to interleave their logs and checkpoints. The writer holds
    an exclusive lock; the kernel frees it when the holder dies."""
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(run)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=rf"out_dir='.*run' is in use by another live "
                                              rf"process \(pid {holder.pid}, lock '.*\.lock'\)"):
            finetune(_cfg(tmp_path), model=tiny_model, progress=False)
        assert not (run / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert finetune(_cfg(tmp_path), model=tiny_model, progress=False).steps == 2


def test_the_lock_is_held_for_the_whole_run(tmp_path, tiny_model):
    from ivlite.folders import FolderLock

    seen = []

    def try_lock(step, record, unet):
        try:
            FolderLock(tmp_path / "run").acquire().release()
            seen.append("free")
        except ConfigError:
            seen.append("held")
        return False

    finetune(_cfg(tmp_path), model=tiny_model, progress=False, stop_when=try_lock)
    assert seen == ["held", "held"]
    FolderLock(tmp_path / "run").acquire().release()  # released at the end


def test_resume_refuses_data_that_changed(tmp_path, tiny_model):
    """run_info.json records the SHA-256 of what the run read; resuming on other bytes would
    mix two data sets in one run."""
    from ivlite.video_io import write_video

    folder = _video_folder(tmp_path, "video,caption\n0.gif,a red circle\n1.gif,a blue square\n",
                           videos=("0.gif", "1.gif"))
    cfg = _cfg(tmp_path, data=str(folder), height=32, width=32, save_every=1)
    finetune(cfg, model=tiny_model, progress=False)
    more = cfg.override({"max_steps": 3, "resume": True})
    table = folder / "captions.csv"
    table.write_text("video,caption\n0.gif,a red circle\n1.gif,a green square\n")
    with pytest.raises(ConfigError, match=rf"resume: {table} changed since the run started"):
        finetune(more, model=tiny_model, progress=False)
    table.write_text("video,caption\n0.gif,a red circle\n1.gif,a blue square\n")
    write_video(torch.linspace(1, -1, 8).view(8, 1, 1, 1).expand(8, 3, 16, 16), folder / "1.gif")
    with pytest.raises(ConfigError, match=r"resume: .*1.gif changed since the run started"):
        finetune(more, model=tiny_model, progress=False)
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 2


def test_resume_with_fewer_steps_than_done_or_a_corrupt_config(tmp_path):
    cfg = _cfg(tmp_path, max_steps=4, resume=True)
    ckpts = tmp_path / "run" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "latest.json").write_text(json.dumps({"step": 10, "folder": "step-000010"}))
    (tmp_path / "run" / "config.json").write_text(json.dumps(cfg.to_dict()))
    with pytest.raises(ConfigError, match="max_steps=4 is below the 10 steps"):
        finetune(cfg, progress=False)
    (tmp_path / "run" / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"config.json is corrupt"):
        finetune(cfg, progress=False)


# --- a folder of videos with captions.csv ---------------------------------------------------

def _video_folder(tmp_path, table: str, videos=("0.gif",)):
    from ivlite.video_io import write_video

    folder = tmp_path / "clips"
    ramp = torch.linspace(-1, 1, 8).view(8, 1, 1, 1).expand(8, 3, 16, 16)  # 8 distinct frames:
    for name in videos:  # a GIF merges repeated frames, and the training window needs 8 at 8 fps
        write_video(ramp, folder / name)
    (folder / "captions.csv").write_bytes(table.encode("utf-8") if isinstance(table, str)
                                          else table)
    return folder


@pytest.mark.parametrize("table, fragments", [
    ("clip,words\n0.gif,a cat\n", ["header ['clip', 'words']", "video column", "caption column"]),
    ("video,caption\n0.gif,a cat\n0.gif,\n", ["line 3", "empty 'video' or 'caption'"]),
    ("video,caption\n0.gif,a cat,running\n", ["line 2", "3 fields", "header has 2"]),
    ("video,caption\n0.gif,a cat\nmissing.mp4,a dog\n", ["line 3", "missing.mp4",
                                                         "does not exist"]),
    ("video,caption\n", ["captions.csv has no rows"]),
    ("video,caption\n0.gif," + LONG_PROMPT + "\n", ["caption[0] has 92 tokens", "at most 77"]),
    (b"video,caption\n0.gif,caf\xe9\n", ["not a readable UTF-8 CSV"]),
    ("\ufeffvideo,caption\n0.gif," + LONG_PROMPT + "\n", ["caption[0] has 92 tokens"]),
], ids=["header", "empty-caption", "extra-field", "missing-video", "no-rows", "long-caption",
        "not-utf8", "bom-then-long-caption"])
def test_bad_captions_csv(tmp_path, table, fragments):
    folder = _video_folder(tmp_path, table)
    with pytest.raises(ConfigError) as err:
        finetune(_cfg(tmp_path, data=str(folder)), progress=False)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)
    assert "captions.csv" in str(err.value)
    _assert_no_work_done(tmp_path)


def test_unreadable_video_names_file_and_row(tmp_path):
    folder = _video_folder(tmp_path, "video,caption\n0.gif,a cat\nbroken.mp4,a dog\n")
    (folder / "broken.mp4").write_bytes(b"this is not a video")
    with pytest.raises(ConfigError) as err:
        finetune(_cfg(tmp_path, data=str(folder)), progress=False)
    message = str(err.value)
    assert "line 3" in message and "broken.mp4" in message and "cannot be read" in message
    assert "\n" not in message  # ffmpeg's page of diagnostics is cut to its first line
    _assert_no_work_done(tmp_path)


# --- inputs that need the loaded model ----------------------------------------------------

# --- shipped assets ---------------------------------------------------------------------------

def _shipped_copy(tmp_path, monkeypatch):
    """A copy of ivlite/assets/tiny_world that ivlite takes for the shipped folder."""
    import shutil

    import ivlite.world.assets as assets

    root = tmp_path / "assets"
    shutil.copytree(assets.ASSET_ROOT / "tiny_world", root / "tiny_world")
    monkeypatch.setattr(assets, "ASSET_ROOT", root)
    return root / "tiny_world"


@pytest.mark.parametrize("missing", ["scheduler/scheduler_config.json", "reward/metrics.json",
                                     "manifest.json"])
def test_a_missing_shipped_file_is_an_error_not_a_fallback(tmp_path, monkeypatch, missing):
    """Without its scheduler config the tiny world sampled on ModelScope's schedule instead of
    the one it was trained on, with exit status 0; without the manifest nothing was checked."""
    from ivlite.world.reward_model import load_tiny_hps
    from ivlite.world.tiny_models import load_tiny_world

    world = _shipped_copy(tmp_path, monkeypatch)
    (world / missing).unlink()
    with pytest.raises((ValueError, FileNotFoundError), match=missing.replace(".", r"\.")):
        load_tiny_world(world)
    with pytest.raises((ValueError, FileNotFoundError), match=missing.replace(".", r"\.")):
        load_tiny_hps(world / "reward")


def test_a_folder_whose_manifest_lists_a_scheduler_needs_it(tmp_path):
    """Outside the shipped folder too: a manifest that lists the scheduler config makes it
    required (a folder trained on ModelScope's schedule lists none and gets that one)."""
    import shutil

    from ivlite.world.assets import ASSET_ROOT
    from ivlite.world.tiny_models import load_tiny_world

    world = shutil.copytree(ASSET_ROOT / "tiny_world", tmp_path / "world")
    (world / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"scheduler_config.json is missing: the model "
                                                r"was trained on the schedule it holds"):
        load_tiny_world(world)


def test_prompts_longer_than_the_text_encoder_are_never_cut(tmp_path, tiny_model, tiny_reward):
    """The pipeline's tokenizer call truncates at 77 tokens; every path that reaches it (sampling,
    split evaluation, early stopping) refuses instead."""
    from ivlite.evaluation import evaluate_splits, sample_videos

    with pytest.raises(ValueError, match=r"prompt 'a red circle.*has 92 tokens.*at most 77"):
        tiny_model.encode_prompts(["a short one", LONG_PROMPT])
    with pytest.raises(ValueError, match="has 92 tokens"):
        sample_videos(tiny_model, [LONG_PROMPT], num_frames=8, height=32, width=32, ddim_steps=2)
    with pytest.raises(ValueError, match="has 92 tokens"):
        evaluate_splits(tiny_model, tiny_reward, {"s": [LONG_PROMPT]}, num_frames=8, height=32,
                        width=32, ddim_steps=2)


def test_resolution_the_model_cannot_take(tmp_path):
    """A VAE that downsamples by 16 cannot encode 40x40 frames (40 is a multiple of 8 only)."""
    from diffusers import AutoencoderKL

    model = tiny_random_model()
    model.vae = AutoencoderKL(block_out_channels=(8,) * 5, latent_channels=4, norm_num_groups=8,
                              down_block_types=("DownEncoderBlock2D",) * 5, layers_per_block=1,
                              up_block_types=("UpDecoderBlock2D",) * 5)
    with pytest.raises(ConfigError, match="height=40 does not fit .* multiple of 16"):
        finetune(_cfg(tmp_path, height=40, width=48), model=model, progress=False)
    _assert_no_work_done(tmp_path)


def test_lora_target_the_model_lacks(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match=r"lora_targets=\['to_q', 'to_qkv'\]: \['to_qkv'\] "
                                          r"match no module"):
        finetune(_cfg(tmp_path, lora_targets=["to_q", "to_qkv"]), model=tiny_model,
                 progress=False)
    _assert_no_work_done(tmp_path)


def test_clips_of_another_size_than_the_config(tmp_path, tiny_model):
    from ivlite.data import LatentClips

    clips = LatentClips(torch.zeros(2, 4, 16, 4, 4), ["a red circle", "a blue square"])
    with pytest.raises(ConfigError, match=r"num_frames=8.*\(4, 16, 4, 4\).*\(4, 8, 4, 4\)"):
        finetune(_cfg(tmp_path), model=tiny_model, clips=clips, progress=False)
    _assert_no_work_done(tmp_path)


# --- adapters -------------------------------------------------------------------------------

def _adapter(tmp_path, name, rank=4, targets=("to_q", "to_k", "to_v", "to_out.0"), text_dim=32):
    unet = tiny_random_model(text_dim=text_dim).unet
    add_lora(unet, lora_config(rank=rank, targets=targets))
    return save_adapter(unet, tmp_path / name)


def test_wrong_adapters_name_the_adapter(tmp_path):
    other_model = _adapter(tmp_path, "other-model", text_dim=16)  # cross-attention of width 16
    with pytest.raises(ValueError, match=r"adapter '.*other-model' does not fit this UNet: "
                                         r".*has shape .*another rank or base model"):
        load_adapter(tiny_random_model().unet, other_model)

    rank8 = _adapter(tmp_path, "rank8", rank=8)
    unet = tiny_random_model().unet
    add_lora(unet, lora_config(rank=4))
    with pytest.raises(ValueError, match=r"adapter '.*rank8' does not fit this UNet"):
        load_adapter(unet, rank8)

    fewer = _adapter(tmp_path, "q-only", targets=("to_q",))
    unet = tiny_random_model().unet
    add_lora(unet, lora_config(rank=4))
    with pytest.raises(ValueError, match=r"adapter '.*q-only' does not fit this UNet: \d+ LoRA "
                                         r"weights missing"):
        load_adapter(unet, fewer)

    foreign = _adapter(tmp_path, "foreign")
    config = json.loads((foreign / "adapter_config.json").read_text())
    (foreign / "adapter_config.json").write_text(json.dumps({**config,
                                                             "target_modules": ["qkv_proj"]}))
    with pytest.raises(ValueError, match=r"adapter '.*foreign' does not fit this UNet: "
                                         r"lora_targets=\['qkv_proj'\]"):
        load_adapter(tiny_random_model().unet, foreign)

    with pytest.raises(FileNotFoundError, match=r"adapter '.*absent' does not exist"):
        load_adapter(tiny_random_model().unet, tmp_path / "absent")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"adapter '.*a-file' is a file; expected a "
                                                 r"folder"):
        load_adapter(tiny_random_model().unet, tmp_path / "a-file")


@pytest.mark.parametrize("key, value, allowed", [
    ("r", "four", "an integer >= 1"), ("r", 0, "an integer >= 1"),
    ("lora_alpha", "4", "a number > 0"), ("target_modules", [1, 2], "a non-empty list"),
    ("target_modules", None, "a non-empty list"), ("lora_dropout", "none", "a number in [0, 1)"),
])
def test_adapter_config_of_wrong_types(tmp_path, key, value, allowed):
    """peft accepts these and fails deep inside the model with a traceback."""
    folder = _adapter(tmp_path, "typed")
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(ValueError, match=r"adapter '.*typed' is corrupt or unreadable: "
                                         r"adapter_config.json: ") as err:
        load_adapter(tiny_random_model().unet, folder)
    assert f"{key}={value!r}; allowed: {allowed}" in str(err.value)


# --- the command line ---------------------------------------------------------------------

@pytest.mark.parametrize("argv, fragment", [
    (["finetune", "--tau", "abc"], "tau='abc' is out of range; allowed: 0 < tau <= 1"),
    (["finetune", "--tau", "[0.5"], "tau='[0.5' is not a valid YAML value"),
    (["finetune", "--segments", "20"], "segments=20 is out of range"),
    (["finetune", "--prompts", f"[{LONG_PROMPT}]"], "prompts[0] has 92 tokens"),
    (["finetune", "--taus", "0.5"], "unrecognized arguments: --taus 0.5"),
    (["finetune", "--reward", "nope"], "unknown reward 'nope'"),
    (["finetune", "--config", "/nonexistent.yaml"], "'/nonexistent.yaml' does not exist"),
    (["sample", "--adapter", "/nonexistent/adapter"], "adapter '/nonexistent/adapter' does not "
                                                      "exist"),
    (["sample", "--prompt", ""], "--prompt '' is empty; allowed: a non-empty prompt"),
    (["sample", "--prompt", LONG_PROMPT], "--prompt[0] has 92 tokens"),
    (["sample", "--prompt", "a", "--prompts", "[b]"], "give either --prompt (repeatable) or "
                                                       "--prompts, not both"),
    (["sample", "--tau", "0.5"], "unrecognized arguments: --tau 0.5"),
    (["evaluate", "--learning-rate", "1"], "unrecognized arguments: --learning-rate 1"),
    (["sample", "--lora-scale", "0.5"], "--lora-scale=0.5 scales an adapter; give --adapter"),
    (["evaluate", "--seeds", "0"], "--seeds=0 must be an integer >= 1"),
    (["evaluate", "--lora-scale", "nan"], "--lora-scale=nan must be a finite number"),
    (["evaluate", "--judge", "oracle-score"], "--judge='oracle-score' applies to --splits"),
    (["evaluate", "--per-split", "3"], "--per-split=3 applies to --splits"),
    (["evaluate", "--splits", "world", "--per-split", "0"], "--per-split=0 must be an integer"),
    (["evaluate", "--splits", "world", "--judge", "nope"], "--judge='nope' is not a judge; "
                                                           "allowed: ['oracle-quality'"),
    (["finetune", "--reward-checkpoint", "/some/file.pt"], "reward='tiny-random-clip' reads no "
                                                           "checkpoint"),
    (["finetune", "--reward", "tiny-random-clip:0.5,tiny-random-clip:0.5"], "appears twice"),
])
def test_cli_gives_one_line_and_non_zero_status(argv, fragment, capsys):
    status = _exit_status(argv)
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1, err
    assert fragment in err and "Traceback" not in err


@NO_CUDA
def test_cli_cuda_without_cuda(capsys, tmp_path):
    assert _exit_status(["finetune", "--device", "cuda", "--out-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("ivlite finetune: error: device='cuda' but no CUDA device is "
                           "available; use device='cpu' or 'auto'")
    assert not (tmp_path / "r").exists()


def test_cli_in_a_real_process(tmp_path):
    """The installed command's exit status and stderr, as a shell sees them."""
    done = subprocess.run([sys.executable, "-m", "ivlite.cli", "finetune", "--learning-rate", "-1",
                           "--out-dir", str(tmp_path / "r")], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 2
    assert done.stderr.strip() == ("ivlite finetune: error: learning_rate=-1.0 is out of range; "
                                   "allowed: 0 < learning_rate <= 1")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv", [["finetune", "--tau", "7"], ["demo", "--steps", "-1"],
                                  ["evaluate", "--seeds", "0"]])
def test_cli_mistakes_are_reported_before_torch_loads(argv):
    """``import ivlite`` is lazy (PEP 562) and the commands check their arguments first, so a
    mistake costs a fraction of a second, not the seconds torch and diffusers take to import."""
    code = ("import sys; from ivlite.cli import main; status = main(%r); "
            "print(status, 'torch' in sys.modules)" % (argv,))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert "error:" in done.stderr


@pytest.mark.parametrize("content, fragment", [
    ("a: [unclosed\n", "is not a readable YAML/JSON file (while parsing a flow sequence)"),
    ("s: []\n", "split 's' must be a non-empty list of non-empty prompt strings"),
    ("s: [a cat, null]\n", "split 's' must be a non-empty list"),
    ("[a, b]\n", "the file must map split names to non-empty lists"),
    (f"s: ['{LONG_PROMPT}']\n", "split 's': prompts[0] has 92 tokens"),
    ("FOLDER", "is a folder; expected 'world', 'paper', 'vgen:VGEN_CHECKOUT' or a YAML/JSON"),
    ("ABSENT", "no such file; expected 'world'"),
], ids=["malformed", "empty", "null-prompt", "a-list", "long-prompt", "folder", "absent"])
def test_cli_splits_files_are_checked_before_any_model_loads(tmp_path, capsys, content,
                                                             fragment):
    path = tmp_path / "splits.yaml"
    if content == "FOLDER":
        path.mkdir()
    elif content != "ABSENT":
        path.write_text(content)
    assert _exit_status(["evaluate", "--splits", str(path), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and fragment in err, err
    assert f"--splits {str(path)!r}" in err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("verb, taken", [("sample", "000.gif"), ("evaluate", "evaluation.json")])
def test_cli_outputs_are_checked_first_and_never_overwritten(tmp_path, capsys, verb, taken):
    """An --out that cannot take the files used to fail after the sampling (a file, a path under
    a file), or to be written over without a word (a previous result)."""
    fast = ["--prompt", "a red circle", "--num-frames", "8", "--ddim-steps", "2"]
    (tmp_path / "file").write_text("x")
    for out, fragment in ((tmp_path / "file", "is a file; choose a folder path"),
                          (tmp_path / "file" / "sub", "is a file, so the folder cannot be "
                                                      "created")):
        assert _exit_status([verb, "--out", str(out)] + fast) == 2
        err = capsys.readouterr().err
        assert f"--out {str(out)!r}" in err and fragment in err, err
    out = tmp_path / "out"
    out.mkdir()
    (out / taken).write_text("mine")
    assert _exit_status([verb, "--out", str(out)] + fast) == 2
    err = capsys.readouterr().err
    assert f"already holds {taken}; pass --force to replace them" in err, err
    assert (out / taken).read_text() == "mine"
    assert _exit_status([verb, "--out", str(out), "--force"] + fast) == 0
    assert (out / taken).read_bytes() != b"mine"


def test_cli_demo_checks_its_arguments_before_touching_out(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _exit_status(["demo", "--out", str(out), "--force", "--steps", "0"]) == 2
    assert "--steps=0 must be" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"  # the bad --steps was seen first
    (tmp_path / "file").write_text("x")
    assert _exit_status(["demo", "--out", str(tmp_path / "file" / "demo")]) == 2
    err = capsys.readouterr().err
    assert "is a file, so the folder cannot be created" in err, err


def _exit_status(argv) -> int:
    """main()'s return value, or the status argparse exits with."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code
