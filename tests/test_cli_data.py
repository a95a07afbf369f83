"""The ivlite command line and the data sources (folder of clips, generated clips)."""

import json

import numpy as np
import pytest
import torch

from ivlite.cli import main
from ivlite.data import folder_clips, generated_clips, read_captions
from ivlite.video_io import read_video, write_video


def test_cli_rejects_bad_values_with_one_line(capsys):
    assert main(["finetune", "--tau", "1.5"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "ivlite finetune: error: tau=1.5 is out of range; allowed: 0 < tau <= 1"
    assert main(["finetune", "--grad-steps", "13"]) == 2
    assert "1 <= grad_steps <= 12" in capsys.readouterr().err
    assert main(["evaluate", "--reward", "nope"]) == 2
    assert "unknown reward 'nope'" in capsys.readouterr().err


def test_cli_finetune_sample_evaluate(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["finetune", "--out-dir", str(run), "--max-steps", "2", "--num-frames", "8",
                 "--ddim-steps", "10"]) == 0
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert main(["finetune", "--out-dir", str(run), "--max-steps", "2"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["sample", "--adapter", str(run / "adapter"), "--prompt", "a red circle",
                 "--num-frames", "8", "--ddim-steps", "5", "--out", str(tmp_path / "s")]) == 0
    assert read_video(tmp_path / "s" / "000.gif", 8).shape == (8, 3, 32, 32)
    assert main(["evaluate", "--adapter", str(run / "adapter"), "--num-frames", "8",
                 "--ddim-steps", "5", "--seeds", "2", "--prompt", "a", "--prompt", "b",
                 "--out", str(tmp_path / "e")]) == 0
    results = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert results["clips"] == 4 and set(results["per_prompt"]) == {"a", "b"}
    assert "| **all (4 clips)** |" in (tmp_path / "e" / "evaluation.md").read_text()


def test_video_round_trip(tmp_path):
    frames = torch.linspace(-1, 1, 8 * 3 * 16 * 16).view(8, 3, 16, 16)
    for suffix in ("gif", "mp4"):
        back = read_video(write_video(frames, tmp_path / f"clip.{suffix}"), 8)
        assert back.shape == (8, 3, 16, 16)
        assert (back - frames).abs().mean() < 0.1
    with pytest.raises(ValueError, match=".gif or .mp4"):
        write_video(frames, tmp_path / "clip.avi")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_video(tmp_path / "absent.mp4", 8)
    (tmp_path / "bad.mp4").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot be read") as err:
        read_video(tmp_path / "bad.mp4", 8)
    assert "\n" not in str(err.value)  # one line, not ffmpeg's page of diagnostics


def test_folder_of_clips(tmp_path, tiny_model):
    rng = np.random.default_rng(0)
    for i in range(2):
        write_video(torch.from_numpy(rng.random((10, 3, 40, 48), dtype=np.float32) * 2 - 1),
                    tmp_path / f"{i}.mp4")
    (tmp_path / "captions.csv").write_text("videoid,name\n0,a cat\n1,a dog\n")
    assert [c for _, c in read_captions(tmp_path)] == ["a cat", "a dog"]
    clips = folder_clips(tiny_model, tmp_path, num_frames=8, height=32, width=32)
    assert clips.latents.shape == (2, 4, 8, 4, 4) and clips.captions == ["a cat", "a dog"]
    (tmp_path / "captions.csv").write_text("clip,caption\n0,a cat\n")
    with pytest.raises(ValueError, match="needs a video column"):
        read_captions(tmp_path)
    (tmp_path / "captions.csv").write_text("video,caption\n0.mp4,\n")
    with pytest.raises(ValueError, match="line 2"):
        read_captions(tmp_path)
    with pytest.raises(FileNotFoundError, match="captions.csv"):
        read_captions(tmp_path / "nowhere")


def test_generated_clips_are_cached(tmp_path, tiny_model):
    kw = dict(model_name="tiny-random", num_frames=8, height=32, width=32, ddim_steps=4,
              cache_dir=tmp_path)
    first = generated_clips(tiny_model, ["a", "b"], **kw)
    assert first.latents.shape == (2, 4, 8, 4, 4)
    assert len(list(tmp_path.glob("generated-*.safetensors"))) == 1
    again = generated_clips(tiny_model, ["a", "b"], **kw)
    assert torch.equal(first.latents, again.latents)
    other = generated_clips(tiny_model, ["a", "c"], **kw)
    assert len(list(tmp_path.glob("generated-*.safetensors"))) == 2
    assert other.captions == ["a", "c"]
    x, captions = first.sample(3, torch.Generator().manual_seed(0))
    assert x.shape == (3, 4, 8, 4, 4) and set(captions) <= {"a", "b"}


def test_captions_csv_with_a_byte_order_mark(tmp_path):
    """Spreadsheets save UTF-8 CSVs with a byte-order mark; it is not part of the header."""
    write_video(torch.zeros(4, 3, 16, 16), tmp_path / "0.gif")
    (tmp_path / "captions.csv").write_bytes("\ufeffvideo,caption\n0.gif,a café\n"
                                            .encode("utf-8"))
    assert read_captions(tmp_path) == [(tmp_path / "0.gif", "a café")]


def test_a_corrupt_clip_cache_names_the_file(tmp_path, tiny_model):
    kw = dict(model_name="tiny-random", num_frames=8, height=32, width=32, ddim_steps=2,
              cache_dir=tmp_path)
    generated_clips(tiny_model, ["a"], **kw)
    cache = next(tmp_path.glob("generated-*.safetensors"))
    cache.write_bytes(cache.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"clip cache '.*generated-.*\.safetensors' \(with its "
                                         r"\.json\) is corrupt or unreadable .*delete both"):
        generated_clips(tiny_model, ["a"], **kw)


def test_a_video_path_that_is_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder; expected a video file"):
        read_video(tmp_path, 8)
