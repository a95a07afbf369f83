"""The reward protocol: CLIP-style scores, weighted sums, the gradient check, HPS loading."""

import pytest
import torch

from ivlite.registry import build_reward, parse_reward_spec
from ivlite.rewards import ClipReward, RewardGradientError, WeightedReward, \
    check_reward_gradients, tiny_random_clip
from ivlite.rewards.clip import clip_tokenizer_fn
from ivlite.rewards.hps import hps_reward, load_state_dict


def test_clip_reward_is_a_cosine_and_differentiable(tiny_reward):
    frames = torch.rand(3, 3, 48, 40) * 2 - 1  # resized to the model's 32x32 inside
    scores = tiny_reward(frames, ["a red circle", "a blue square", "a red circle"])
    assert scores.shape == (3,) and (scores.abs() <= 1).all()
    img = tiny_reward.image_features(frames)
    txt = tiny_reward.text_features(["a red circle", "a blue square", "a red circle"])
    torch.testing.assert_close(scores, (img * txt).sum(-1))
    assert check_reward_gradients(tiny_reward, ["a", "b"], 32, 32) > 0


def test_preprocessing_matches_the_official_recipe(tiny_reward):
    frames = torch.rand(2, 3, 32, 32) * 2.4 - 1.2  # includes values outside [-1, 1]
    x = tiny_reward.preprocess(frames)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    torch.testing.assert_close(x, ((frames * 0.5 + 0.5).clamp(0, 1) - mean) / std)


def test_gradient_check_catches_blocking_rewards(tiny_reward):
    def no_grad_reward(frames, prompts):
        with torch.no_grad():
            return tiny_reward(frames, prompts)

    def quantised_reward(frames, prompts):
        return ((frames + 1) * 127.5).round().mean(dim=(1, 2, 3))

    def wrong_shape(frames, prompts):
        return frames.mean()

    with pytest.raises(RewardGradientError, match="no_grad"):
        check_reward_gradients(no_grad_reward, ["a"], 32, 32)
    with pytest.raises(RewardGradientError, match="zero"):
        check_reward_gradients(quantised_reward, ["a"], 32, 32)
    with pytest.raises(RewardGradientError, match="shape"):
        check_reward_gradients(wrong_shape, ["a"], 32, 32)


def test_weighted_reward(tiny_reward):
    other = ClipReward(tiny_random_clip(seed=1), clip_tokenizer_fn())
    combo = WeightedReward({"a": tiny_reward, "b": other}, {"a": 0.7, "b": 0.3})
    frames = torch.rand(2, 3, 32, 32) * 2 - 1
    prompts = ["x", "y"]
    torch.testing.assert_close(combo(frames, prompts),
                               0.7 * tiny_reward(frames, prompts) + 0.3 * other(frames, prompts))
    assert set(combo.last_parts) == {"a", "b"}
    assert check_reward_gradients(combo, prompts, 32, 32) > 0


def test_reward_specs():
    assert parse_reward_spec("hpsv2") == {"hpsv2": 1.0}
    assert parse_reward_spec("hpsv2:0.5, tiny-random-clip:2") == {"hpsv2": 0.5,
                                                                   "tiny-random-clip": 2.0}
    with pytest.raises(ValueError, match="unknown reward 'pickscor'"):
        parse_reward_spec("pickscor")
    with pytest.raises(ValueError, match="not a number"):
        parse_reward_spec("hpsv2:lots")
    assert isinstance(build_reward("tiny-random-clip:0.5"), torch.nn.Module)


@pytest.mark.parametrize("spec, fragment", [
    ("tiny-random-clip:0.5,tiny-random-clip:1", "'tiny-random-clip' appears twice"),
    ("tiny-random-clip:0.5, tiny-random-clip", "'tiny-random-clip' appears twice"),
    ("tiny-random-clip:nan", "weight 'nan' of 'tiny-random-clip' is not a finite number"),
    ("tiny-random-clip:inf,tiny-hps:1", "weight 'inf' of 'tiny-random-clip' is not a finite"),
    ("tiny-random-clip:", "weight '' of 'tiny-random-clip' is not a number"),
    ("tiny-random-clip,", "unknown reward ''"),
])
def test_reward_specs_that_would_drop_or_poison_a_term(spec, fragment):
    """A repeated name used to keep only its last weight; NaN and infinite weights poisoned
    every step. Each is refused, naming the spec and the term."""
    with pytest.raises(ValueError, match="reward=") as err:
        parse_reward_spec(spec)
    assert fragment in str(err.value)


def test_a_checkpoint_the_reward_does_not_read_is_refused(tmp_path):
    from ivlite.registry import check_reward_checkpoint

    ckpt = tmp_path / "weights.pt"
    ckpt.write_bytes(b"")
    with pytest.raises(ValueError, match=r"reward='tiny-random-clip' reads no checkpoint; "
                                         r"allowed only with \['hpsv2'"):
        build_reward("tiny-random-clip", str(ckpt))
    with pytest.raises(ValueError, match="a sum of several rewards does not read a checkpoint"):
        build_reward("tiny-hps:0.5,tiny-random-clip:0.5", str(ckpt))
    check_reward_checkpoint("tiny-hps:2", str(ckpt))  # one reward, weighted: it reads it
    check_reward_checkpoint("tiny-random-clip", None)


def test_a_truncated_reward_checkpoint_is_one_line(tmp_path):
    """A tiny-hps folder whose weights were cut short: a ValueError naming the checkpoint, not
    safetensors' traceback."""
    import shutil

    from ivlite.world.reward_model import REWARD_FOLDER

    folder = tmp_path / "reward"
    shutil.copytree(REWARD_FOLDER, folder)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"reward_checkpoint='.*reward': cannot be read as a "
                                         r"'tiny-hps' checkpoint") as err:
        build_reward("tiny-hps", str(folder))
    assert "\n" not in str(err.value)


class _Payload:
    """A pickled object in a checkpoint: weights_only loading must refuse to build it."""


def test_hps_loader_reads_a_checkpoint_safely(tmp_path):
    """The real loader path on a tiny CLIP: HPS-format file, strict load, weights_only."""
    model = tiny_random_clip(seed=3)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "HPS_v2_compressed.pt")
    reward = hps_reward("v2", str(tmp_path / "HPS_v2_compressed.pt"), model=tiny_random_clip(seed=4))
    for (name, a), b in zip(reward.model.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)

    torch.save({"state_dict": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="plain tensors"):
        load_state_dict(tmp_path / "evil.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "HPS_v2_compressed.pt").read_bytes()[:1000])
    with pytest.raises(ValueError, match="cannot read"):
        load_state_dict(tmp_path / "cut.pt")
    torch.save({"state_dict": tiny_random_clip().visual.state_dict()}, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="does not fit"):
        hps_reward("v2", str(tmp_path / "wrong.pt"), model=tiny_random_clip())
    with pytest.raises(FileNotFoundError, match="reward_checkpoint"):
        hps_reward("v2", str(tmp_path / "absent.pt"), model=tiny_random_clip())
