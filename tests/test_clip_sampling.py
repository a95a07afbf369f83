"""Training clips from local videos as the official loader reads them: 16 consecutive frames at
8 fps from a seeded random start, short side resized and centre cropped; caption tables in the
forms users have (``path,caption``, WebVid's columns, a byte-order mark), local files only."""

import numpy as np
import pytest
import torch

from ivlite.clip_sampling import frame_window, read_clip, resize_centre_crop
from ivlite.data import check_video_folder, folder_clips, read_captions

BITS = 8  # frame k carries k in binary: 8 blocks of 8 x 16 pixels, white for a 1


def _write(path, frames: np.ndarray, fps: float) -> None:
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        iio.imwrite(path, frames, duration=1000 / fps, loop=0)
    else:
        iio.imwrite(path, frames, fps=fps, codec="libx264", macro_block_size=1)


def _indexed_video(path, n: int, fps: float = 24) -> None:
    """n frames of 16 x 64 pixels whose blocks spell the frame's index."""
    frames = np.zeros((n, 16, 8 * BITS, 3), np.uint8)
    for k in range(n):
        for b in range(BITS):
            if (k >> b) & 1:
                frames[k, :, 8 * b:8 * b + 8] = 255
    _write(path, frames, fps)


def _indices(frames: torch.Tensor) -> list[int]:
    """Read back the index of each frame (F, 3, 16, 64) in [-1, 1]."""
    blocks = frames.mean(1).view(len(frames), 16, BITS, 8).mean(dim=(1, 3))  # (F, BITS)
    return [int(sum(1 << b for b in range(BITS) if row[b] > 0)) for row in blocks]


class _RecordingModel:
    """Stands in for a VideoModel in folder_clips: keeps the frames it is asked to encode."""

    def __init__(self):
        self.videos = []

    def encode_video(self, video: torch.Tensor, generator) -> torch.Tensor:  # (1, 3, F, H, W)
        self.videos.append(video[0].transpose(0, 1).clone())  # (F, 3, H, W)
        return torch.zeros(1, 4, video.shape[2], video.shape[3] // 8, video.shape[4] // 8)


@pytest.mark.parametrize("suffix", ["mp4", "gif"])
def test_window_is_16_consecutive_frames_at_8_fps_from_a_seeded_start(tmp_path, suffix):
    path = tmp_path / f"counting.{suffix}"
    _indexed_video(path, 80, fps=24)  # a GIF stores 40 ms per frame (25 fps): stride 3 too
    starts = set()
    for index in range(6):
        got = _indices(read_clip(path, 16, 16, 64, seed=7, index=index))
        start = got[0]
        assert got == [start + 3 * k for k in range(16)]  # 8 fps from 24 fps: every 3rd frame
        assert 0 <= start <= 80 - 46
        assert got == frame_window(80, 24, 16, seed=7, index=index)
        assert _indices(read_clip(path, 16, 16, 64, seed=7, index=index)) == got  # reproducible
        starts.add(start)
    assert len(starts) > 1  # the start is random across clips, not always 0
    assert frame_window(80, 24, 16, seed=8, index=0) != frame_window(80, 24, 16, seed=7, index=0) \
        or frame_window(80, 24, 16, seed=9, index=0) != frame_window(80, 24, 16, seed=7, index=0)


def test_folder_clips_encode_the_official_window(tmp_path):
    _indexed_video(tmp_path / "a.mp4", 80, fps=24)
    _indexed_video(tmp_path / "b.mp4", 60, fps=16)  # 16 fps: stride 2
    (tmp_path / "captions.csv").write_text("path,caption\na.mp4,a cat\nb.mp4,a dog\n")
    model = _RecordingModel()
    clips = folder_clips(model, tmp_path, num_frames=16, height=16, width=64, seed=3)
    assert clips.captions == ["a cat", "a dog"]
    first, second = (_indices(v) for v in model.videos)
    assert first == frame_window(80, 24, 16, seed=3, index=0)
    assert second == frame_window(60, 16, 16, seed=3, index=1)
    assert second == [second[0] + 2 * k for k in range(16)]


def test_short_side_resize_and_centre_crop(tmp_path):
    # A wide clip (24 x 48) whose pixel value grows with the column: 5 per column.
    ramp = np.broadcast_to((np.arange(48) * 5).astype(np.uint8)[None, None, :, None],
                           (20, 24, 48, 3)).copy()
    _write(tmp_path / "wide.mp4", ramp, fps=8)
    (tmp_path / "captions.csv").write_text("path,caption\nwide.mp4,a ramp\n")
    model = _RecordingModel()
    folder_clips(model, tmp_path, num_frames=4, height=16, width=16)
    frames = model.videos[0]
    assert frames.shape == (4, 3, 16, 16)
    # Scaled by 2/3 to 16 x 32, the middle 16 columns kept: source columns 12.25 ... 34.75.
    cols = (frames[0, 0].mean(0) + 1) * 127.5
    expected = (torch.arange(16) * 1.5 + 8 * 1.5 + 0.25) * 5
    assert (cols[1:-1] - expected[1:-1]).abs().max() < 4
    # A tall tensor: the centre rows are kept, the columns only resized.
    tall = torch.arange(40.).view(1, 1, 40, 1).expand(2, 3, 40, 20)
    out = resize_centre_crop(tall, 10, 10)
    assert out.shape == (2, 3, 10, 10)
    assert out[0, 0, :, 0].tolist() == pytest.approx([10.5 + 2 * i for i in range(10)], abs=0.6)
    assert resize_centre_crop(torch.zeros(1, 3, 8, 8), 8, 8).shape == (1, 3, 8, 8)


def test_a_clip_too_short_for_the_window_is_refused(tmp_path):
    _indexed_video(tmp_path / "short.mp4", 30, fps=24)  # 16 frames at 8 fps need 46
    with pytest.raises(ValueError, match="30 frames at 24 fps.*need 46") as err:
        read_clip(tmp_path / "short.mp4", 16, 16, 64)
    assert "\n" not in str(err.value)
    (tmp_path / "captions.csv").write_text("path,caption\nshort.mp4,a cat\n")
    with pytest.raises(ValueError, match="line 2: .*need 46"):
        folder_clips(_RecordingModel(), tmp_path, num_frames=16, height=16, width=64)
    with pytest.raises(ValueError, match="line 2: .*num_frames=16 at 8 fps needs 46"):
        check_video_folder(tmp_path, num_frames=16)  # from the header, before any model loads
    assert len(check_video_folder(tmp_path, num_frames=10)) == 1  # 28 frames needed: fits


def test_caption_tables_webvid_bom_and_local_files_only(tmp_path):
    _indexed_video(tmp_path / "001_050" / "1234.mp4", 8)
    _indexed_video(tmp_path / "clips" / "b.mp4", 8)
    webvid = ("videoid,contentUrl,duration,page_dir,name\n"
              "1234,https://example.org/1234.mp4,PT00H00M10S,001_050,\"a cat, walking\"\n")
    (tmp_path / "results_val.csv").write_text(webvid)
    # WebVid's columns as they are, the CSV file named directly: videos under page_dir/.
    assert read_captions(tmp_path / "results_val.csv") == [
        (tmp_path / "001_050" / "1234.mp4", "a cat, walking")]
    (tmp_path / "captions.csv").write_bytes("\ufeffpath,caption\nclips/b.mp4,a dog\n"
                                            .encode("utf-8"))
    assert read_captions(tmp_path) == [(tmp_path / "clips" / "b.mp4", "a dog")]  # with a BOM
    (tmp_path / "urls.csv").write_text("path,caption\nhttps://example.org/b.mp4,a dog\n")
    with pytest.raises(ValueError, match="line 2: path 'https://example.org/b.mp4' is a network "
                                         "address; ivlite reads local files only"):
        read_captions(tmp_path / "urls.csv")
    (tmp_path / "only_urls.csv").write_text("contentUrl,name\nhttps://example.org/b.mp4,a dog\n")
    with pytest.raises(ValueError, match="'contentUrl' holds network addresses and ivlite "
                                         "downloads nothing"):
        read_captions(tmp_path / "only_urls.csv")
    (tmp_path / "missing.csv").write_text(webvid.replace("1234,", "999,", 1))
    with pytest.raises(ValueError, match="999' does not exist \\(ivlite does not download "
                                         "'contentUrl'\\)"):
        read_captions(tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError, match="no such CSV file"):
        read_captions(tmp_path / "absent.csv")


def test_finetune_checks_a_csv_file_and_its_clips_before_any_model_loads(tmp_path):
    from ivlite.config import Config, ConfigError
    from ivlite.trainer import check_environment

    _indexed_video(tmp_path / "v" / "short.mp4", 30, fps=24)
    (tmp_path / "train.csv").write_text("path,caption\nv/short.mp4,a cat\n")
    cfg = Config.preset("tiny-random", data=str(tmp_path / "train.csv"), num_frames=16)
    with pytest.raises(ConfigError, match="train.csv, line 2: .*needs 46"):
        check_environment(cfg.validate())
    check_environment(Config.preset("tiny-random", data=str(tmp_path / "train.csv"),
                                    num_frames=8).validate())  # 22 frames needed: fits
    with pytest.raises(ConfigError, match="a .csv file"):
        check_environment(Config.preset("tiny-random", data=str(tmp_path / "no.csv")).validate())
