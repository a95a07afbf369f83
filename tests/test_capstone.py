"""benchmarks/capstone.py: chapter 7's run scored paired, on a one-step run and few clips."""

import json

import pytest

from benchmarks import capstone


def test_capstone_writes_paired_gains_per_clip_and_the_adapter_hash(tmp_path, capsys):
    out = tmp_path / "capstone.json"
    results = capstone.main(["--steps", "1", "--per-split", "2", "--seeds", "1",
                             "--out", str(out), "--run", str(tmp_path / "run")])
    saved = json.loads(out.read_text())
    assert saved["adapter_sha256"] == results["adapter_sha256"]
    from ivlite.common import sha256

    assert sha256(tmp_path / "run" / "adapter" / capstone.ADAPTER_FILE) == \
        saved["adapter_sha256"]
    assert saved["config"]["max_steps"] == 1 and saved["steps"] == 1
    assert saved["config"]["ddim_steps"] == capstone.chapter_config().ddim_steps
    for split in ("in_domain", "held_out", "out_of_domain"):
        base = saved["base"]["splits"][split]["per_clip"]
        tuned = saved["fine_tuned"]["splits"][split]["per_clip"]
        assert [(r["prompt"], r["seed"]) for r in base] == \
            [(r["prompt"], r["seed"]) for r in tuned]
        assert [r["seed"] for r in base] == [capstone.EVAL_SEED, capstone.EVAL_SEED + 1]
        for metric in capstone.METRICS:
            g = saved["gains"][split][metric]
            diffs = [float(b[metric]) - float(a[metric]) for a, b in zip(base, tuned)]
            assert g["n"] == 2 and g["mean"] == pytest.approx(sum(diffs) / 2)
            assert g["low"] <= g["mean"] <= g["high"]
    table = out.with_suffix(".md").read_text()
    assert table == capstone.markdown(saved) and table in capsys.readouterr().out
    assert len(table.splitlines()) == 2 + len(capstone.METRICS)
    shown = capstone.shown_clips(saved)
    assert [s for s, _, _ in shown][:1] == ["in_domain"]
    assert all((s, p, k) in {(s, r["prompt"], r["seed"]) for s, e in
                             saved["base"]["splits"].items() for r in e["per_clip"]}
               for s, p, k in shown)


def test_capstone_refuses_bad_arguments_before_any_work(tmp_path, capsys):
    out = tmp_path / "x.json"
    out.write_text("{}")
    for argv, message in (
            (["--seeds", "0"], "--seeds=0: must be >= 1"),
            (["--per-split", "17"], "--per-split=17: at most 16"),
            (["--out", str(tmp_path / "x.txt")], "must end in .json"),
            (["--out", str(out)], "exists; pass --force"),
            (["--out", str(tmp_path / "y.json"), "--run", str(tmp_path)], "exists; give a new")):
        with pytest.raises(SystemExit):
            capstone.main(argv)
        assert message in capsys.readouterr().err


def test_flips_count_fixed_and_broken_clips():
    def rows(*oks):
        return {"per_clip": [{"colour_ok": c, "shape_ok": s, "motion_ok": True}
                             for c, s in oks]}
    results = {"base": {"splits": {"x": rows((False, True), (True, True), (False, True))}},
               "fine_tuned": {"splits": {"x": rows((True, True), (True, False), (False, True))}}}
    f = capstone.flips(results)["x"]
    assert f["colour"] == {"before": 1, "after": 2, "fixed": 1, "broken": 0, "clips": 3}
    assert f["shape"] == {"before": 3, "after": 2, "fixed": 0, "broken": 1, "clips": 3}
    assert f["motion"]["fixed"] == f["motion"]["broken"] == 0


def test_the_table_as_markdown_and_html_holds_the_same_cells():
    gain = {"mean": 0.0321, "low": 0.0214, "high": 0.0425, "n": 48, "excludes_zero": True}
    results = {"gains": {s: {m: gain for m in capstone.METRICS}
                         for s in ("in_domain", "held_out")}}
    md, html = capstone.markdown(results), capstone.html(results)
    assert md.splitlines()[0] == "| metric | in-domain (48 clips) | held-out (48 clips) |"
    assert md.count("+0.032 [+0.021, +0.043]*") == 2 * len(capstone.METRICS)
    assert html.count("+0.032 [+0.021, +0.043]*") == 2 * len(capstone.METRICS)
    assert html.startswith("<table>") and html.count("<tr>") == 1 + len(capstone.METRICS)
