"""ivlite.viz: the measurement helpers the book's counts rest on, and its figures' legibility."""

import matplotlib
import matplotlib.text
import pytest
import torch

from ivlite.viz import CallLog, FrameCounter

matplotlib.use("Agg")


def test_frame_counter_counts_positional_and_keyword_batches():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    with FrameCounter(a, b) as count:
        a(torch.zeros(5, 3))
        a(input=torch.zeros(2, 3))   # diffusers models are often called by keyword
        b(torch.zeros(1, 3))
    assert count.frames == {0: 7, 1: 1}
    a(torch.zeros(4, 3))             # hooks are removed on exit
    assert count.frames == {0: 7, 1: 1}


def test_call_log_records_batch_and_grad_mode():
    lin = torch.nn.Linear(3, 2)
    with CallLog(lin) as log:
        lin(torch.zeros(2, 3))
        with torch.no_grad():
            lin(torch.zeros(3, 3))
    assert log.batch == [2, 3] and log.grad == [True, False]


# ----------------------------------------------------------------------------- figures

def _clip(frames: int = 16, size: int = 32, seed: int = 0):
    return torch.rand(frames, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _legible(fig, frame_px: int) -> None:
    """Every rule of a figure in the page: <= 7.5 in at 100 dpi, text >= 9 pt, inside the
    figure and clear of other text and of the frames; frames enlarged by whole factors."""
    import itertools

    assert fig.dpi == 100 and fig.get_figwidth() <= 7.5 + 1e-9
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
    assert texts
    boxes = [t.get_window_extent(renderer) for t in texts]
    for t, b in zip(texts, boxes):
        assert t.get_fontsize() >= 9, t.get_text()
        assert b.x0 >= box.x0 - 0.5 and b.x1 <= box.x1 + 0.5, t.get_text()
        assert b.y0 >= box.y0 - 0.5 and b.y1 <= box.y1 + 0.5, t.get_text()
    for (s, a), (t, b) in itertools.combinations(zip(texts, boxes), 2):
        assert not a.overlaps(b), (s.get_text(), t.get_text())
    frames = [ax for ax in fig.axes if ax.images]
    for ax in frames:
        extent = ax.get_window_extent(renderer)
        scale = extent.width / frame_px
        assert abs(scale - round(scale)) < 1e-6 and round(scale) >= 1
        assert abs(extent.height - extent.width) < 1e-6
        assert ax.images[0].get_interpolation() == "nearest"
        assert ax.images[0].get_array().shape[0] == round(scale) * frame_px
        for t, b in zip(texts, boxes):
            assert not b.overlaps(extent), t.get_text()


def test_frame_strip_is_legible_at_its_size():
    from ivlite.viz import frame_strip

    fig = frame_strip(_clip(), highlight=[1, 6], segments=4, title="a red circle moving left")
    _legible(fig, 32)
    assert len([ax for ax in fig.axes if ax.images]) == 16
    # Titles wider than a frame (TAR weights) turn vertical instead of running into each other.
    fig = frame_strip(_clip(), titles=[f"{0.5 ** j:.2g}" for j in range(16)])
    _legible(fig, 32)
    assert {t.get_rotation() for t in fig.findobj(matplotlib.text.Text) if t.get_text()} == {90}


def test_clip_rows_enlarge_small_frames_and_place_long_labels_above():
    from ivlite.viz import clip_rows

    clips = [_clip(seed=i) for i in range(3)]
    short = clip_rows(clips, ["clean", "blur", "noise"], frames=range(0, 16, 2))
    _legible(short, 32)
    assert [ax for ax in short.axes if ax.images][0].get_window_extent().width == 64
    long = ["a yellow triangle moving up on a striped background\n(oracle sees: ?)"] * 3
    fig = clip_rows(clips, long, frames=range(0, 16, 2), title="base model")
    _legible(fig, 32)
    frame = [ax for ax in fig.axes if ax.images][0].get_window_extent()
    label = next(t for t in fig.texts if t.get_text() == long[0])
    assert label.get_window_extent().y0 > frame.y1          # above its row, not beside it
    assert frame.width == 64                                # the frames kept their size
    _legible(clip_rows(clips, ["a", "b", "c"], scale=1), 32)


def test_figure_helpers_reject_unreadable_settings():
    from ivlite.viz import clip_rows, frame_strip

    with pytest.raises(ValueError, match="fontsize=7"):
        frame_strip(_clip(), fontsize=7)
    with pytest.raises(ValueError, match="scale=0"):
        clip_rows([_clip()], ["x"], scale=0)
    with pytest.raises(ValueError, match="2 labels for 1 clips"):
        clip_rows([_clip()], ["x", "y"])


def test_before_after_puts_each_pair_in_one_row_legibly():
    from ivlite.viz import before_after

    a, b = torch.full((16, 3, 32, 32), -1.0), torch.full((16, 3, 32, 32), 1.0)
    notes = [("sees red circle, moving left; quality 0.91",
              "sees red circle, moving left; quality 0.95")] * 3
    fig = before_after([a] * 3, [b] * 3, ["in-domain: a red circle moving left"] * 3,
                       notes=notes, labels=("base", "tuned"))
    _legible(fig, 32)
    frames = [ax for ax in fig.axes if ax.images]
    assert len(frames) == 24                                   # 3 rows x 2 sides x 4 frames
    assert frames[3].images[0].get_array().max() == 0          # left: before (black)
    assert frames[4].images[0].get_array().min() == 1          # right: after (white)
    texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
    assert "base 0" in texts and "tuned 0" in texts
    assert "in-domain: a red circle moving left\nbase: sees red circle, moving left; quality " \
           "0.91\ntuned: sees red circle, moving left; quality 0.95" in texts
    with pytest.raises(ValueError, match="one of each per row"):
        before_after([a], [b, b], ["row"])
