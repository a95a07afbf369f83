"""Config: presets, YAML, overrides and one clear error per bad value."""

import pytest

from ivlite.config import Config, ConfigError


def test_defaults_are_the_papers():
    cfg = Config().validate()
    assert (cfg.tau, cfg.ddim_steps, cfg.grad_steps, cfg.guidance_scale) == (0.6, 20, 1, 3.0)
    assert (cfg.segments, cfg.frame_sampling, cfg.lambda_tar, cfg.tar_normalize) == \
        (4, "tsn", 1.0, False)
    assert (cfg.lora_rank, cfg.learning_rate, cfg.warmup_steps, cfg.weight_decay) == \
        (4, 1e-5, 10, 0.0)
    assert cfg.edit_steps == 12 and cfg.offset_noise == 0.1 and cfg.eta == 0.0
    assert Config.preset("modelscope").validate().reward == "hpsv2"


@pytest.mark.parametrize("changes, fragment", [
    ({"tau": 0.0}, "tau=0.0 is out of range; allowed: 0 < tau <= 1"),
    ({"tau": 1.5}, "tau=1.5"),
    ({"tau": 0.04}, "need tau >= 0.05"),
    ({"ddim_steps": 0}, "1 <= ddim_steps <= 1000"),
    ({"grad_steps": 13}, "1 <= grad_steps <= 12"),
    ({"grad_steps": 0}, "grad_steps=0"),
    ({"chain": "partial"}, "'edit' or 'full'"),
    ({"segments": 17}, "1 <= segments <= 16"),
    ({"segments": 0}, "segments=0"),
    ({"frame_sampling": "middle"}, "'tsn' or 'first'"),
    ({"lambda_tar": -1.0}, "lambda_tar=-1.0"),
    ({"lambda_tar": float("nan")}, "lambda_tar=nan"),
    ({"guidance_scale": 0.5}, ">= 1"),
    ({"eta": 2.0}, "0 <= eta <= 1"),
    ({"height": 30}, "multiple of 8"),
    ({"width": 0}, "8 <= width"),
    ({"num_frames": 0}, "1 <= num_frames"),
    ({"lora_rank": 0}, "1 <= lora_rank"),
    ({"lora_targets": []}, "non-empty list"),
    ({"learning_rate": 0.0}, "0 < learning_rate <= 1"),
    ({"learning_rate": 5.0}, "learning_rate=5.0"),
    ({"batch_size": 0}, "1 <= batch_size"),
    ({"grad_accum": 2.5}, "grad_accum=2.5"),
    ({"mixed_precision": "fp8"}, "'no', 'fp16' or 'bf16'"),
    ({"device": "gpu"}, "'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ({"prompts": []}, "non-empty list"),
    ({"prompts": ["a cat", "  "]}, "prompts[1]"),
    ({"max_grad_norm": -1.0}, "max_grad_norm"),
    ({"seed": -1}, "seed=-1"),
])
def test_each_bad_value_names_field_and_range(changes, fragment):
    with pytest.raises(ConfigError) as err:
        Config().override(changes).validate()
    assert fragment in str(err.value)


def test_full_chain_allows_k_up_to_d():
    Config(chain="full", grad_steps=20).validate()
    with pytest.raises(ConfigError, match="grad_steps <= 20"):
        Config(chain="full", grad_steps=21).validate()


def test_overrides_yaml_and_unknown_fields(tmp_path):
    cfg = Config().override_strings(["tau=0.5", "prompts=[a cat, a dog]", "grad_steps=2"])
    assert cfg.tau == 0.5 and cfg.prompts == ["a cat", "a dog"] and cfg.grad_steps == 2
    assert Config().override({"tau": 1}).tau == 1.0 and isinstance(Config().override({"tau": 1}).tau, float)
    with pytest.raises(ConfigError, match="unknown config field"):
        Config().override({"taus": 0.5})
    with pytest.raises(ConfigError, match="field=value"):
        Config().override_strings(["tau"])
    path = tmp_path / "run.yaml"
    path.write_text("preset: tiny-random\ntau: 0.4\nlambda_tar: 2\n")
    cfg = Config.from_yaml(path)
    assert (cfg.model, cfg.tau, cfg.lambda_tar) == ("tiny-random", 0.4, 2.0)
    assert Config.from_yaml(path).to_dict() == Config.preset("tiny-random", tau=0.4,
                                                             lambda_tar=2.0).to_dict()
    with pytest.raises(ConfigError, match="unknown preset"):
        Config.preset("huge")
    with pytest.raises(ConfigError, match="does not exist"):
        Config.from_yaml(tmp_path / "absent.yaml")
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        Config.from_yaml(path)


def test_text_fields_take_the_text_as_typed_on_the_command_line(tmp_path):
    from ivlite.cli import _config_from_args, build_parser

    args = build_parser().parse_args(["finetune", "--mixed-precision", "no", "--chain", "edit",
                                      "--reward-checkpoint", "null"])
    cfg = _config_from_args(args)
    assert cfg.mixed_precision == "no" and cfg.chain == "edit" and cfg.reward_checkpoint is None
    yml = tmp_path / "run.yaml"
    yml.write_text("mixed_precision: no\n")        # YAML's boolean false, not the text 'no'
    with pytest.raises(ConfigError, match="quote it"):
        Config.from_yaml(yml)


@pytest.mark.parametrize("tau, ddim_steps, steps", [
    (0.29, 100, 29),   # 0.29 * 100 = 28.999999999999996 in floating point
    (0.58, 50, 29),    # 28.999999999999996 too
    (0.6, 20, 12),     # 12.000000000000002
    (1 / 3, 3, 1),
    (0.15, 10, 1),     # 1.5: the floor, as VideoToVideoSDPipeline's strength
    (1.0, 7, 7),
])
def test_tau_times_d_is_counted_exactly(tau, ddim_steps, steps):
    """int(tau * D) is the editing chain's length (Eq. 4): the config, the chain and the cost
    model agree on it, without floating-point error."""
    from ivlite.method.settings import edit_step_count
    from ivlite.method.ddim import chain_timesteps, start_timestep
    from ivlite.models import modelscope_scheduler

    assert edit_step_count(tau, ddim_steps) == steps
    cfg = Config(tau=tau, ddim_steps=ddim_steps, grad_steps=steps).validate()
    assert cfg.edit_steps == steps
    sched = modelscope_scheduler()
    grid = chain_timesteps(sched, ddim_steps, 1.0)
    assert len(chain_timesteps(sched, ddim_steps, tau)) == steps
    assert start_timestep(sched, ddim_steps, tau) == int(grid[ddim_steps - steps])


def test_config_path_of_the_wrong_kind(tmp_path):
    with pytest.raises(ConfigError, match=r"config: '.*' is a folder; expected a YAML file"):
        Config.from_yaml(tmp_path)
    with pytest.raises(ConfigError, match=r"config: file '.*absent.yaml' does not exist"):
        Config.from_yaml(tmp_path / "absent.yaml")
