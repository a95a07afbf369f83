"""The paper's caption lists read from a local VGen checkout (never shipped), and the evaluation
report's count of evaluation prompts that are also training captions."""

import json

import pytest

from ivlite.cli import _training_captions, main
from ivlite.config import Config
from ivlite.evaluation import load_splits
from ivlite.prompts import OFFICIAL_LISTS, VGEN_REPOSITORY, official_splits, prompt_set, \
    read_caption_list, training_overlap

# Synthetic files in the official format: 'video|||caption|||frames' for evaluation lists,
# 'video|||caption' for the training list, the last line without a newline.
FILES = {
    "paper-in-domain": "001_050/1.mp4|||cat walking|||16\n001_050/2.mp4|||red  Cat|||16\n"
                       "001_050/3.mp4|||tiger yawning|||16",
    "paper-new-animals": "002_050/4.mp4|||garden snail|||16\n002_050/5.mp4|||octopus|||16\n",
    "paper-non-animals": "place_holder1.mp4|||A train at a station.|||16\n",
    "paper-train": "003_050/6.mp4|||cat walking\n003_050/7.mp4|||red cat\n\n"
                   "003_050/8.mp4|||cat walking\n003_050/9.mp4|||dog",
}


@pytest.fixture
def vgen(tmp_path):
    """A folder laid out like a checkout of ali-vilab/VGen, holding the four lists."""
    for name, text in FILES.items():
        path = tmp_path / OFFICIAL_LISTS[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_official_lists_are_read_from_a_local_checkout(vgen, tmp_path_factory):
    assert prompt_set("paper-in-domain", root=vgen) == ["cat walking", "red  Cat", "tiger yawning"]
    assert prompt_set("paper-train", root=vgen) == ["cat walking", "red cat", "cat walking", "dog"]
    assert official_splits(vgen) == {"in-domain": prompt_set("paper-in-domain", root=vgen),
                                     "new-animals": ["garden snail", "octopus"],
                                     "non-animals": ["A train at a station."]}
    assert load_splits(f"vgen:{vgen}") == official_splits(vgen)
    assert load_splits("paper") == {"animals": prompt_set("animals"),
                                    "new-animals": prompt_set("new-animals"),
                                    "non-animals": prompt_set("non-animals")}
    alone = tmp_path_factory.mktemp("copy")  # the file itself, copied into a folder
    (alone / OFFICIAL_LISTS["paper-new-animals"].split("/")[-1]).write_text(
        FILES["paper-new-animals"])
    assert prompt_set("paper-new-animals", root=alone) == ["garden snail", "octopus"]


def test_a_missing_list_says_where_to_get_it(tmp_path):
    for root in (tmp_path, None):
        with pytest.raises(FileNotFoundError) as err:
            prompt_set("paper-non-animals", root=root)
        message = str(err.value)
        assert "\n" not in message and VGEN_REPOSITORY in message
        assert OFFICIAL_LISTS["paper-non-animals"] in message and "licence" in message
    assert main(["evaluate", "--splits", f"vgen:{tmp_path}"]) == 2  # before any model loads
    with pytest.raises(ValueError, match="unknown prompt set"):
        prompt_set("paper-animals")


def test_malformed_official_line_names_the_line(tmp_path):
    (tmp_path / "list.txt").write_text("a.mp4|||a cat|||16\nno separator here\n")
    with pytest.raises(ValueError, match="list.txt, line 2: expected 'video|||caption'"):
        read_caption_list(tmp_path / "list.txt")


def test_training_overlap_normalises_case_and_whitespace(vgen):
    train = prompt_set("paper-train", root=vgen)
    overlap = training_overlap(prompt_set("paper-in-domain", root=vgen), train)
    assert overlap == {"count": 2, "of": 3, "shared": ["cat walking", "red  Cat"]}
    assert training_overlap(["Dog", "dog ", "a dog"], train)["count"] == 2  # repeats count
    assert training_overlap(prompt_set("paper-new-animals", root=vgen), train)["count"] == 0


def test_modelscope_preset_evaluates_on_its_training_prompts():
    cfg = Config.preset("modelscope")
    train = _training_captions(cfg, None)
    assert len(train) == 45 and cfg.data == "generated"
    assert training_overlap(prompt_set("animals"), train)["count"] == 45
    assert training_overlap(prompt_set("new-animals"), train)["count"] == 0


def test_evaluation_reports_count_training_prompts(tmp_path, vgen):
    common = ["--num-frames", "4", "--ddim-steps", "2", "--height", "16", "--width", "16"]
    # No --prompt: the config's prompts are evaluated, and they are its training prompts.
    assert main(["evaluate", "--prompts", "[a cat, a dog]", "--out", str(tmp_path / "e1")]
                + common) == 0
    report = (tmp_path / "e1" / "evaluation.md").read_text()
    assert "2 of 2 evaluation prompts are also training captions" in report
    assert json.loads((tmp_path / "e1" / "evaluation.json").read_text())["train_overlap"][
        "count"] == 2
    # --prompt replaces what is evaluated, not what the config trains on.
    assert main(["evaluate", "--prompts", "[a cat, a dog]", "--prompt", "a cat", "--prompt",
                 "a bird", "--out", str(tmp_path / "e2")] + common) == 0
    assert "1 of 2 evaluation prompts" in (tmp_path / "e2" / "evaluation.md").read_text()
    # Splits against the paper's training list: a column per split.
    train_list = vgen / OFFICIAL_LISTS["paper-train"]
    assert main(["evaluate", "--splits", f"vgen:{vgen}", "--train-captions", str(train_list),
                 "--out", str(tmp_path / "e3")] + common) == 0
    results = json.loads((tmp_path / "e3" / "evaluation.json").read_text())
    assert {k: (v["train_overlap"]["count"], v["train_overlap"]["of"])
            for k, v in results["splits"].items()} == {"in-domain": (2, 3),
                                                      "new-animals": (0, 2),
                                                      "non-animals": (0, 1)}
    table = (tmp_path / "e3" / "evaluation.md").read_text()
    assert "prompts that are training captions" in table and "| 2 of 3 |" in table


def test_official_names_are_not_taken_as_literal_prompts(capsys):
    assert main(["finetune", "--prompts", "paper-in-domain"]) == 2
    assert "--splits vgen:DIR" in capsys.readouterr().err
    with pytest.raises(ValueError, match="local VGen checkout"):
        Config.preset("tiny-random", prompts=["a cat", "paper-train"])
