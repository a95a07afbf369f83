"""Baselines/ablations table, split evaluation, early stopping and the cost benchmark's smoke run.

Everything here runs on the tiny random model (seconds); the benchmarks themselves run on the
tiny world (benchmarks/ablations.py, cost.py, overoptimisation.py). No timing is asserted.
"""

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from benchmarks.settings import (
    ALIASES,
    GROUPS,
    SETTINGS,
    UNTRAINED,
    expected_unet_calls,
    parse_settings,
    setting_config,
)
from ivlite.config import Config, ConfigError
from ivlite.early_stop import EarlyStopping, PatienceRule, TimeBudget, stop_index
from ivlite.evaluation import evaluate_splits, splits_markdown
from ivlite.method.objective import instructvideo_objective
from ivlite.trainer import finetune
from ivlite.world.captions import world_splits

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(num_frames=8, height=32, width=32)


# ----------------------------------------------------------------------------- the settings table


def test_every_setting_gives_a_valid_config():
    for name in SETTINGS:
        cfg = setting_config(name, out_dir="/tmp/unused")
        assert cfg.model == "tiny-world" and cfg.reward == "tiny-hps"
    for group in GROUPS.values():
        for name in group:
            assert name in SETTINGS or name in ALIASES
    assert parse_settings("tau-0.6,instructvideo,D-50") == ["instructvideo", "D-50"]
    with pytest.raises(ValueError, match="unknown setting"):
        parse_settings("no-such-setting")


@pytest.mark.parametrize("name, no_grad, grad", [
    ("instructvideo", 11, 1),   # tau 0.6, D 20: 12 guided evaluations, the last with gradient
    ("draft1", 19, 1), ("draft1-d50", 49, 1), ("full-backprop", 0, 20),
    ("tau-0.2", 3, 1), ("tau-1.0", 19, 1), ("D-10", 5, 1), ("D-50", 29, 1),
    ("no-segvr-all", 11, 1), ("no-tar", 11, 1)])
def test_expected_unet_calls(name, no_grad, grad):
    calls = expected_unet_calls(setting_config(name, out_dir="/tmp/unused"))
    assert calls == {"no_grad": no_grad, "grad": grad, "total": no_grad + grad}


@pytest.mark.parametrize("name", ["instructvideo", "draft1", "no-segvr-all"])
def test_objective_makes_the_expected_unet_calls(name, tiny_model, tiny_reward):
    """Counted by a forward hook: one batched call (2 clips: guidance) per chain step."""
    base = Config.preset("tiny-random", **SMALL, ddim_steps=10)
    overrides = {k: v for k, v in SETTINGS[name].items() if k != "ddim_steps"}
    cfg = base.override({**overrides, "segments": 8} if name == "no-segvr-all" else overrides)
    cfg.validate()
    calls = {True: 0, False: 0}
    batch = []

    def hook(module, args, output):
        calls[torch.is_grad_enabled()] += 1
        batch.append(args[0].shape[0])

    handle = tiny_model.unet.register_forward_hook(hook)
    x0 = torch.randn(tiny_model.latent_shape(1, 8, 32, 32))
    try:
        out = instructvideo_objective(tiny_model, tiny_reward, x0, ["a red circle moving left"],
                                      cfg.method(), generator=torch.Generator().manual_seed(0))
    finally:
        handle.remove()
    exp = expected_unet_calls(cfg)
    assert out.unet_calls == exp["total"]
    assert calls == {False: exp["no_grad"], True: exp["grad"]}
    assert set(batch) == {2}
    assert out.frame_indices.shape == (1, cfg.segments)


# ----------------------------------------------------------------------------- evaluation


def test_evaluate_splits_structure(tiny_model, tiny_reward):
    splits = {"in_domain": ["a red circle moving left", "a blue square moving up"],
              "held_out": ["a green circle moving right"]}
    res = evaluate_splits(tiny_model, tiny_reward, splits, seeds=2, judge="oracle-quality",
                          ddim_steps=2, segments=4, reward_name="tiny-random-clip", **SMALL)
    assert res["oracle"] is True and res["judge"] == "oracle-quality"
    assert list(res["splits"]) == ["in_domain", "held_out"]
    ind = res["splits"]["in_domain"]
    assert ind["clips"] == 4 and res["splits"]["held_out"]["clips"] == 2
    for key in ("reward", "judge", "temporal_consistency", "flicker"):
        assert set(ind[key]) == {"mean", "std"}
    assert {"colour_ok", "shape_ok", "motion_ok", "all_ok", "score", "frame_quality"} \
        <= set(ind["oracle"])
    assert set(ind["per_prompt"]) == set(splits["in_domain"])
    assert set(ind["per_prompt"]["a red circle moving left"]) == {"reward", "judge", "oracle_score"}
    json.dumps(res)  # JSON-able
    table = splits_markdown(res)
    assert "| in_domain | 4 |" in table and "| held_out | 2 |" in table
    # The same prompts and seeds give the same clips: evaluations are paired across settings.
    again = evaluate_splits(tiny_model, tiny_reward, {"in_domain": splits["in_domain"]}, seeds=2,
                            ddim_steps=2, **SMALL)
    assert again["splits"]["in_domain"]["reward"] == ind["reward"]
    assert again["oracle"] is True and "judge" not in again["splits"]["in_domain"]


def test_evaluate_splits_without_oracle_for_free_text(tiny_model, tiny_reward):
    res = evaluate_splits(tiny_model, tiny_reward, {"animals": ["a cat running"]}, ddim_steps=2,
                          **SMALL)
    assert res["oracle"] is False and "oracle" not in res["splits"]["animals"]
    assert "flicker" in res["splits"]["animals"]
    with pytest.raises(ValueError, match="seeds"):
        evaluate_splits(tiny_model, tiny_reward, {"a": ["x"]}, seeds=0)


def test_world_splits_are_fixed_and_disjoint():
    a, b = world_splits(3), world_splits(3)
    assert a == b and list(a) == ["in_domain", "held_out", "out_of_domain"]
    assert all(len(v) == 3 for v in a.values())
    assert not set(a["in_domain"]) & set(a["held_out"])


# ----------------------------------------------------------------------------- early stopping


def test_patience_rule_on_a_synthetic_judge_sequence():
    scores = [0.10, 0.20, 0.30, 0.25, 0.28, 0.29, 0.50]
    assert stop_index(scores, patience=3) == 5  # three evaluations without beating 0.30
    assert stop_index(scores, patience=4) is None
    rule = PatienceRule(patience=2, min_delta=0.05)
    # 0.14 is no improvement over 0.1 by more than 0.05, 0.2 is; 0.22 and 0.24 are not.
    assert [rule.update(s) for s in (0.1, 0.14, 0.2, 0.22, 0.24)] == \
        [False, False, False, False, True]
    assert rule.best == 0.2 and rule.best_index == 2
    assert stop_index([0.1, float("nan"), float("nan")], patience=2) == 2
    assert stop_index([0.1, 0.2, 0.3, 0.4], patience=1) is None
    with pytest.raises(ValueError):
        PatienceRule(patience=0)


def _cfg(tmp_path, **kw):
    kw = {"out_dir": str(tmp_path / "run"), "num_frames": 8, "ddim_steps": 10, "save_every": 100,
          **kw}
    return Config.preset("tiny-random", **kw)


def test_trainer_stops_early_and_restores_the_best_weights(tmp_path):
    scores = iter([0.5, 0.7, 0.6, 0.4, 0.9, 0.9])  # begin (step 0), then steps 1, 2, 3, ...
    stopper = EarlyStopping(lambda unet: {"judge": next(scores)}, every=1, patience=2,
                            out=tmp_path / "run")
    snapshots = {}

    def keep(step, record, unet):
        from ivlite.method.lora import lora_state_dict

        snapshots[step] = {k: v.clone() for k, v in lora_state_dict(unet).items()}
        return stopper(step, record, unet)

    keep.begin, keep.finish = stopper.begin, stopper.finish
    result = finetune(_cfg(tmp_path, max_steps=6), progress=False, stop_when=keep)
    assert result.steps == 3  # steps 2 and 3 did not beat step 1's 0.7
    assert stopper.stopped_at == 3 and stopper.best_step == 1
    saved = json.loads((tmp_path / "run" / "early_stop.json").read_text())
    assert saved["best_step"] == 1 and [h["judge"] for h in saved["history"]] == [0.5, 0.7, 0.6, 0.4]
    adapter = load_file(result.adapter_dir / "adapter_model.safetensors")
    assert all(torch.equal(adapter[k], snapshots[1][k]) for k in adapter)
    assert not all(torch.equal(adapter[k], snapshots[3][k]) for k in adapter)
    assert result.log[-1]["early_stop"]["best_step"] == 1


def test_early_stopping_from_the_config(tmp_path):
    cfg = _cfg(tmp_path, max_steps=4, early_stop_judge="oracle-quality", early_stop_every=1,
               early_stop_patience=1, early_stop_prompts=["a red circle moving left"])
    result = finetune(cfg, progress=False)
    saved = json.loads((tmp_path / "run" / "early_stop.json").read_text())
    assert saved["history"][0]["step"] == 0 and saved["final"] is True
    assert result.steps == saved["stopped_at"] or saved["stopped_at"] is None
    assert len(saved["history"]) == result.steps + 1
    for bad in ({"early_stop_every": 0}, {"early_stop_patience": 0},
                {"early_stop_prompts": []}, {"early_stop_judge": ""}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            _cfg(tmp_path, **bad).validate()
    with pytest.raises(ConfigError, match="early_stop_prompts"):
        finetune(_cfg(tmp_path, max_steps=1, early_stop_judge="oracle-quality",
                      out_dir=str(tmp_path / "other")), progress=False)


def test_time_budget_stops_a_run(tmp_path):
    budget = TimeBudget(1e-9)  # any step exceeds it
    result = finetune(_cfg(tmp_path, max_steps=5), progress=False, stop_when=budget)
    assert result.steps == 1 and "cpu_seconds" in result.log[0]
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()


# ----------------------------------------------------------------------------- cost benchmark


def test_cost_benchmark_smoke(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import cost
    finally:
        sys.path.pop(0)
    results = cost.main(["--smoke", "--out", str(tmp_path / "cost"),
                         "--ablations", str(tmp_path / "none.json")])
    assert set(results["settings"]) == {"instructvideo", "draft1"}
    iv = results["settings"]["instructvideo"]
    assert iv["unet_calls_hook"]["no_grad"] == 5 and iv["unet_calls_hook"]["grad"] == 1
    assert iv["unet_calls_chain"] == 6 and iv["decoder_frames"] == 4
    assert results["settings"]["draft1"]["unet_calls_hook"]["no_grad"] == 19
    for part in ("unet_forward_nograd", "unet_grad_fwd_bwd", "vae_decode_fwd_bwd",
                 "reward_fwd_bwd"):
        assert iv["parts"][part]["cpu"] > 0
    assert "g" in results["analysis"] and "step_vs_sum_of_parts" in results["analysis"]
    assert (tmp_path / "cost.json").is_file()
    assert "| instructvideo |" in (tmp_path / "cost.md").read_text()
    assert UNTRAINED == ("base",)


def test_cli_evaluate_per_split(tmp_path, capsys):
    from ivlite.cli import main

    out = tmp_path / "eval"
    assert main(["evaluate", "--preset", "tiny-random", "--splits", "world", "--per-split", "1",
                 "--ddim-steps", "2", "--num-frames", "8", "--out", str(out)]) == 0
    res = json.loads((out / "evaluation.json").read_text())
    assert list(res["splits"]) == ["in_domain", "held_out", "out_of_domain"]
    assert res["judge"] == "oracle-quality" and res["oracle"] is True
    assert "| held_out | 1 |" in capsys.readouterr().out
    assert (out / "evaluation.md").is_file()


def test_ablations_resume_keeps_only_a_run_of_the_same_arguments(tmp_path, capsys):
    from benchmarks.ablations import _resumed

    partial = tmp_path / "abl.partial.json"
    assert _resumed(partial, {"per_split": 16}) == {}
    assert "no " in capsys.readouterr().out
    partial.write_text(json.dumps({"args": {"per_split": 16, "seeds": 2},
                                   "settings": {"base": {"steps": 0}}}))
    assert _resumed(partial, {"per_split": 16, "seeds": 2}) == {"base": {"steps": 0}}
    with pytest.raises(SystemExit, match="seeds"):
        _resumed(partial, {"per_split": 16, "seeds": 1})
