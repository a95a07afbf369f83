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


def _smallest_font(fig) -> float:
    texts = [t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts)
             if t.get_text()]
    texts += [t for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    return min(t.get_fontsize() for t in texts)


def test_book_figures_are_legible():
    """The chapters' figures: the axes they promise, text of at least 9 pt, at most 7.5 in wide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ivlite.viz import chain_cost_figure, gradient_maps, schedule_figure

    abar = torch.linspace(0.999, 0.0, 1000)
    figs = [schedule_figure(abar, {0.3: 299, 0.6: 599}),
            chain_cost_figure([0.1, 0.5, 1.0], {20: [2, 10, 20]}, {0.5: 10}),
            gradient_maps(torch.zeros(3, 8, 8), torch.randn(3, 8, 8), title="t")]
    assert [len(f.axes) for f in figs] == [1, 1, 5]
    assert len(figs[0].axes[0].lines) == 2 + 2   # two weights, two starts
    for fig in figs:
        assert _smallest_font(fig) >= 9 and fig.get_figwidth() <= 7.5
        plt.close(fig)


def test_slider_shows_its_output_and_a_short_text_fallback(monkeypatch):
    import IPython.display

    from ivlite import viz

    shown, seen = [], []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append(obj))
    widget = viz.slider(lambda tau: seen.append(tau), [0.1, 0.6, 0.9], value=0.6, name="tau")
    assert seen == [0.6] and widget.children[0].options == (0.1, 0.6, 0.9)
    (bundle,) = shown
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert len(bundle["text/plain"]) <= 88 and "tau" in bundle["text/plain"]


def test_score_frames_moves_frames_to_the_reward_and_returns_cpu_scores():
    from ivlite.viz import score_frames

    class MeanReward(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

        def forward(self, frames, prompts):
            assert frames.dtype == torch.float32 and len(prompts) == len(frames)
            return frames.mean((1, 2, 3)).double() * self.weight

    clips = torch.arange(2 * 3 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 3, 2, 2)
    scores = score_frames(MeanReward(), clips, ["a", "b"], batch=4)
    assert scores.shape == (2, 3) and scores.dtype == torch.float32 and scores.device.type == "cpu"
    torch.testing.assert_close(scores, clips.mean((2, 3, 4)))


def test_interval_chart_draws_every_interval_and_refuses_ragged_panels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pytest

    from ivlite.stats import paired_gain
    from ivlite.viz import interval_chart

    g = paired_gain([0.0, 0.1, 0.2], [0.1, 0.3, 0.2])
    fig = interval_chart(["a - b", "c - b"], {"reward": [[g, (0.0, -1.0, 1.0)], [g, None]],
                                              "oracle": [[g, g], [g, g]]},
                         series=("in-domain", "held-out"))
    left, right = fig.axes
    assert [t.get_text() for t in left.get_yticklabels()] == ["a - b", "c - b"]
    # one error-bar container per series; the left panel's second series skips its None
    assert [len(c.lines[0].get_xdata()) for c in left.containers] == [2, 1]
    assert left.containers[0].lines[0].get_xdata()[0] == pytest.approx(g.mean)
    assert _smallest_font(fig) >= 9 and fig.get_figwidth() <= 7.5
    assert len(fig.legends) == 1 and [t.get_text() for t in fig.legends[0].get_texts()] == [
        "in-domain", "held-out"]
    plt.close(fig)
    with pytest.raises(ValueError, match="panel 'reward' has 1 rows, expected 2"):
        interval_chart(["a", "b"], {"reward": [[g]]})


def test_band_chart_draws_curves_bands_and_marks():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pytest

    from ivlite.viz import band_chart

    fig = band_chart([0, 10, 20], {"proxy": {"in-domain": [(0, 0, 0), (1, 0.5, 1.5), (2, 1, 3)]}},
                     marks={"stop": 10})
    ax, = fig.axes
    curve = next(line for line in ax.lines if line.get_label() == "in-domain")
    assert list(curve.get_ydata()) == [0, 1, 2] and len(ax.collections) == 1
    assert _smallest_font(fig) >= 9 and fig.get_figwidth() <= 7.5
    assert any(line.get_label() == "stop" for line in ax.lines)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["stop"]
    plt.close(fig)
    with pytest.raises(ValueError, match="has 1 points, expected 3"):
        band_chart([0, 1, 2], {"p": {"c": [(0, 0, 0)]}})
