"""benchmarks.results_view: the committed benchmark results read back as chapter 8's tables.

Synthetic results check the arithmetic; the committed files (benchmarks/results/) check that the
readers and the book's figures work on the real formats. The last tests run small versions of
the benchmark scripts whose files the book reads.
"""

import json

import matplotlib
import pytest

matplotlib.use("Agg")

from benchmarks import results_view as rv  # noqa: E402
from ivlite.early_stop import stop_index  # noqa: E402
from ivlite.stats import PairedGain, paired_gain  # noqa: E402


def _eval(scores: dict[str, list[float]], seed: int = 100) -> dict:
    """An evaluate_splits-like record: per split, one clip per score (prompt p, seed)."""
    def clips(split):
        return [{"prompt": f"{split} {i % 2}", "seed": seed + i, "reward": r,
                 "oracle_score": o, "travel": t, "motion_ok": m}
                for i, (r, o, t, m) in enumerate(zip(*scores.values()))]
    return {"splits": {s: {"per_clip": clips(s)} for s in rv.SPLITS}}


def fake_ablations() -> dict:
    base = {"reward": [0.5, 0.3, 0.4, 0.6], "oracle": [0.4, 0.5, 0.5, 0.4],
            "travel": [0.3, 0.3, 0.4, 0.4], "motion_ok": [True, False, True, True]}
    tuned = {"reward": [0.6, 0.4, 0.4, 0.7], "oracle": [0.4, 0.6, 0.4, 0.4],
             "travel": [0.2, 0.3, 0.3, 0.4], "motion_ok": [True, True, False, True]}
    return {
        "_file": "fake.json", "budget": {"steps": None, "seconds": 10.0},
        "args": {"clock": "cpu", "per_split": 2, "seeds": 2, "eval_ddim_steps": 20},
        "settings": {"base": {"steps": 0, "eval": _eval(base)},
                     "instructvideo": {"steps": 7, "eval": _eval(tuned)},
                     "draft1": {"steps": 3, "eval": _eval(base, seed=200)}}}


def test_results_dir_from_the_environment(tmp_path, monkeypatch):
    stem = rv.FILES["ablations"]
    (tmp_path / f"{stem}.json").write_text(json.dumps({"settings": {}}))
    monkeypatch.setenv(rv.RESULTS_ENV, str(tmp_path))
    assert rv.results_dir() == tmp_path
    assert rv.load_results("ablations")["_file"] == f"{stem}.json"
    with pytest.raises(FileNotFoundError):
        rv.load_results("cost")


def test_results_dir_finds_the_committed_files(monkeypatch):
    monkeypatch.delenv(rv.RESULTS_ENV, raising=False)
    folder = rv.results_dir()
    for name, stem in rv.FILES.items():   # every file the book reads is committed
        assert (folder / f"{stem}.json").is_file(), name


def test_paired_gains_pool_clips_and_refuse_unpaired_ones():
    r = fake_ablations()
    g = rv.gain(r, "instructvideo", "reward", splits=["in_domain"])
    assert g.n == 4 and g.mean == pytest.approx(0.075)
    assert g == paired_gain([0.5, 0.3, 0.4, 0.6], [0.6, 0.4, 0.4, 0.7])
    pooled = rv.gain(r, "instructvideo", "motion_ok")        # booleans: a change of share
    assert pooled.n == 12 and pooled.mean == pytest.approx(0.0)
    assert rv.gain(r, "instructvideo", "travel").mean == pytest.approx(-0.05)
    with pytest.raises(ValueError, match="not paired"):    # other noise: no pairing
        rv.gain(r, "draft1", "reward")
    with pytest.raises(KeyError, match="judge"):
        rv.gain(r, "instructvideo", "judge")
    assert rv.evaluation_text(r) == ("3 settings, 10 CPU seconds of training each;\n4 clips "
                                     "per split (2 prompts x 2 seeds) from noise, 20 DDIM "
                                     "steps; paired per clip")


def test_files_without_per_clip_rows_pair_per_prompt():
    r = fake_ablations()
    for row in r["settings"].values():
        for split in row["eval"]["splits"].values():
            clips = split.pop("per_clip")
            split["per_prompt"] = {c["prompt"]: {"reward": c["reward"]} for c in clips[:2]}
    assert rv.paired_by(r) == "prompt" and rv.available(r, ["travel", "reward"]) == ["reward"]
    g = rv.gain(r, "instructvideo", "reward", splits=["held_out"])
    assert g.n == 2 and g.mean == pytest.approx(0.1)
    oo = {"curve": [{"step": s, "oracle_held_out": o} for s, o in ((0, 0.5), (10, 0.7))]}
    gains = rv.curve_gains(oo, "held_out", "oracle_score")
    assert gains == pytest.approx([0.0, 0.2]) and rv.interval_text(gains[1]) == \
        "+0.200 (no interval)"


def test_gain_tables_and_panels():
    r = fake_ablations()
    table = rv.gains_markdown(r, [("instructvideo", "base")], ["reward", "oracle_score"])
    rows = table.splitlines()
    assert len(rows) == 2 + 3 and rows[0].count("|") == 6
    assert rows[2].startswith("| InstructVideo - base model | 7 | in-domain | +0.075 [")
    assert rows[3].startswith("|  |  | held-out | +0.075 [")
    panels = rv.gain_panels(r, [("instructvideo", "base")] * 2, ["reward", "travel"],
                            splits=[rv.SPLITS])
    assert list(panels) == ["proxy reward", "travel"]
    assert len(panels["travel"]) == 2 and panels["travel"][0][0].n == 12
    assert rv.comparison_labels([("no-tar", "instructvideo")]) == ["no TAR - InstructVideo"]
    assert rv.steps_line(r, ["instructvideo", "draft1"]) == (
        "steps bought: InstructVideo 7, DRaFT-1 3")


def _cost_row(steps, forward=0.5, grad=1.5, decode=0.1, reward=0.05):
    part = {"unet_forward_nograd": {"cpu": forward}, "unet_grad_fwd_bwd": {"cpu": grad},
            "vae_decode_fwd_bwd": {"cpu": decode}, "reward_fwd_bwd": {"cpu": reward}}
    return {"setting": "x", "unet_calls_expected": {"no_grad": 11, "grad": 1},
            "unet_calls_hook": {"no_grad": 11, "grad": 1}, "parts": part,
            "parts_rounds": [part] * len(steps), "step_cpu_s_all": steps, "g": grad / forward}


def test_cost_model():
    g = 3.4
    assert rv.predicted_ratio(g) == pytest.approx((11 + g) / (49 + g))
    assert rv.predicted_ratio(g, tau=1.0, ddim_steps=50) == pytest.approx(1.0)
    row = _cost_row([7.0, 7.5, 8.0])
    assert rv.predicted_step_forwards(row) == pytest.approx(11 + 3 + 0.3)
    predicted, measured = rv.step_forwards(row)
    assert predicted == pytest.approx([14.3] * 3) and measured == pytest.approx([14, 15, 16])
    assert rv.step_excess(row).mean == pytest.approx(0.7)
    cost = {"settings": {"instructvideo": row, "draft1": _cost_row([14.0, 15.0, 16.0])}}
    ratio, low, high = rv.ratio_interval(cost, "instructvideo", "draft1")
    assert ratio == pytest.approx(0.5) and low < ratio < high
    table = rv.cost_markdown(cost).splitlines()
    assert table[2].startswith("| InstructVideo | 11 + 1 | 14.3 | 15.0 | +0.70 [")
    with pytest.raises(ValueError, match="3 timed steps but 1 rounds"):
        rv.step_forwards({**row, "parts_rounds": row["parts_rounds"][:1]})


def _curve():
    judge = [0.5, 0.6, 0.55, 0.58, 0.59, 0.7]
    return [{"step": 10 * i, "judge": j, "oracle_held_out": 0.1 * i, "reward_held_out": 0.0,
             "clips_held_out": {"oracle_score": [0.1 * i, 0.1 * i + 0.1], "judge": [j, j]}}
            for i, j in enumerate(judge)]


def test_early_stop_rules_and_the_curve_against_its_start():
    oo = {"curve": _curve()}
    rules = rv.early_stop_rules(oo, patience=3)
    assert stop_index([c["judge"] for c in oo["curve"]], 3) == 4
    assert rules["judge"] == {"stops_at_step": 40, "keeps_step": 10, "keeps_index": 1}
    assert rules["reward_held_out"] == {"stops_at_step": 30, "keeps_step": 0, "keeps_index": 0}
    assert rv.early_stop_rules(oo, 1)["judge"]["stops_at_step"] == 20
    gains = rv.curve_gains(oo, "held_out", "oracle_score")
    assert [round(x.mean, 6) for x in gains] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    table = rv.stop_markdown(oo, 3).splitlines()
    assert table[2].startswith("| frame quality | 40 | 10 | +0.100 [")
    assert table[4].startswith("| oracle score | never | 50 | +0.500 [")


def test_edit_sample_table():
    ev = {"settings": {"instructvideo (lr 0.001)": {
        "setting": "instructvideo", "steps": 9, "edit_gain_per_clip": [0.1, 0.2, 0.3],
        "sample_gain_per_clip": [-0.1, 0.0, 0.1]}, "draft1 (lr 0.001)": {
        "setting": "draft1", "steps": 4, "edit_gain": {"mean": 0.01, "std": 0.02},
        "sample_gain": {"mean": -0.01, "std": 0.03}}}}
    rows = rv.edit_sample_markdown(ev).splitlines()
    assert rows[2].startswith("| InstructVideo | 9 | +0.200 [") and "| +0.000 [" in rows[2]
    assert rows[3] == "| DRaFT-1 | 4 | +0.010 (sd 0.020) | -0.010 (sd 0.030) |"


def test_the_book_renders_the_committed_files():
    import matplotlib.pyplot as plt

    from ivlite import viz

    cost = rv.load_results("cost")
    oo = rv.load_results("overoptimisation")
    ev = rv.load_results("edit_vs_sample")
    r = rv.load_results("ablations")
    pairs = [(n, "base") for n in r["settings"] if n != "base"]
    metrics = rv.available(r, list(rv.METRICS))
    assert set(rv.METRICS) <= set(metrics)   # every clip kept every score
    panels = rv.gain_panels(r, pairs, metrics)
    fig = viz.interval_chart(rv.comparison_labels(pairs), panels, series=rv.SPLITS)
    plt.close(fig)
    table = rv.gains_markdown(r, pairs, ["reward"])
    assert table.count("\n") == 1 + 3 * len(pairs)
    for name, r in cost["settings"].items():
        assert len(rv.step_forwards(r)[1]) == cost["args"]["steps"], name
    assert rv.cost_markdown(cost).count("\n") == 1 + len(cost["settings"])
    gains = rv.curve_gains(oo, "held_out", "oracle_score")
    assert len(gains) == len(oo["curve"]) and getattr(gains[0], "mean", gains[0]) == 0
    assert all(isinstance(g, PairedGain) for g in gains)   # every evaluation kept its clips
    assert all("sample_gain_per_clip" in row for row in ev["settings"].values())
    assert rv.stop_markdown(oo, 3).count("\n") == 1 + 3
    s = oo["summary"]
    live = rv.early_stop_rules(oo, s["early_stop"]["patience"])
    assert live["judge"]["stops_at_step"] == s["early_stop"]["stops_at_step"]
    assert live["judge"]["keeps_step"] == s["early_stop"]["keeps_step"]
    for key, r in s["rule_on_other_series"].items():
        assert live[key]["keeps_step"] == r["keeps_step"]
    assert rv.edit_sample_markdown(ev).count("\n") == 1 + len(ev["settings"])
    md = rv.edit_vs_sample_markdown(ev)
    for name, row in ev["settings"].items():
        assert f"| {name} | {row['steps']} |" in md
        # one relative eps change per timestep of the 20-step grid, noisiest first
        ts = [int(t) for t in row["eps_change"]]
        assert len(ts) == 20 and ts == sorted(ts, reverse=True) and ts[0] > 900


def test_edit_vs_sample_appends_only_rows_scored_against_the_same_base():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "edit_vs_sample.py"
    spec = importlib.util.spec_from_file_location("edit_vs_sample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    old = rv.load_results("edit_vs_sample")
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


def test_book_time_refuses_bad_input_and_times_a_kernel(tmp_path, capsys):
    import nbformat

    from benchmarks import book_time

    for argv, message in ((["--pages", "intro,99_nope"], "99_nope not in book/; pages are intro"),
                          (["--timeout", "0"], "--timeout=0: must be >= 1"),
                          (["--out", str(tmp_path / "t.txt")], "must end in .json")):
        with pytest.raises(SystemExit):
            book_time.parse_args(argv)
        assert message in capsys.readouterr().err
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(SystemExit):
        book_time.parse_args(["--out", str(tmp_path / "t.json")])
    assert "exists; pass --force" in capsys.readouterr().err
    args = book_time.parse_args(["--pages", "05_tar", "--out", str(tmp_path / "new.json")])
    assert args.paths == [book_time.BOOK / "05_tar.ipynb"]
    # One cell that burns CPU: the kernel's CPU time is counted, and the outputs are kept.
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass\n"
        "print('done')")])
    path = tmp_path / "burn.ipynb"
    nbformat.write(nb, path)
    executed, wall, cpu = book_time.execute(path, timeout=60)
    assert executed.cells[0].outputs[0]["text"] == "done\n"
    assert 1.0 <= cpu <= wall



def test_summary_verdict_words():
    from benchmarks.summary import verdict

    zeros = [0.0] * 4
    assert verdict(paired_gain(zeros, [0.1, 0.2, 0.1, 0.2]), "up", "down").startswith("up: +0.15")
    assert verdict(paired_gain(zeros, [-0.1, -0.2, -0.1, -0.2]), "up", "down").startswith("down")
    assert verdict(paired_gain(zeros, [-0.1, 0.2, 0.1, -0.2]), "up", "down").startswith(
        "no clear change (the interval includes zero): +0.000")
    assert verdict(paired_gain([1.0] * 4, [1.0] * 4), "up", "down") == "unchanged in every pair"


def test_book_time_file_covers_every_page():
    from benchmarks import book_time

    results = rv.load_results("book_time_tiny")
    assert list(results["pages"]) == [p.stem for p in book_time.pages()]
    assert results["args"]["pages"] is None and results["total"]["complete"]
