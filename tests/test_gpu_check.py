"""The one GPU command (benchmarks/gpu_check.sh) in its smoke mode: every phase, on the CPU."""

import json
import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_mode_runs_every_phase_and_writes_its_files(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke", str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["smoke"] and summary["ok"]
    assert [p["phase"] for p in summary["phases"]] == ["full_scale", "gpu_tests",
                                                        "real_finetune"]
    assert json.loads((out / "environment.json").read_text())["cuda_available"] is False

    bench = json.loads((out / "full_scale.json").read_text())
    assert [r["mode"] for r in bench["results"]] == ["instructvideo", "draft1-d20"]
    for row in bench["results"]:
        assert len(row["loss_per_step"]) == len(row["reward_per_step"]) == 1
        assert all(math.isfinite(x) for x in row["loss_per_step"] + row["reward_per_step"])

    suite = ET.parse(out / "gpu_tests.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) >= 3 and suite.get("skipped") == suite.get("tests")
    assert int(suite.get("failures")) == int(suite.get("errors")) == 0

    real = json.loads((out / "real_finetune.json").read_text())
    assert real["status"] == "ok" and real["steps"] == 2 and real["model"][1] == "fp16"
    assert len(real["loss_per_step"]) == 2
    for key in ("hpsv2_before", "hpsv2_after"):
        assert math.isfinite(real[key]["mean"]) and real[key]["clips"] == 2
    assert (out / "summary.md").read_text().startswith("# ivlite GPU check")
