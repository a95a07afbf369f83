"""benchmarks.results_view: reading the committed benchmark results back (chapter 8's tables and figures).

Synthetic results check the arithmetic; the committed files (benchmarks/results/) check that the
loaders and figures work on the real formats. Nothing here trains or samples.
"""

import json
import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from benchmarks import results_view as results  # noqa: E402
from benchmarks.settings import expected_unet_calls, setting_config  # noqa: E402
from ivlite.early_stop import stop_index  # noqa: E402


def _eval(per_prompt: dict[str, tuple[float, float, float]]) -> dict:
    """An evaluate_splits-like record: the same per-prompt scores in every split."""
    split = {"per_prompt": {p: {"reward": r, "judge": j, "oracle_score": o}
                            for p, (r, j, o) in per_prompt.items()},
             "temporal_consistency": {"mean": 0.0, "std": 0.0}}
    return {"splits": {s: split for s in results.SPLITS}}


def fake_ablations() -> dict:
    base = {"a": (0.5, 0.8, 0.4), "b": (0.3, 0.7, 0.5)}
    better = {"a": (0.6, 0.8, 0.4), "b": (0.4, 0.9, 0.5)}
    mixed = {"a": (0.4, 0.8, 0.4), "b": (0.5, 0.7, 0.6)}
    log = [{"step": i + 1, "reward": r, "seconds": 1.0, "cpu_seconds": 1.0}
           for i, r in enumerate([0.1, 0.1, 0.3, 0.3])]
    return {
        "_file": "fake.json", "budget": {"steps": None, "seconds": 10.0},
        "args": {"clock": "cpu", "learning_rate": 1e-3, "note": "synthetic"},
        "machine": {"git_commit": "abc1234-dirty", "cpu": "test CPU", "usable_cpus": 2,
                    "load_average_1_5_15": [1.0, 1.0, 1.0], "load_average_end": [2.0, 1.0, 1.0],
                    "torch": "x"},
        "total_seconds": 12.0,
        "settings": {
            "base": {"steps": 0, "eval": _eval(base)},
            "instructvideo": {"steps": 4, "cpu_seconds_per_step": 1.0, "unet_calls_per_step": 12,
                              "train_log": log, "eval": _eval(mixed)},
            "draft1": {"steps": 2, "cpu_seconds_per_step": 2.0, "unet_calls_per_step": 20,
                       "train_reward_first": 0.2, "train_reward_last_quarter": 0.1,
                       "eval": _eval(better)},
        },
        "targets": {"instructvideo_vs_draft1": {"instructvideo_gain": 0.05, "draft1_gain": 0.1,
                                                "ratio": 0.5, "met": False}},
    }


def test_results_dir_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "ablations_tiny.json").write_text(json.dumps({"settings": {}}))
    monkeypatch.setenv(results.RESULTS_ENV, str(tmp_path))
    assert results.results_dir() == tmp_path
    assert results.load_results("ablations")["_file"] == "ablations_tiny.json"
    with pytest.raises(FileNotFoundError):
        results.load_results("cost")


def test_results_dir_finds_the_committed_files(monkeypatch):
    monkeypatch.delenv(results.RESULTS_ENV, raising=False)
    folder = results.results_dir()
    for name, stem in results.FILES.items():   # every file the book reads is committed
        assert (folder / f"{stem}.json").is_file(), name


def test_paired_deltas_and_the_comparison_table():
    r = fake_ablations()
    d = results.paired_deltas(r, "instructvideo", "held_out")
    assert d == pytest.approx({"a": -0.1, "b": 0.2})
    assert results.paired_deltas(r, "draft1", metric="judge") == pytest.approx({"a": 0.0, "b": 0.2})
    table = results.comparison_markdown(r)
    rows = table.splitlines()
    assert len(rows) == 2 + 3 and "**instructvideo**" in rows[3]
    assert "+0.0500 (1/2)" in rows[3] and "+0.1000 (2/2)" in rows[4]
    assert "0.100 -> 0.300" in rows[3]              # quarters of the per-step log
    assert "(step 1) 0.200 -> 0.100" in rows[4]      # an older file: step 1 -> last quarter
    assert results.comparison_markdown(r, ["draft1"]).count("\n") == 2
    assert results.target_lines(r) == [
        "vs draft1: InstructVideo +0.0500, draft1 +0.1000, ratio 0.50x: missed"]
    with pytest.raises(KeyError):
        results.paired_deltas({**r, "settings": {"x": r["settings"]["draft1"]}}, "x")


def test_provenance():
    r = fake_ablations()
    p = results.provenance(r)
    assert p["commit"] == "abc1234-dirty" and p["note"] == "synthetic"
    assert p["budget"] == "10 CPU s of training per setting"
    text = results.provenance_markdown([r])
    assert "`abc1234-dirty`" in text and "1 -> 2" in text and "*synthetic*" in text


def test_quarter_means():
    q = results.quarter_means([1, 1, 1, 1, 3, 3, 3, 3])
    assert q["n"] == 2 and q["first"] == 1 and q["last"] == 3 and q["rise"] == 2
    assert q["rise_se"] == 0
    q = results.quarter_means([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    assert q["first_se"] == pytest.approx(0.5) and q["rise_se"] == pytest.approx(math.sqrt(0.5))
    assert results.quarter_means([2.0])["n"] == 1
    with pytest.raises(ValueError):
        results.quarter_means([])


def test_cost_model():
    g = 3.4
    assert results.predicted_ratio(g) == pytest.approx((11 + g) / (49 + g))
    assert results.predicted_ratio(g, tau=1.0, ddim_steps=50) == pytest.approx(1.0)
    row = {"g": 3.0, "unet_calls_expected": {"no_grad": 11, "grad": 1},
           "parts": {"unet_forward_nograd": {"cpu": 0.5}, "vae_decode_fwd_bwd": {"cpu": 0.1},
                     "reward_fwd_bwd": {"cpu": 0.1}, "optimizer_and_grad_norm": {"cpu": 0.05}}}
    assert results.predicted_step_forwards(row) == pytest.approx(11 + 3 + 0.5)


def test_unet_calls_by_config():
    names = ["instructvideo", "draft1-d50", "full-backprop", "tau-0.2"]
    calls = results.unet_calls_by_config(names)
    iv = calls["instructvideo"]
    assert (iv["t_start"], iv["timesteps"], iv["no_grad"], iv["grad"]) == (551, 12, 11, 1)
    assert calls["draft1-d50"]["start"] == "noise" and calls["draft1-d50"]["timesteps"] == 50
    assert calls["full-backprop"]["grad"] == 20 and calls["tau-0.2"]["t_start"] == 151
    for name, c in calls.items():
        exp = expected_unet_calls(setting_config(name))
        assert {k: c[k] for k in exp} == exp and c["timesteps"] == exp["total"]


def test_step_sensitivity_is_ddims_formula():
    from ivlite.models import modelscope_scheduler

    sens = results.step_sensitivity(20)
    abar = modelscope_scheduler().alphas_cumprod
    assert [s["t"] for s in sens][:2] == [951, 901] and sens[-1]["t"] == 1
    for s, nxt in zip(sens, sens[1:] + [None]):
        a = float(abar[s["t"]])
        a_next = float(abar[nxt["t"]]) if nxt else float(abar[0])  # set_alpha_to_one=False
        assert s["dx0_deps"] == pytest.approx(-math.sqrt((1 - a) / a), rel=1e-4)
        assert s["dxprev_deps"] == pytest.approx(
            math.sqrt(1 - a_next) - math.sqrt(a_next) * math.sqrt((1 - a) / a), rel=1e-3, abs=1e-5)
    assert abs(sens[-1]["dxprev_deps"]) < abs(sens[0]["dxprev_deps"]) / 20


def test_early_stop_rules():
    curve = [{"step": 10 * i, "judge": j, "oracle_held_out": o, "reward_held_out": 0.0}
             for i, (j, o) in enumerate([(0.5, 0.3), (0.6, 0.4), (0.55, 0.5), (0.58, 0.2),
                                         (0.59, 0.6), (0.7, 0.0)])]
    rules = results.early_stop_rules({"curve": curve}, patience=3)
    assert stop_index([c["judge"] for c in curve], 3) == 4
    assert rules["judge"] == {"stops_at_step": 40, "keeps_step": 10, "oracle_held_out_kept": 0.4}
    assert rules["reward_held_out"]["stops_at_step"] == 30
    assert rules["reward_held_out"]["keeps_step"] == 0
    assert rules["oracle_held_out"] == {"stops_at_step": None, "keeps_step": 40,
                                        "oracle_held_out_kept": 0.6}
    assert results.early_stop_rules({"curve": curve}, 1)["judge"]["stops_at_step"] == 20


def test_expected_pick_weight():
    import ivlite

    assert results.expected_pick_weight(0.0) == 1.0
    c = ivlite.tar_weights(torch.arange(16), 16, 1.0)
    assert results.expected_pick_weight(1.0) == pytest.approx(float(c.mean()))
    picks = ivlite.sample_frame_indices(20000, 16, 4, "tsn",
                                        generator=torch.Generator().manual_seed(0))
    drawn = float(ivlite.tar_weights(picks, 16, 2.0).mean())
    assert results.expected_pick_weight(2.0) == pytest.approx(drawn, abs=0.005)
    assert results.expected_pick_weight(0.5) > results.expected_pick_weight(1.0) > \
        results.expected_pick_weight(2.0)


def test_tables_and_figures_on_the_committed_files():
    import matplotlib.pyplot as plt

    ablations = results.load_results("ablations")
    cost = results.load_results("cost")
    oo = results.load_results("overoptimisation")
    assert results.cost_markdown(cost).count("\n") == 1 + len(cost["settings"])
    assert results.curve_markdown(oo).count("\n") == 1 + len(oo["curve"])
    rows = results.comparison_markdown(ablations).splitlines()
    assert len(rows) == 2 + len(ablations["settings"])
    s = oo["summary"]
    live = results.early_stop_rules(oo, s["early_stop"]["patience"])
    assert live["judge"]["stops_at_step"] == s["early_stop"]["stops_at_step"]
    assert live["judge"]["keeps_step"] == s["early_stop"]["keeps_step"]
    for key, r in s["rule_on_other_series"].items():
        assert live[key]["keeps_step"] == r["keeps_step"]
    g = cost["analysis"]["g"]
    figures = [results.plot_cost(cost), results.plot_deltas(ablations, list(ablations["settings"])),
               results.plot_training_rewards(fake_ablations(), ["instructvideo", "draft1"]),
               results.plot_overoptimisation(oo), results.static_explore_figure(g, cost),
               results.explore_figure(0.6, 20, 1.0, g=g),
               results.explore_figure(0.05, 10, 0.0, g=g)]
    for fig in figures:
        assert fig.axes
        plt.close(fig)


def test_edit_vs_sample_file_renders():
    ev = results.load_results("edit_vs_sample")
    md = results.edit_vs_sample_markdown(ev)
    for name, row in ev["settings"].items():
        assert f"| {name} | {row['steps']} |" in md
        # one relative eps change per timestep of the 20-step grid, t = 951 ... 1
        assert [int(t) for t in row["eps_change"]] == list(range(951, 0, -50))
    fig = results.plot_edit_vs_sample(ev)
    assert len(fig.axes) == 2


def test_edit_vs_sample_appends_only_rows_scored_against_the_same_base():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "edit_vs_sample.py"
    spec = importlib.util.spec_from_file_location("edit_vs_sample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    old = results.load_results("edit_vs_sample")
    new = {**old, "settings": {"x (lr 1)": next(iter(old["settings"].values()))},
           "total_seconds": 1.0}
    merged = module.merge(old, new)
    assert set(merged["settings"]) == set(old["settings"]) | {"x (lr 1)"}
    assert len(merged["runs"]) == len(old.get("runs", [old])) + 1
    other = {**new, "base": {**old["base"], "edit_reward": {"mean": 0.0, "std": 0.0}}}
    with pytest.raises(SystemExit, match="edit_reward differs"):
        module.merge(old, other)


def test_sample_speed_times_clips_and_refuses_bad_counts(tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "sample_speed.py"
    spec = importlib.util.spec_from_file_location("sample_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit):
        module.main(["--clips", "0", "--out", str(tmp_path / "x.json")])
    assert "--clips=0: must be >= 1" in capsys.readouterr().err
    out = tmp_path / "speed.json"
    with pytest.raises(SystemExit):
        module.main(["--guidance-scale", "-1", "--out", str(tmp_path / "x.json")])
    assert "--guidance-scale=-1.0: must be >= 0" in capsys.readouterr().err
    r = module.main(["--threads", "1", "--clips", "2", "--batch", "2", "--ddim-steps", "2",
                     "--guidance-scale", "1.5", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(r)) and r["guidance_scale"] == 1.5
    row, = r["rows"]
    assert row["threads"] == 1 and row["clips"] == 2 and row["batch"] == 2
    s = row["seconds_per_clip"]
    assert 0 < s["min"] <= s["median"] <= s["max"] and row["batch_seconds_per_clip"] > 0
    assert not (tmp_path / "x.json").exists()


def test_demo_lr_scores_each_rate_twice_and_refuses_bad_rates(tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_lr.py"
    spec = importlib.util.spec_from_file_location("demo_lr", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for argv, message in ((["--learning-rates", "0"], "each rate must be > 0"),
                          (["--learning-rates", "fast"], "expected comma-separated numbers"),
                          (["--check-seeds", "0"], "--check-seeds=0: must be >= 1"),
                          (["--seed", "-1"], "--seed=-1: must be >= 0")):
        with pytest.raises(SystemExit):
            module.main(argv + ["--out", str(tmp_path / "x.json")])
        assert message in capsys.readouterr().err
    out = tmp_path / "demo_lr.json"
    r = module.main(["--learning-rates", "1e-3", "--steps", "1", "--per-split", "1", "--seeds", "1",
                     "--check-seeds", "1", "--seed", "3", "--runs", str(tmp_path / "runs"),
                     "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    run, = r["runs"].values()
    written = json.loads((tmp_path / "runs" / "lr0.001" / "metrics.json").read_text())
    assert run["steps"] == 1 and written["config"]["seed"] == 3 == r["args"]["seed"]
    assert set(run["check"]) == set(r["check_base"]) == {"in_domain", "held_out", "out_of_domain"}
    # the check scores the base model on other noise than the demo's
    assert run["check_as_metrics"]["splits"]["in_domain"]["before"]["proxy_reward"]["mean"] != \
        run["demo"]["splits"]["in_domain"]["before"]["proxy_reward"]["mean"]
    assert "| 0.001 | check | held_out |" in out.with_suffix(".md").read_text()


def test_steps_table_sorts_by_steps_and_reads_the_paired_gain():
    r = results.load_results("ablations_model_4700")
    names = [n for n in r["settings"] if n != "base"]
    lines = results.steps_table(r, names).splitlines()
    assert lines[0].endswith(f"(in-domain; the base model's consistency "
                             f"{r['settings']['base']['eval']['splits']['in_domain']['temporal_consistency']['mean']:.3f})")
    steps = [int(line.split()[2]) for line in lines[1:]]
    assert len(steps) == len(names) and steps == sorted(steps, reverse=True)
    row = next(line for line in lines[1:] if line.startswith("instructvideo "))
    gain = r["settings"]["instructvideo"]["delta_vs_base"]["in_domain"]["oracle_score"]
    assert f"{gain:+.3f}" in row.split()
